/**
 * `npm run bench -- --only real-scale` (issue 23 on Salt itself): the server's
 * CPU per return at 10,000 minions on a real Salt master, for the JSON and
 * the streamed answer, beside a bare bus reader (bench/bus-floor-process.ts)
 * on the same master's bus in the same run.
 *
 * The master is one set up by ../shared/salt-env/saltenv.sh (env
 * SALT_REAL_MASTER_CONFIG, as the real-master tests). The bench accepts
 * 10,000 keys (fleet-00000..., minion1's public key under their names, in
 * the master's pki_dir: removed at the end), so that Salt's own targeting
 * and publish name them; bench/real-fleet.py, run on the master's own Salt,
 * sends their test.ping returns into the master's event pull socket (as the
 * master's workers do, 5,000 a second: REAL_SCALE_RATE) once the job's
 * `new` event is there. Publish, bus and
 * targeting are Salt's; no minion runs.
 *
 * Per answer: three fresh servers' first request (median) and each one's
 * second, as bench/scale.ts does on the double; the answer checked whole
 * (every fleet minion true, none missing). Also printed: when the last
 * return was fired and when the answer's last byte came. SCALE_THREADS=1
 * prints each request's CPU by thread, as in bench/scale.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadMasterConfig } from '../lib/salt/config.js';
import { ask, startChild, type Message } from './ipc.js';
import { build } from './compiled.js';
import { fleetIds, type FleetSpec } from './fleet.js';
import { post } from './scale.js';
import { postStreamed } from './scale-stream.js';
import { cpuMs, settled, startServer, stopServer, threadDiff, threadTicks } from './server-child.js';
import type { Answer, Case } from './scale-cases.js';

const COUNT = Number(process.env.REAL_SCALE_MINIONS ?? 10_000);
/** Returns a second on the bus: 10,000 in about 2 s, as a real master's bus delivered them (issue 23's first measure). */
const RATE = Number(process.env.REAL_SCALE_RATE ?? 5000);
const RUNS = 3;
const SALTDEV = { eauth: 'auto', username: 'saltdev', password: 'x' };
/** Salt's default python on these machines, with the saltenv's Salt on PYTHONPATH (saltenv.sh). */
const PYTHON = '/usr/bin/python3';
const FIRST_TARGET_US = 25;
const SECOND_TARGET_US = 15;

interface Run {
  us: number;
  againUs: number;
  floorUs: number;
  /** The bare reader's reads of the bus during the first fleet. */
  floorReads: number;
  answer: Answer;
  again: Answer;
  /** The answer's last byte after the last return was fired, ms. */
  tailMs: number;
}

/** The 10,000 keys, accepted: files named by the ids in the master's pki_dir/minions, minion1's key in each. */
function acceptFleet(pkiDir: string, ids: string[]): () => void {
  const dir = path.join(pkiDir, 'minions');
  const key = readFileSync(path.join(dir, 'minion1'));
  for (const id of ids) writeFileSync(path.join(dir, id), key);
  return () => {
    for (const id of ids) rmSync(path.join(dir, id), { force: true });
  };
}

/** bench/real-fleet.py on the master's Salt: its JSON line per job it answered. */
async function startFleet(config: string): Promise<{ child: ChildProcess; jobs: AsyncIterator<string> }> {
  const saltenv = path.resolve(path.dirname(config), '../..');
  const env = { ...process.env, PYTHONPATH: process.env.SALT_REAL_PYTHONPATH ?? `${saltenv}/src:${saltenv}/pylib` };
  const script = fileURLToPath(new URL('./real-fleet.py', import.meta.url));
  const child = spawn(PYTHON, [script, config, 'fleet-', String(RATE)], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'ready') throw new Error(`real-fleet.py did not start: ${first.value ?? '(no output)'}`);
  return { child, jobs: lines };
}

function realCase(stream: boolean): Case {
  const fleet: FleetSpec = { count: COUNT, delayMs: 0, spreadMs: 0, silentEvery: 0, returnBytes: 0, publishReplyDelayMs: 0 };
  const low = { client: 'local', tgt: 'fleet-*', fun: 'test.ping', timeout: 120, ...SALTDEV };
  return { name: `real master: ${stream ? 'streamed' : 'JSON'}`, fleet, low, expect: () => true, stream, targets: () => [] };
}

/** One request on the server at `port`: its answer, its CPU per return, and how long after the last fire it ended. */
async function once(pid: number, port: number, c: Case, jobs: AsyncIterator<string>) {
  const before = cpuMs(pid);
  const threads = threadTicks(pid);
  const answer = await (c.stream ? postStreamed : post)(port, c.low, c);
  const us = ((cpuMs(pid) - before) * 1000) / COUNT;
  if (process.env.SCALE_THREADS) console.log(`  ${c.name}, threads:`, threadDiff(threads, threadTicks(pid)));
  const next = await jobs.next();
  if (next.done) throw new Error('real-fleet.py ended before it answered the job (its stderr is above)');
  const job = JSON.parse(next.value) as { returns: number; last_fire: number };
  if (job.returns !== COUNT) throw new Error(`real-fleet.py fired ${job.returns} returns, not ${COUNT}`);
  return { answer, us, tailMs: answer.lastByteAt - job.last_fire * 1000 };
}

async function measure(config: string, eventPath: string, c: Case, jobs: AsyncIterator<string>): Promise<Run> {
  const { child, port } = await startServer(config);
  try {
    const pid = child.pid!;
    await settled(pid);
    const floor = (await startChild<Message>('./bus-floor-process.ts', [eventPath])).child;
    await ask(floor, { type: 'start' });
    const first = await once(pid, port, c, jobs);
    const { cpuMs: floorMs, reads: floorReads } = await ask<Message & { cpuMs: number; reads: number }>(floor, { type: 'stop' });
    await sleep(1000);
    const second = await once(pid, port, c, jobs);
    return {
      us: first.us,
      againUs: second.us,
      floorUs: (floorMs * 1000) / COUNT,
      floorReads,
      answer: first.answer,
      again: second.answer,
      tailMs: first.tailMs,
    };
  } finally {
    await stopServer(child);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const right = (a: Answer) => a.status === 200 && a.wrong === 0 && a.missing === 0 && a.entries === COUNT;

export async function runRealScale(): Promise<boolean> {
  const config = process.env.SALT_REAL_MASTER_CONFIG;
  if (!config) throw new Error('real-scale: set SALT_REAL_MASTER_CONFIG to a master set up by ../shared/salt-env/saltenv.sh');
  build();
  const opts = loadMasterConfig(config);
  const release = acceptFleet(opts.pki_dir, fleetIds(COUNT));
  const fleet = await startFleet(config).catch((err) => {
    release();
    throw err;
  });
  const lines: string[] = [];
  let ok = true;
  try {
    for (const stream of [false, true]) {
      const c = realCase(stream);
      const runs: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        runs.push(await measure(config, path.join(opts.sock_dir, 'master_event_pub.ipc'), c, fleet.jobs));
        const r = runs[i];
        process.stderr.write(
          `${c.name}: ${r.us.toFixed(1)} µs/return first, ${r.againUs.toFixed(1)} second, bus reader ${r.floorUs.toFixed(1)} (${r.floorReads} reads); tail ${r.tailMs.toFixed(0)} ms\n`,
        );
      }
      const answers = runs.flatMap((r) => [r.answer, r.again]);
      const allRight = answers.every(right);
      const first = median(runs.map((r) => r.us));
      const second = median(runs.map((r) => r.againUs));
      const floors = runs.map((r) => r.floorUs.toFixed(1)).join(', ');
      const which = stream ? 'streamed' : 'JSON';
      const checks = [
        [
          `${COUNT} minions on a real master, ${which}: every minion true in all ${answers.length} answers`,
          allRight ? 'yes' : answers.map((a) => `${a.status}/${a.wrong}/${a.missing}`).join(' '),
          allRight,
        ],
        [
          `${which}: server CPU per return, a fresh server's first fleet`,
          `${first.toFixed(1)} µs (< ${FIRST_TARGET_US}; runs ${runs.map((r) => r.us.toFixed(1)).join(', ')}; bare bus reader ${floors} µs)`,
          first < FIRST_TARGET_US,
        ],
        [
          `${which}: server CPU per return, the same server's second fleet`,
          `${second.toFixed(1)} µs (< ${SECOND_TARGET_US}; runs ${runs.map((r) => r.againUs.toFixed(1)).join(', ')})`,
          second < SECOND_TARGET_US,
        ],
        [
          `${which}: the answer's last byte after the last return was fired`,
          `${median(runs.map((r) => r.tailMs)).toFixed(0)} ms (median; printed, not judged)`,
          true,
        ],
      ] as const;
      for (const [name, text, pass] of checks) {
        lines.push(`${name}: ${text}: ${pass ? 'PASS' : 'FAIL'}`);
        ok &&= pass;
      }
    }
  } finally {
    fleet.child.stdin!.end();
    fleet.child.kill();
    release();
  }
  console.log(`real-scale on ${config} (${opts.transport}), ${COUNT} minions returning ${RATE}/s:\n${lines.join('\n')}`);
  return ok;
}
