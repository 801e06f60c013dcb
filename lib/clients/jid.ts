/**
 * Job ids we choose ourselves, so that a synchronous call listens for its
 * job before publishing it: the master takes a `jid` in the publish load as
 * the job's (salt/master.py _prep_jid; local_cache prep_jid with
 * `passed_jid`), and a return that comes before the master's reply is then
 * heard, whatever the fleet size, with nothing kept for jobs nobody asked for.
 *
 * The form is gen_jid's (salt/utils/jid.py): UTC `%Y%m%d%H%M%S%f`, 20
 * digits, as every tool reading jids expects; within this process each is
 * later than the last. Two jids made in the same microsecond by this process
 * and the master would be one: the risk the master's own worker processes
 * take with each other (each keeps its own last jid), which `unique_jid`
 * (`_<pid>` appended) exists for; we follow the master's default.
 */
import { performance } from 'node:perf_hooks';

let last = 0;

export function newJid(): string {
  let micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  if (micros <= last) micros = last + 1;
  last = micros;
  const date = new Date(Math.floor(micros / 1000));
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return (
    `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}` +
    `${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}${pad(micros % 1_000_000, 6)}`
  );
}
