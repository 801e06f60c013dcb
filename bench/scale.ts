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
 * The cases are in bench/scale-cases.ts.
 *
 * The CPU per return at 10,000 minions is the median of three fresh
 * servers' first request, each measured beside its floor
 * (bench/bus-floor-process.ts: a bare Node process reading the same bus in
 * the same run); each server's second request is printed beside it.
 * Fresh servers wait until they are idle before the request (start-up's
 * garbage collected), and local_async's double is warmed first.
 *
 * To see where the CPU goes: SCALE_THREADS=1 prints each measured request's
 * CPU by thread (the main one starred; the others are V8's compiler and GC
 * helpers), SCALE_SERVER_NODE_FLAGS passes Node/V8 flags to the servers
 * (`--trace-opt --trace-deopt`), SCALE_SERVER_STDOUT=1 shows their stdout,
 * where V8 traces go; SCALE_CPU_PROF below.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ask, startChild, type Message } from './ipc.js';
import { build } from './compiled.js';
import { EntryReader } from './json-stream.js';
import { fleetIds } from './fleet.js';
import { STREAM_CASES, postStreamed } from './scale-stream.js';
import { CASES, MB, WARM_UP_REQUESTS, perReturnUs, type Answer, type Case, type Result } from './scale-cases.js';

/** SCALE_SERVER=<path of another build's dist/bin/salt-rest-wsgi.js>: measure that one (a baseline) beside the same double. */
const SERVER = process.env.SCALE_SERVER ?? fileURLToPath(new URL('../dist/bin/salt-rest-wsgi.js', import.meta.url));
const CLOCK_TICK_MS = 1000 / 100; // USER_HZ

// ------------------------------------------------------------------ processes

function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU ticks (user, system) of each of `pid`'s threads, by name, summed over threads of one name. */
function threadTicks(pid: number): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) + (tid === String(pid) ? '*' : '');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const had = out.get(name) ?? [0, 0];
      out.set(name, [had[0] + Number(f[11]), had[1] + Number(f[12])]);
    } catch {
      // a thread that ended while being read
    }
  }
  return out;
}

/** What each thread spent between two threadTicks(), in ms. */
function threadDiff(a: Map<string, [number, number]>, b: Map<string, [number, number]>): string {
  return [...b]
    .map(([k, [u, s]]) => `${k} u${(u - (a.get(k)?.[0] ?? 0)) * CLOCK_TICK_MS} s${(s - (a.get(k)?.[1] ?? 0)) * CLOCK_TICK_MS}`)
    .filter((x) => !/u0 s0$/.test(x))
    .join(', ');
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS; // utime, stime
}

/**
 * Wait for the fresh server to settle: connected to the bus, and done with
 * what start-up leaves (V8 collects start-up garbage, a major GC of some
 * 20 ms, a few hundred ms after start), so that the CPU measured is the
 * request's own. Settled: no CPU tick in 300 ms, at least 300 ms after start.
 */
async function settled(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  let last = cpuMs(pid);
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(50);
    const now = cpuMs(pid);
    if (now !== last) quietSince = Date.now();
    last = now;
    if (Date.now() - quietSince >= 300) return;
  }
}

async function startServer(configPath: string): Promise<{ child: ChildProcess; port: number }> {
  // SCALE_CPU_PROF=<dir>: a V8 CPU profile of each case's server, written when it exits;
  // SCALE_CPU_PROF_US: its sampling interval (V8's default, 1000 µs, gives a fleet a few hundred samples).
  const prof = process.env.SCALE_CPU_PROF
    ? ['--cpu-prof', '--cpu-prof-dir', process.env.SCALE_CPU_PROF, '--cpu-prof-interval', process.env.SCALE_CPU_PROF_US ?? '1000']
    : [];
  const child = spawn(
    process.execPath,
    [...prof, ...(process.env.SCALE_SERVER_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), SERVER, '-c', configPath, '--port', '0'],
    { stdio: ['ignore', process.env.SCALE_SERVER_STDOUT ? 'inherit' : 'ignore', 'pipe'] },
  );
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
        // A small answer (no per-minion check) is kept whole and read once it is all here:
        // the client's own parsing is then not in the wall time.
        const keep = !c.expect ? ([] as Buffer[]) : undefined;
        let firstByteAt = 0;
        res.on('data', (chunk: Buffer) => {
          firstByteAt ||= wallNow();
          if (keep) keep.push(chunk);
          else reader.push(chunk);
        });
        res.on('end', () => {
          const lastByteAt = wallNow();
          const missing = c.expect ? c.fleet.count - seen.size : 0;
          const text = keep ? Buffer.concat(keep).toString('utf8') : undefined;
          if (keep) reader.push(Buffer.concat(keep));
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
  const all = [...CASES, ...STREAM_CASES];
  const cases = only ? all.filter((c) => c.name.includes(only)) : all;
  for (const c of cases) {
    process.stderr.write(`scale: ${c.name}\n`);
    const runs: Result[] = [];
    for (let i = 0; i < (c.runs ?? 1); i++) {
      const r = await measure(fleet, c);
      runs.push(r);
      process.stderr.write(`  ${row(r)}\n`);
    }
    const rank = c.rank ?? ((run: Result) => run.cpuMs);
    const r = [...runs].sort((a, b) => rank(a) - rank(b))[Math.floor(runs.length / 2)];
    if (runs.length > 1) r.runs = runs;
    results.push(r);
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

/** One run of case `c`: a fresh double fleet and a fresh server, one request. */
async function measure(fleet: ChildProcess, c: Case): Promise<Result> {
  const { configPath, eventPath } = await ask<Message & { configPath: string; eventPath: string }>(
    fleet,
    { type: 'fleet', spec: c.fleet },
    60_000,
  );
  if (c.warmDouble) {
    const warm = await startServer(configPath);
    await settled(warm.child.pid!);
    for (let i = 0; i < WARM_UP_REQUESTS; i++) await post(warm.port, c.low, c);
    await stopServer(warm.child);
    await sleep(c.fleet.delayMs + c.fleet.spreadMs + 1000);
    await ask(fleet, { type: 'reset' });
  }
  const { child, port } = await startServer(configPath);
  const pid = child.pid!;
  await settled(pid);
  const baselineRss = procStatus(pid, 'VmRSS');
  const load = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const floor = c.floor ? (await startChild<Message>('./bus-floor-process.ts', [eventPath])).child : undefined;
  if (floor) await ask(floor, { type: 'start' });
  const cpu0 = cpuMs(pid);
  const th0 = threadTicks(pid);
  const t0 = wallNow();
  const answer = await (c.stream ? postStreamed : post)(port, c.low, c);
  const cpu1 = cpuMs(pid);
  if (process.env.SCALE_THREADS) console.log('  threads first:', threadDiff(th0, threadTicks(pid)));
  const floorCpuMs = floor ? (await ask<Message & { cpuMs: number }>(floor, { type: 'stop' })).cpuMs : undefined;
  const peakRss = procStatus(pid, 'VmHWM');
  let settledRss: number | undefined;
  if (c.settle) {
    await sleep(5000);
    settledRss = procStatus(pid, 'VmRSS');
  }
  const report = await ask<Message & { lastReturnAt: number; returns: number; findJobs: string[][]; times?: Record<string, number> }>(
    fleet,
    { type: 'report', times: c.returnTimes ?? false },
  );
  let again: { cpuMs: number; returns: number } | undefined;
  if (c.again) {
    await sleep(c.fleet.delayMs + c.fleet.spreadMs + 1000);
    await ask(fleet, { type: 'reset' });
    const before = cpuMs(pid);
    const th1 = threadTicks(pid);
    await (c.stream ? postStreamed : post)(port, c.low, c);
    const cpu = cpuMs(pid) - before;
    if (process.env.SCALE_THREADS) console.log('  threads again:', threadDiff(th1, threadTicks(pid)));
    again = { cpuMs: cpu, returns: (await ask<Message & { returns: number }>(fleet, { type: 'report' })).returns };
  }
  await stopServer(child);
  return {
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
    floorCpuMs,
    againCpuMs: again?.cpuMs,
    againReturns: again?.returns,
    returnTimes: report.times,
  };
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
