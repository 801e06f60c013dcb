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
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ask, startChild, type Message } from './ipc.js';
import { build } from './compiled.js';
import { EntryReader } from './json-stream.js';
import { fleetIds } from './fleet.js';
import { STREAM_CASES, postStreamed } from './scale-stream.js';
import { cpuMs, procStatus, settled, startServer, stopServer, threadDiff, threadTicks } from './server-child.js';
import { CASES, MB, WARM_UP_REQUESTS, perReturnUs, type Answer, type Case, type Result } from './scale-cases.js';

const wallNow = () => performance.timeOrigin + performance.now();

/** POST `low` and read the answer as it streams in, checking each minion's value. */
export function post(port: number, low: Record<string, unknown>, c: Case): Promise<Answer> {
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
