/**
 * `npm run bench -- --only scale`: fleets of thousands of minions and
 * answers past a gigabyte (issue 13's table), each case on a fresh master
 * double (bench/fleet-process.ts) and a fresh server process, the real
 * command (dist/bin/salt-rest-wsgi.js), so that its peak RSS (VmHWM) is the
 * case's own.
 *
 * Per case: wall (request sent to last byte), tail (the master's last return
 * to the last byte), the server's CPU (/proc/<pid>/stat, from just before the
 * request to the last byte) and peak RSS, and the minions whose return is
 * wrong or missing, checked by this client as the answer streams in
 * (bench/json-stream.ts: a 1 GiB answer is never one string here either).
 * Minions answer test.ping after 200 ms, spread over 0.05 ms per minion
 * (20,000 returns a second); the master's `timeout` and
 * `gather_job_timeout` are 5 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ask, startChild, type Message } from './ipc.js';
import { build } from './compiled.js';
import { EntryReader } from './json-stream.js';
import { bigReturn, fleetIds, type FleetSpec } from './fleet.js';

const MB = 1024 * 1024;
const CREDENTIALS = { eauth: 'pam', username: 'saltdev', password: 'x' };
/** SCALE_SERVER=<path of another build's dist/bin/salt-rest-wsgi.js>: measure that one (a baseline) beside the same double. */
const SERVER = process.env.SCALE_SERVER ?? fileURLToPath(new URL('../dist/bin/salt-rest-wsgi.js', import.meta.url));
const CLOCK_TICK_MS = 1000 / 100; // USER_HZ
const TIMEOUT_S = 5;
const GATHER_JOB_TIMEOUT_S = 5;
/** The spread of returns: 0.05 ms per minion. */
const SPREAD_PER_MINION_MS = 0.05;

interface Case {
  name: string;
  fleet: FleetSpec;
  low: Record<string, unknown>;
  /** What each minion's value must be in the answer (for `local`). */
  expect?: (id: string, index: number) => unknown;
  /** How many answer entries a right answer has (local_batch: one per item). */
  check?: (answer: Answer) => string | undefined;
  /** Measure RSS 5 s after the answer. */
  settle?: boolean;
  targets: (r: Result) => Array<{ name: string; text: string; ok: boolean }>;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  entries: number;
  wrong: number;
  missing: number;
  complete: boolean;
  /** Small answers are kept whole (local_async, local_batch). */
  text?: string;
  bytes: number;
  firstByteAt: number;
  lastByteAt: number;
}

interface Result {
  c: Case;
  answer: Answer;
  wallMs: number;
  tailMs: number;
  cpuMs: number;
  peakRss: number;
  baselineRss: number;
  settledRss?: number;
  returns: number;
  findJobs: string[][];
  load: string;
}

let fillerText = '';
function filler(bytes: number): string {
  if (fillerText.length < bytes) fillerText = 'x'.repeat(bytes);
  return fillerText;
}

const ping = (count: number, extra: Partial<FleetSpec> = {}): FleetSpec => ({
  count,
  delayMs: 200,
  spreadMs: count * SPREAD_PER_MINION_MS,
  silentEvery: 0,
  returnBytes: 0,
  publishReplyDelayMs: 0,
  ...extra,
});
const local = (fun = 'test.ping') => ({ client: 'local', tgt: 'fleet-*', fun, ...CREDENTIALS });
const perReturnUs = (r: Result) => (r.cpuMs * 1000) / Math.max(1, r.returns);
const allRight = (r: Result) => r.answer.status === 200 && r.answer.complete && r.answer.wrong === 0 && r.answer.missing === 0;
const rightText = (r: Result) => `${r.answer.status}, ${r.answer.wrong} wrong, ${r.answer.missing} missing`;

const pingCase = (count: number, targets: Case['targets'] = () => []): Case => ({
  name: `test.ping, ${count.toLocaleString('en')} minions`,
  fleet: ping(count),
  low: local(),
  expect: () => true,
  targets: (r) => [{ name: `${count} minions: every minion true`, text: rightText(r), ok: allRight(r) }, ...targets(r)],
});

function bigCase(count: number, bytes: number, label: string, rssLimit: (returnsBytes: number) => number, settle: boolean): Case {
  return {
    name: `${count} × ${label} returns`,
    // 10 ms apart (100 MB/s), and `timeout: 300` as on the real master: the double packs each
    // 1 MiB return in JS, which on this shared machine can take longer than Salt's 5 s would allow.
    fleet: { ...ping(count), spreadMs: count * 10, returnBytes: bytes },
    low: { ...local('test.arg'), timeout: 300 },
    expect: (id) => bigReturn(id, bytes, filler(bytes)),
    settle,
    targets: (r) => {
      const total = count * bytes;
      const limit = rssLimit(total);
      const out = [
        { name: `${count} × ${label}: every return intact`, text: rightText(r), ok: allRight(r) },
        {
          name: `${count} × ${label}: peak RSS`,
          text: `${(r.peakRss / MB).toFixed(0)} MiB (< ${(limit / MB).toFixed(0)} MiB)`,
          ok: r.peakRss < limit,
        },
      ];
      if (settle && r.settledRss !== undefined) {
        const over = r.settledRss - r.baselineRss;
        out.push({
          name: `${count} × ${label}: RSS 5 s after the answer`,
          text: `${(r.settledRss / MB).toFixed(0)} MiB, ${(over / MB).toFixed(0)} MiB over the baseline ${(r.baselineRss / MB).toFixed(0)} (< 150)`,
          ok: over < 150 * MB,
        });
      }
      return out;
    },
  };
}

const CASES: Case[] = [
  pingCase(1000),
  pingCase(4000),
  pingCase(10_000, (r) => [
    { name: '10,000 minions: tail', text: `${r.tailMs.toFixed(0)} ms (< 300 ms)`, ok: r.tailMs < 300 },
    { name: '10,000 minions: server CPU per return', text: `${perReturnUs(r).toFixed(1)} µs (< 25 µs)`, ok: perReturnUs(r) < 25 },
  ]),
  pingCase(16_000),
  pingCase(20_000, (r) => [{ name: '20,000 minions: tail', text: `${r.tailMs.toFixed(0)} ms (< 1000 ms)`, ok: r.tailMs < 1000 }]),
  bigCase(200, 1_000_000, '1 MB', () => 450 * 1000 * 1000, true),
  bigCase(500, MB, '1 MiB', (total) => 1.5 * total + 150 * MB, false),
  bigCase(1000, MB, '1 MiB', (total) => 1.5 * total + 150 * MB, true),
  {
    name: '5,000 minions, publish reply 500 ms after their returns',
    fleet: ping(5000, { spreadMs: 0, publishReplyDelayMs: 700 }),
    low: local(),
    expect: () => true,
    targets: (r) => [{ name: '5,000 early returns: none lost', text: rightText(r), ok: allRight(r) }],
  },
  {
    name: '1,000 minions, 500 silent',
    fleet: ping(1000, { silentEvery: 2 }),
    low: local(),
    expect: (_id, i) => i % 2 === 0,
    targets: (r) => {
      const ids = fleetIds(1000);
      const silent = ids.filter((_, i) => i % 2 === 1);
      const round = r.findJobs[0] ?? [];
      const exact = r.findJobs.length === 1 && round.length === silent.length && silent.every((id) => round.includes(id));
      const limit = (TIMEOUT_S + GATHER_JOB_TIMEOUT_S + 1) * 1000;
      return [
        { name: '500 silent: answer', text: rightText(r), ok: allRight(r) },
        {
          name: '500 silent: answered within timeout + gather_job_timeout + 1 s',
          text: `${r.wallMs.toFixed(0)} ms (< ${limit})`,
          ok: r.wallMs < limit,
        },
        {
          name: '500 silent: find_job rounds',
          text: `${r.findJobs.length} round(s), the first naming ${round.length} minions, ${exact ? 'exactly the silent ones' : 'NOT exactly the silent ones'}`,
          ok: exact,
        },
      ];
    },
  },
  {
    name: 'local_batch 10% over 1,000 minions',
    fleet: ping(1000, { spreadMs: 0 }),
    low: { ...local(), client: 'local_batch', batch: '10%' },
    check: (a) => {
      const list = (JSON.parse(a.text ?? 'null') as { return?: unknown[][] })?.return?.[0];
      if (!Array.isArray(list)) return 'no list';
      const seen = new Set<string>();
      for (const entry of list) for (const [id, ret] of Object.entries(entry as object)) if (ret === true) seen.add(id);
      return seen.size === 1000 ? undefined : `${1000 - seen.size} minions missing`;
    },
    targets: (r) => [
      {
        name: 'local_batch 10% over 1,000',
        text: `${r.wallMs.toFixed(0)} ms, ${rightText(r)} (<= 2500 ms)`,
        ok: allRight(r) && r.wallMs <= 2500,
      },
    ],
  },
  {
    name: 'local_async to 10,000 minions',
    fleet: ping(10_000, { spreadMs: 0 }),
    low: { ...local(), client: 'local_async' },
    check: (a) => {
      const ret = (JSON.parse(a.text ?? 'null') as { return?: Array<{ jid?: string; minions?: string[] }> })?.return?.[0];
      return typeof ret?.jid === 'string' && ret.minions?.length === 10_000 ? undefined : 'not the job';
    },
    targets: (r) => [
      { name: 'local_async to 10,000', text: `${r.wallMs.toFixed(0)} ms, ${rightText(r)} (<= 67 ms)`, ok: allRight(r) && r.wallMs <= 67 },
    ],
  },
];

// ------------------------------------------------------------------ processes

function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS; // utime, stime
}

async function startServer(configPath: string): Promise<{ child: ChildProcess; port: number }> {
  // SCALE_CPU_PROF=<dir>: a V8 CPU profile of each case's server, written when it exits.
  const prof = process.env.SCALE_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.SCALE_CPU_PROF] : [];
  const child = spawn(process.execPath, [...prof, SERVER, '-c', configPath, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /listening on http:\/\/[^:]+:(\d+)\//.exec(err);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
  return { child, port };
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(process.env.SCALE_CPU_PROF ? 'SIGINT' : 'SIGKILL');
  await exited;
}

const wallNow = () => performance.timeOrigin + performance.now();

/** POST `low` and read the answer as it streams in, checking each minion's value. */
function post(port: number, low: Record<string, unknown>, c: Case): Promise<Answer> {
  const body = JSON.stringify([low]);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        const ids = new Map(fleetIds(c.fleet.count).map((id, i) => [id, i]));
        const seen = new Set<string>();
        let wrong = 0;
        const reader = new EntryReader((_item, key, value) => {
          if (!c.expect) return;
          const index = ids.get(key);
          if (index === undefined || seen.has(key) || !sameValue(value, c.expect(key, index))) wrong++;
          seen.add(key);
        });
        const keep = !c.expect ? ([] as Buffer[]) : undefined;
        let firstByteAt = 0;
        res.on('data', (chunk: Buffer) => {
          firstByteAt ||= wallNow();
          reader.push(chunk);
          keep?.push(chunk);
        });
        res.on('end', () => {
          const lastByteAt = wallNow();
          const missing = c.expect ? c.fleet.count - seen.size : 0;
          const text = keep ? Buffer.concat(keep).toString('utf8') : undefined;
          const answer: Answer = {
            status: res.statusCode ?? 0,
            headers: res.headers,
            entries: reader.entries,
            wrong,
            missing,
            complete: reader.complete,
            text,
            bytes: reader.bytes,
            firstByteAt,
            lastByteAt,
          };
          if (c.check && answer.status === 200) {
            const problem = c.check(answer);
            if (problem) answer.wrong++;
          }
          if (answer.status !== 200 && text === undefined) answer.text = '(not kept)';
          resolve(answer);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b;
}

// ------------------------------------------------------------------ run

export async function runScale(only?: string): Promise<boolean> {
  build();
  const { child: fleet } = await startChild<Message>('./fleet-process.ts');
  const results: Result[] = [];
  const cases = only ? CASES.filter((c) => c.name.includes(only)) : CASES;
  for (const c of cases) {
    process.stderr.write(`scale: ${c.name}\n`);
    const { configPath } = await ask<Message & { configPath: string }>(fleet, { type: 'fleet', spec: c.fleet }, 60_000);
    const { child, port } = await startServer(configPath);
    const pid = child.pid!;
    await sleep(300); // the bus connects, the process settles
    const baselineRss = procStatus(pid, 'VmRSS');
    const load = os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
    const cpu0 = cpuMs(pid);
    const t0 = wallNow();
    const answer = await post(port, c.low, c);
    const cpu1 = cpuMs(pid);
    const peakRss = procStatus(pid, 'VmHWM');
    let settledRss: number | undefined;
    if (c.settle) {
      await sleep(5000);
      settledRss = procStatus(pid, 'VmRSS');
    }
    const report = await ask<Message & { lastReturnAt: number; returns: number; findJobs: string[][] }>(fleet, { type: 'report' });
    await stopServer(child);
    const r: Result = {
      c,
      answer,
      wallMs: answer.lastByteAt - t0,
      tailMs: report.lastReturnAt ? answer.lastByteAt - report.lastReturnAt : NaN,
      cpuMs: cpu1 - cpu0,
      peakRss,
      baselineRss,
      settledRss,
      returns: report.returns,
      findJobs: report.findJobs,
      load,
    };
    results.push(r);
    process.stderr.write(`  ${row(r)}\n`);
  }
  await ask(fleet, { type: 'stop' });

  const lines: string[] = [];
  lines.push(
    `${'case'.padEnd(58)}${'wall ms'.padStart(9)}${'tail ms'.padStart(9)}${'cpu ms'.padStart(8)}${'µs/ret'.padStart(8)}${'peak RSS'.padStart(10)}${'answer'.padStart(10)}  status, wrong, missing   load`,
  );
  for (const r of results) lines.push(row(r));
  lines.push(
    `(tail: the master's last return to the answer's last byte; cpu: the server process from the request to the last byte; peak RSS: VmHWM of a fresh server; load: 1/5/15-min load average before the case, ${os.cpus().length} cores)`,
  );
  lines.push('');
  let ok = true;
  for (const r of results) {
    for (const t of r.c.targets(r)) {
      ok &&= t.ok;
      lines.push(`${t.name}: ${t.text}: ${t.ok ? 'PASS' : 'FAIL'}`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return ok;
}

function row(r: Result): string {
  const a = r.answer;
  const size = a.bytes >= MB ? `${(a.bytes / MB).toFixed(0)} MiB` : `${(a.bytes / 1024).toFixed(0)} KiB`;
  return (
    `${r.c.name.padEnd(58)}${r.wallMs.toFixed(0).padStart(9)}${(Number.isNaN(r.tailMs) ? '-' : r.tailMs.toFixed(0)).padStart(9)}` +
    `${r.cpuMs.toFixed(0).padStart(8)}${perReturnUs(r).toFixed(1).padStart(8)}${`${(r.peakRss / MB).toFixed(0)} MiB`.padStart(10)}${size.padStart(10)}` +
    `  ${a.status}, ${a.wrong}, ${a.missing}${a.headers['content-length'] ? '' : ' (chunked)'}   ${r.load}`
  );
}
