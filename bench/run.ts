/**
 * `npm run bench`: how much the API layer costs on top of the master.
 *
 * Three processes, so that each one's CPU is its own on a small machine:
 * the test master double (bench/master-process.ts), the server
 * (bench/server-process.ts: createHandler on node:http), and this one, the
 * load generator (HTTP/1.1 keep-alive, one connection per caller; see
 * HttpClient in driver.ts), which also sends the "raw" loads straight
 * through our transport (RequestChannel + EventBus, no HTTP, no dispatcher)
 * to the same master. The table's second part shows each process's CPU per
 * request: on two cores, the three compete. A fourth, bench/floor-process.ts,
 * is the floor: a bare node:http server measured at the server's
 * local_async rate, to tell the server's own CPU from what this machine
 * charges any node:http server.
 *
 * The issue's targets are read off local_async @16, measured three times
 * (the checks take the median). Prints one table and writes
 * bench/results.json. Options:
 *   --seconds N    measured time of each rate run (default 2.5)
 *   --profile      CPU-profile the server during each measured HTTP run (a .cpuprofile per run, in a temp dir)
 *   --only LOAD    only the rate runs of LOAD (local_async, local or wheel): no leak run, no burst
 *   --only scale   fleets of thousands of minions and gigabyte answers instead (bench/scale.ts);
 *                  --case TEXT runs only the cases whose name contains TEXT
 *   --only ops-cost  what the audit trail and the metrics cost per request, beside the floor
 *                  (bench/ops-cost.ts; --rounds N, default 7); the whole bench runs it last
 *   --only real-scale  CPU per return at 10,000 minions on a real Salt master (bench/real-scale.ts;
 *                  SALT_REAL_MASTER_CONFIG); never part of the whole bench
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { ask, startChild, type Message } from './ipc.js';
import { build, compiled } from './compiled.js';
import { HttpClient, drive, type RunResult } from './driver.js';
import { LOADS, SLOW_DELAY_MS, SLOW_MINIONS, answerIsRight, lowstate, sendRaw, type LoadName, type RawTransport } from './loads.js';
import type { ServerStats } from './server-process.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2.5' },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
    case: { type: 'string' },
    rounds: { type: 'string', default: '7' },
  },
});
const opsCost = async () => {
  const { runOpsCost } = await import('./ops-cost.js');
  const profileDir = flags.profile ? mkdtempSync(path.join(os.tmpdir(), 'salt-rest-wsgi-prof-')) : undefined;
  const ok = await runOpsCost({ seconds: Number(flags.seconds), rounds: Number(flags.rounds), profileDir });
  if (profileDir) process.stderr.write(`ops-cost CPU profiles (light and full, round 1) in ${profileDir}\n`);
  return ok;
};
if (flags.only === 'scale') {
  // Fleets and big answers: processes of their own, one fresh server per case.
  const { runScale } = await import('./scale.js');
  const ok = await runScale(flags.case);
  await new Promise((resolve) => process.stdout.write('', resolve));
  process.exit(ok ? 0 : 1);
}
if (flags.only === 'real-scale') {
  // 10,000 minions on a real Salt master (SALT_REAL_MASTER_CONFIG): its bus, its publish.
  const { runRealScale } = await import('./real-scale.js');
  const ok = await runRealScale();
  await new Promise((resolve) => process.stdout.write('', resolve));
  process.exit(ok ? 0 : 1);
}
if (flags.only === 'ops-cost') {
  const ok = await opsCost();
  await new Promise((resolve) => process.stdout.write('', resolve));
  process.exit(ok ? 0 : 1);
}
if (flags.only !== undefined && !(LOADS as string[]).includes(flags.only)) {
  throw new Error(`--only takes one of ${LOADS.join(', ')}, scale, real-scale or ops-cost`);
}
const RATE_LOADS = flags.only ? [flags.only as LoadName] : LOADS;
const FULL = flags.only === undefined;
const MEASURE_MS = Number(flags.seconds) * 1000;
/** Before each rate run, not counted. */
const WARMUP_MS = 300;
/** Once before all runs: until V8 has compiled the hot paths, the server spends a third of its CPU compiling. */
const JIT_WARMUP_MS = 6000;
const CONCURRENCIES = [1, 16, 64];
const LEAK_REQUESTS = 20_000;
const LEAK_BASELINE = 100;
const LEAK_CONCURRENCY = 16;
const BURST_TRIES = 3;
const BURST_LIMIT_MS = 2 * SLOW_DELAY_MS; // minions answer after 200 ms: all done within 400 ms
const MB = 1024 * 1024;

// ------------------------------------------------------------------ processes

// The server and the raw loads run the compiled library, as deployed.
build();
const { loadMasterConfig } = await compiled<typeof import('../lib/salt/config.js')>('lib/salt/config.js');
const { openRequestChannel } = await compiled<typeof import('../lib/salt/transports.js')>('lib/salt/transports.js');
const { EventBus, eventBusOptions } = await compiled<typeof import('../lib/salt/event-bus.js')>('lib/salt/event-bus.js');

const { child: masterChild, ready: masterReady } = await startChild<Message & { configPath: string }>('./master-process.ts');
const configPath = masterReady.configPath;
const profileDir = flags.profile ? mkdtempSync(path.join(os.tmpdir(), 'salt-rest-wsgi-prof-')) : undefined;
const { child: serverChild, ready: serverReady } = await startChild<Message & { port: number }>(
  './server-process.ts',
  [configPath],
  // --expose-gc: the leak run's figures are taken after a full collection (never during rate runs).
  ['--expose-gc'],
);
const port = serverReady.port;
const { child: floorChild, ready: floorReady } = await startChild<Message & { port: number }>('./floor-process.ts');

const opts = loadMasterConfig(configPath);
const raw: RawTransport = {
  channel: openRequestChannel(opts, { timeoutMs: 5000 }),
  bus: new EventBus(eventBusOptions(opts)),
};
raw.bus.on('error', () => {});
raw.bus.start();
await raw.bus.ready(5000);

/** `collect`: after a full garbage collection (memory figures, never around a CPU measurement). */
async function serverStats(collect = false): Promise<ServerStats> {
  return (await ask<Message & { stats: ServerStats }>(serverChild, { type: 'stats', collect })).stats;
}

/** CPU time (user + system, µs) of the three processes. */
interface CpuTimes {
  server: number;
  master: number;
  client: number;
}

async function cpuTimes(): Promise<CpuTimes> {
  const [server, master] = await Promise.all([serverStats(), ask<Message & { cpuMicros: number }>(masterChild, { type: 'cpu' })]);
  const own = process.cpuUsage();
  return { server: server.cpuMicros, master: master.cpuMicros, client: own.user + own.system };
}

/** CPU per request of each process between two readings, µs. */
function perRequest(before: CpuTimes, after: CpuTimes, count: number): CpuTimes {
  return {
    server: (after.server - before.server) / count,
    master: (after.master - before.master) / count,
    client: (after.client - before.client) / count,
  };
}

/** The double logs every request, event and job: emptied between runs so that it doesn't slow down. */
async function clearMasterLog(): Promise<void> {
  await ask(masterChild, { type: 'clear' });
}

/** An HTTP sender of `load` (to `tgt`, else minion1) for `caller`, on keep-alive connections of its own. */
function httpSender() {
  const client = new HttpClient(port);
  const send = async (caller: number, load: LoadName, tgt?: string, body = JSON.stringify([lowstate(load, tgt)])) => {
    const answer = await client.post(caller, body);
    return answer.status === 200 && answerIsRight(load, answer.body, tgt);
  };
  return { send, client };
}

// ------------------------------------------------------------------ leak run

interface Leak {
  afterFirst: ServerStats;
  afterAll: ServerStats;
  errors: number;
}

/**
 * After the rate runs, on a server that has reached its working size (V8
 * grows its young generation from 1 to 32 MB under load: growth, but once,
 * not per request); memory figures after a full garbage collection.
 */
async function leakRun(): Promise<Leak> {
  process.stderr.write(`leak run: ${LEAK_REQUESTS} requests (local_async, local, wheel in turn) at concurrency ${LEAK_CONCURRENCY}\n`);
  const { send, client } = httpSender();
  const bodies = LOADS.map((load) => JSON.stringify([lowstate(load)]));
  let turn = 0;
  const sendNext = (caller: number) => {
    const i = turn++ % LOADS.length;
    return send(caller, LOADS[i], undefined, bodies[i]);
  };
  const first = await drive(LEAK_CONCURRENCY, sendNext, { total: LEAK_BASELINE });
  const afterFirst = await serverStats(true);
  let errors = first.errors;
  for (let done = LEAK_BASELINE; done < LEAK_REQUESTS; done += 5000) {
    await clearMasterLog();
    errors += (await drive(LEAK_CONCURRENCY, sendNext, { total: Math.min(5000, LEAK_REQUESTS - done) })).errors;
  }
  const afterAll = await serverStats(true);
  client.close();
  return { afterFirst, afterAll, errors };
}

// ------------------------------------------------------------------ rates

interface RateRow {
  load: LoadName;
  concurrency: number;
  http: RunResult;
  raw: RunResult;
  /** Server CPU time per HTTP request, µs. */
  cpuMicros: number;
  /** CPU per request of every process, µs: over HTTP, and raw (where the server only reads the bus). */
  httpCpu: CpuTimes;
  rawCpu: CpuTimes;
}

async function rateRun(load: LoadName, concurrency: number): Promise<RateRow> {
  process.stderr.write(`${load} @${concurrency}\n`);
  await clearMasterLog();
  const { send, client } = httpSender();
  const body = JSON.stringify([lowstate(load)]);
  const sendHttp = (caller: number) => send(caller, load, undefined, body);
  await drive(concurrency, sendHttp, { durationMs: WARMUP_MS });
  if (profileDir) await ask(serverChild, { type: 'profile-start' });
  const before = await cpuTimes();
  const http = await drive(concurrency, sendHttp, { durationMs: MEASURE_MS });
  const after = await cpuTimes();
  if (profileDir) await ask(serverChild, { type: 'profile-stop', file: path.join(profileDir, `${load}-${concurrency}.cpuprofile`) });
  client.close();

  await clearMasterLog();
  const sendRawLoad = () => sendRaw(raw, load);
  await drive(concurrency, sendRawLoad, { durationMs: WARMUP_MS });
  const rawBefore = await cpuTimes();
  const rawResult = await drive(concurrency, sendRawLoad, { durationMs: MEASURE_MS });
  const rawAfter = await cpuTimes();
  const httpCpu = perRequest(before, after, http.count);
  return {
    load,
    concurrency,
    http,
    raw: rawResult,
    cpuMicros: httpCpu.server,
    httpCpu,
    rawCpu: perRequest(rawBefore, rawAfter, rawResult.count),
  };
}

// ------------------------------------------------------------------ floor

interface Floor {
  /** The rate both loads were paced at: the server's HTTP local_async rate @16. */
  rate: number;
  /** The bare node:http server's CPU per request, µs. */
  cpuMicros: number;
  errors: number;
}

/**
 * What node:http and loopback TCP alone cost here: the bare server of
 * floor-process.ts, driven at the rate the server reached (CPU per request
 * depends on how many requests each wakeup finds), while raw local_async
 * load at the same rate keeps the master as busy as during the HTTP run.
 */
async function floorRun(rate: number): Promise<Floor> {
  process.stderr.write(`floor: bare node:http at ${rate.toFixed(0)} req/s @16, beside raw local_async at the same rate\n`);
  await clearMasterLog();
  const client = new HttpClient(floorReady.port);
  const body = JSON.stringify([lowstate('local_async')]);
  const sendFloor = (caller: number) => client.post(caller, body).then((answer) => answer.status === 200);
  const floorCpu = async () => (await ask<Message & { cpuMicros: number }>(floorChild, { type: 'cpu' })).cpuMicros;
  // Its code gets compiled as ours was in the warm-up.
  await drive(16, sendFloor, { durationMs: JIT_WARMUP_MS / 3 });
  await drive(16, sendFloor, { durationMs: WARMUP_MS, rate });
  const before = await floorCpu();
  const [floor, master] = await Promise.all([
    drive(16, sendFloor, { durationMs: MEASURE_MS, rate }),
    drive(16, () => sendRaw(raw, 'local_async'), { durationMs: MEASURE_MS, rate }),
  ]);
  const after = await floorCpu();
  client.close();
  return { rate, cpuMicros: (after - before) / floor.count, errors: floor.errors + master.errors };
}

// ------------------------------------------------------------------ burst of slow sync calls

interface Burst {
  /** From the first request sent to the last answer, ms. */
  totalMs: number;
  /** Answers that were not exactly their own minion's `{id: true}`. */
  wrong: number;
}

async function burst(send: (caller: number, tgt: string) => Promise<boolean>): Promise<Burst> {
  let wrong = 0;
  const t0 = performance.now();
  await Promise.all(
    SLOW_MINIONS.map(async (tgt, caller) => {
      if (!(await send(caller, tgt).catch(() => false))) wrong++;
    }),
  );
  return { totalMs: performance.now() - t0, wrong };
}

async function burstRuns(): Promise<{ http: Burst[]; raw: Burst[] }> {
  process.stderr.write(`burst: ${SLOW_MINIONS.length} concurrent sync local calls, minions answering after ${SLOW_DELAY_MS} ms\n`);
  await clearMasterLog();
  const { send, client } = httpSender();
  const sendHttp = (caller: number, tgt: string) => send(caller, 'local', tgt);
  // Once untimed to open the connections: the burst measures the API, not TCP handshakes.
  await burst(sendHttp);
  const httpBursts: Burst[] = [];
  for (let i = 0; i < BURST_TRIES; i++) httpBursts.push(await burst(sendHttp));
  client.close();
  const rawBursts: Burst[] = [];
  for (let i = 0; i < BURST_TRIES; i++) rawBursts.push(await burst((_caller, tgt) => sendRaw(raw, 'local', tgt)));
  return { http: httpBursts, raw: rawBursts };
}

// ------------------------------------------------------------------ run

async function jitWarmup(): Promise<void> {
  process.stderr.write(`warm-up: ${JIT_WARMUP_MS / 1000} s of the three loads in turn at concurrency 16, over HTTP then raw\n`);
  const { send, client } = httpSender();
  let turn = 0;
  await drive(16, (caller) => send(caller, LOADS[turn++ % LOADS.length]), { durationMs: (JIT_WARMUP_MS * 2) / 3 });
  client.close();
  await drive(16, () => sendRaw(raw, LOADS[turn++ % LOADS.length]), { durationMs: JIT_WARMUP_MS / 3 });
  await clearMasterLog();
}

const fresh = await serverStats(true);
await jitWarmup();
const rows: RateRow[] = [];
for (const load of RATE_LOADS) for (const concurrency of CONCURRENCIES) rows.push(await rateRun(load, concurrency));
// The targets' run, local_async @16, twice more: one 2.5 s sample on a small
// shared machine swings by 10-15%; the checks take the median of the three.
const firstAsyncRow = rows.find((r) => r.load === 'local_async' && r.concurrency === 16);
const targetRuns = firstAsyncRow ? [firstAsyncRow, await rateRun('local_async', 16), await rateRun('local_async', 16)] : [];
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const ratios = targetRuns.map((r) => r.http.rate / r.raw.rate);
const cpus = targetRuns.map((r) => r.cpuMicros);
const target = firstAsyncRow && { ratios, cpus, ratio: median(ratios), cpu: median(cpus) };
const floor = target ? await floorRun(median(targetRuns.map((r) => r.http.rate))) : undefined;
const bursts = FULL ? await burstRuns() : undefined;
const leak = FULL ? await leakRun() : undefined;

// ------------------------------------------------------------------ report

const lines: string[] = [];
const pad = (text: string | number, width: number) => String(text).padStart(width);
lines.push(
  `${'load'.padEnd(12)}${pad('conc', 5)}${pad('http req/s', 12)}${pad('raw req/s', 11)}${pad('http/raw', 10)}` +
    `${pad('http p50', 10)}${pad('http p99', 10)}${pad('raw p50', 9)}${pad('raw p99', 9)}${pad('cpu µs/req', 12)}${pad('errors', 8)}`,
);
for (const r of rows) {
  lines.push(
    `${r.load.padEnd(12)}${pad(r.concurrency, 5)}${pad(r.http.rate.toFixed(0), 12)}${pad(r.raw.rate.toFixed(0), 11)}` +
      `${pad(`${((100 * r.http.rate) / r.raw.rate).toFixed(0)}%`, 10)}` +
      `${pad(r.http.p50Ms.toFixed(2), 10)}${pad(r.http.p99Ms.toFixed(2), 10)}` +
      `${pad(r.raw.p50Ms.toFixed(2), 9)}${pad(r.raw.p99Ms.toFixed(2), 9)}` +
      `${pad(r.cpuMicros.toFixed(0), 12)}${pad(r.http.errors + r.raw.errors, 8)}`,
  );
}
lines.push("(latencies in ms; cpu = the server process's CPU time, user + system, per HTTP request)");
lines.push('');
lines.push(`CPU µs per request of each process, and cores busy (this machine has ${os.cpus().length}):`);
lines.push(
  `${'load'.padEnd(12)}${pad('conc', 5)}${pad('http: server', 14)}${pad('master', 8)}${pad('client', 8)}${pad('cores', 7)}` +
    `${pad('raw: server', 13)}${pad('master', 8)}${pad('client', 8)}${pad('cores', 7)}`,
);
const cores = (cpu: CpuTimes, result: RunResult) => ((cpu.server + cpu.master + cpu.client) * result.count) / (result.durationMs * 1000);
for (const r of rows) {
  lines.push(
    `${r.load.padEnd(12)}${pad(r.concurrency, 5)}${pad(r.httpCpu.server.toFixed(0), 14)}${pad(r.httpCpu.master.toFixed(0), 8)}` +
      `${pad(r.httpCpu.client.toFixed(0), 8)}${pad(cores(r.httpCpu, r.http).toFixed(2), 7)}` +
      `${pad(r.rawCpu.server.toFixed(0), 13)}${pad(r.rawCpu.master.toFixed(0), 8)}${pad(r.rawCpu.client.toFixed(0), 8)}` +
      `${pad(cores(r.rawCpu, r.raw).toFixed(2), 7)}`,
  );
}
lines.push('');

if (target) {
  const percent = (x: number) => `${(100 * x).toFixed(0)}%`;
  lines.push(
    `local_async @16, ${targetRuns.length} runs: http/raw ${target.ratios.map(percent).join(', ')} (median ${percent(target.ratio)}); ` +
      `server CPU ${target.cpus.map((x) => x.toFixed(0)).join(', ')} µs/req (median ${target.cpu.toFixed(0)})`,
  );
  if (floor) {
    lines.push(
      `floor, local_async @16: a bare node:http server (read the body, JSON.parse, fixed answer) at the server's ` +
        `${floor.rate.toFixed(0)} req/s beside the same master load costs ${floor.cpuMicros.toFixed(0)} µs/req; ` +
        `the server ${target.cpu.toFixed(0)}, so ${(target.cpu - floor.cpuMicros).toFixed(0)} µs/req are its own`,
    );
  }
  lines.push('');
}
const fmtStats = (s: ServerStats) => `${s.fds} fds, RSS ${(s.rss / MB).toFixed(1)} MB (heap ${(s.heapUsed / MB).toFixed(1)} MB)`;
lines.push(`server when started: ${fmtStats(fresh)}`);
if (leak) {
  lines.push(
    `leak run, after its first ${LEAK_BASELINE} requests: ${fmtStats(leak.afterFirst)}; after ${LEAK_REQUESTS}: ` +
      `${fmtStats(leak.afterAll)}; ${leak.errors} errors (memory after a full GC)`,
  );
}
if (bursts) {
  const fmt = (b: Burst[]) => b.map((x) => `${x.totalMs.toFixed(0)} ms${x.wrong ? ` (${x.wrong} wrong)` : ''}`).join(', ');
  lines.push(
    `${SLOW_MINIONS.length} concurrent sync local, minions answering after ${SLOW_DELAY_MS} ms, first sent to last answered: ` +
      `http ${fmt(bursts.http)}; raw ${fmt(bursts.raw)}`,
  );
}
lines.push('');

interface Check {
  name: string;
  text: string;
  ok: boolean;
}
const checks: Check[] = [];
if (target) {
  const { ratio, cpu } = target;
  checks.push({
    name: `local_async http/raw @16 (median of ${targetRuns.length})`,
    text: `${(ratio * 100).toFixed(0)}% (>= 80%)`,
    ok: ratio >= 0.8,
  });
  checks.push({
    name: `server CPU per local_async request @16 (median of ${targetRuns.length})`,
    text: `${cpu.toFixed(0)} µs (< 150 µs)`,
    ok: cpu < 150,
  });
}
if (bursts) {
  const worst = Math.max(...bursts.http.map((b) => b.totalMs));
  const wrong = bursts.http.reduce((n, b) => n + b.wrong, 0);
  checks.push({
    name: `${SLOW_MINIONS.length} concurrent sync local, minions at ${SLOW_DELAY_MS} ms`,
    text: `worst of ${BURST_TRIES}: ${worst.toFixed(0)} ms, ${wrong} wrong (<= ${BURST_LIMIT_MS} ms, none wrong)`,
    ok: worst <= BURST_LIMIT_MS && wrong === 0,
  });
}
if (leak) {
  const fdGrowth = leak.afterAll.fds - leak.afterFirst.fds;
  const rssGrowth = (leak.afterAll.rss - leak.afterFirst.rss) / MB;
  checks.push({
    name: `fds after ${LEAK_REQUESTS} requests`,
    text: `${leak.afterAll.fds} vs ${leak.afterFirst.fds} after the first ${LEAK_BASELINE} (±2)`,
    ok: Math.abs(fdGrowth) <= 2,
  });
  checks.push({ name: `RSS growth over ${LEAK_REQUESTS} requests`, text: `${rssGrowth.toFixed(1)} MB (< 20 MB)`, ok: rssGrowth < 20 });
}
const errors =
  [...rows, ...targetRuns.slice(1)].reduce((n, r) => n + r.http.errors + r.raw.errors, 0) + (leak?.errors ?? 0) + (floor?.errors ?? 0);
checks.push({ name: 'wrong or failed answers in every run', text: `${errors} (none)`, ok: errors === 0 });
for (const c of checks) lines.push(`${c.name}: ${c.text}: ${c.ok ? 'PASS' : 'FAIL'}`);

process.stdout.write(`${lines.join('\n')}\n`);

writeFileSync(
  fileURLToPath(new URL('./results.json', import.meta.url)),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      measureMs: MEASURE_MS,
      rates: rows,
      /** local_async @16 measured twice more: the checks take the median of the three. */
      moreTargetRuns: targetRuns.slice(1),
      floor,
      fresh,
      leak,
      burst: bursts && { limitMs: BURST_LIMIT_MS, ...bursts },
      checks,
    },
    null,
    2,
  )}\n`,
);

// ------------------------------------------------------------------ stop

raw.channel.close();
raw.bus.close();
await stopChild(serverChild);
await stopChild(floorChild);
await stopChild(masterChild);
if (profileDir) process.stderr.write(`server CPU profiles (one per measured HTTP run) in ${profileDir}\n`);
// The audit trail's and the metrics' cost (issue 24): processes of its own, after the others stopped.
const opsOk = FULL ? await opsCost() : true;
process.exitCode = checks.every((c) => c.ok) && opsOk ? 0 : 1;

async function stopChild(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await ask(child, { type: 'stop' }).catch(() => child.kill());
  await exited;
}
