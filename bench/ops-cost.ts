/**
 * `npm run bench -- --only ops-cost` (issue 24): what the audit trail and the
 * metrics cost per request, the same load on two servers in the same run
 * (bench/ops-server-process.ts):
 *
 * - light: no audit records, metrics counted but never scraped (they cannot
 *   be turned off: lib/http/metrics.ts counts every answer and item);
 * - full: audit lines written to a file (`audit_log`, the command's
 *   AuditSink) with `audit_args: true`, and /metrics scraped every second
 *   during the load;
 *
 * and beside them the floor (bench/floor-process.ts, a bare node:http
 * server). The three are driven at once (each server on a master double of
 * its own), so that they share each moment of a shared machine; loads at
 * concurrency 16 each on keep-alive connections, paced at the same rate for
 * all three (CPU per request depends on how many requests each wakeup finds): `local` test.ping to four minions of the master double, and
 * a refused item (no `tgt`: 400 before anything is sent to the master, which
 * still has its audit line and metrics). Several rounds; the figures are the
 * rounds' medians, and the rounds' spread is the noise.
 *
 * The check (per load): the difference of the medians (full - light) is at
 * most 5% of light's median plus the noise, the noise being the larger of
 * the two configurations' interquartile ranges. The audit line is real work
 * (a timestamp, a logfmt line, the arguments masked, a file write), so it
 * cannot be exactly free; 5% of the server's CPU is below what this machine's
 * run-to-run swing is and below what capacity planning could see.
 * Also checked: no wrong answers, one audit line per item sent to full, each
 * with its arguments, and every scrape answered.
 */
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { ask, startChild, type Message } from './ipc.js';
import { build } from './compiled.js';
import { HttpClient, drive, type RunResult } from './driver.js';

const FAST_MINIONS = 4;
const CONCURRENCY = 16;
const WARMUP_MS = 300;
const JIT_WARMUP_MS = 4000;
/** The paced rate: this share of light's closed-loop rate, so that full keeps up too if it costs more. */
const PACE_SHARE = 0.7;
const SCRAPE_EVERY_MS = 1000;
const BUDGET_SHARE = 0.05;
const CREDENTIALS = { eauth: 'pam', username: 'saltdev', password: 'x' };

interface Load {
  name: string;
  body: string;
  right(status: number, body: unknown): boolean;
  /** Whether the master works for it (then the floor runs beside raw publishes at the same rate). */
  master: boolean;
}

const MINION_IDS = Array.from({ length: FAST_MINIONS }, (_, i) => `minion${i + 1}`);
const LOADS: Load[] = [
  {
    name: `local test.ping to ${FAST_MINIONS} minions`,
    body: JSON.stringify([{ client: 'local', tgt: 'minion*', fun: 'test.ping', ...CREDENTIALS }]),
    right: (status, body) => {
      const ret = (body as { return?: Record<string, unknown>[] })?.return?.[0];
      return status === 200 && !!ret && Object.keys(ret).length === FAST_MINIONS && MINION_IDS.every((id) => ret[id] === true);
    },
    master: true,
  },
  {
    name: 'refused item (no tgt: 400)',
    body: JSON.stringify([{ client: 'local', fun: 'test.ping', ...CREDENTIALS }]),
    right: (status) => status === 400,
    master: false,
  },
];

type Target = 'light' | 'full' | 'floor';
const TARGETS: Target[] = ['light', 'full', 'floor'];

interface Proc {
  child: ChildProcess;
  port: number;
  metricsPort?: number;
  /** Items sent to it, warm-ups included (full: as many audit lines). */
  sent: number;
}

interface Sample {
  cpuMicros: number;
  run: RunResult;
}

export interface OpsCostOptions {
  seconds: number;
  rounds: number;
  /** A directory for CPU profiles of light and full during round 1, else none. */
  profileDir?: string;
}

async function cpuOf(proc: Proc): Promise<number> {
  return (await ask<Message & { cpuMicros: number }>(proc.child, { type: 'cpu' })).cpuMicros;
}

/** GET /metrics every second until stopped; counts the scrapes and those that failed. */
function scraper(port: number): { stop(): Promise<void>; scrapes: number; failed: number } {
  const state = { scrapes: 0, failed: 0, pending: Promise.resolve(), stop: async () => {} };
  const scrape = () =>
    new Promise<void>((resolve) => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => {
            state.scrapes++;
            if (res.statusCode !== 200 || !text.includes('salt_rest_wsgi_lowstate_items_total')) state.failed++;
            resolve();
          });
        })
        .on('error', () => {
          state.failed++;
          resolve();
        });
    });
  const timer = setInterval(() => (state.pending = scrape()), SCRAPE_EVERY_MS);
  state.stop = async () => {
    clearInterval(timer);
    await state.pending;
  };
  return state;
}

interface Bench {
  procs: Record<Target, Proc>;
  masters: ChildProcess[];
  scrapes: number;
  scrapesFailed: number;
}

async function startBench(auditPath: string): Promise<Bench> {
  // A master double each: a master's event bus goes to every server on it, and each would read the other's returns.
  const masters = await Promise.all(
    [0, 1].map(() => startChild<Message & { configPath: string }>('./master-process.ts', [String(FAST_MINIONS)])),
  );
  const start = async (file: string, args: string[]): Promise<Proc> => {
    const { child, ready } = await startChild<Message & { port: number; metricsPort?: number }>(file, args);
    return { child, port: ready.port, metricsPort: ready.metricsPort, sent: 0 };
  };
  const procs: Record<Target, Proc> = {
    light: await start('./ops-server-process.ts', [masters[0].ready.configPath, 'light']),
    full: await start('./ops-server-process.ts', [masters[1].ready.configPath, 'full', auditPath]),
    floor: await start('./floor-process.ts', []),
  };
  return { procs, masters: masters.map((m) => m.child), scrapes: 0, scrapesFailed: 0 };
}

/** The three driven at once, each by CONCURRENCY callers of its own (at `rate` each when given): they share one machine's moment. */
async function round(bench: Bench, load: Load, durationMs: number, rate?: number): Promise<Record<Target, Sample>> {
  // The doubles log every request and job: emptied so that they don't slow down over the run.
  await Promise.all(bench.masters.map((m) => ask(m, { type: 'clear' })));
  const one = async (target: Target): Promise<Sample> => {
    const proc = bench.procs[target];
    const client = new HttpClient(proc.port);
    const send = async (caller: number) => {
      proc.sent++;
      const answer = await client.post(caller, load.body);
      return target === 'floor' ? answer.status === 200 : load.right(answer.status, answer.body);
    };
    const before = await cpuOf(proc);
    const run = await drive(CONCURRENCY, send, { durationMs, rate });
    const after = await cpuOf(proc);
    client.close();
    return { cpuMicros: (after - before) / run.count, run };
  };
  const scrape = scraper(bench.procs.full.metricsPort!);
  const [light, full, floor] = await Promise.all(TARGETS.map(one));
  await scrape.stop();
  bench.scrapes += scrape.scrapes;
  bench.scrapesFailed += scrape.failed;
  return { light, full, floor };
}

export async function runOpsCost(options: OpsCostOptions): Promise<boolean> {
  build();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'salt-rest-wsgi-ops-cost-'));
  const auditPath = path.join(dir, 'audit.log');
  const bench = await startBench(auditPath);
  const results: LoadResult[] = [];
  try {
    for (const load of LOADS) results.push(await measureLoad(bench, load, options));
  } finally {
    for (const child of [...TARGETS.map((t) => bench.procs[t].child), ...bench.masters]) await stopChild(child);
  }
  const auditLines = readFileSync(auditPath, 'utf8')
    .split('\n')
    .filter((line) => line !== '');
  rmSync(dir, { recursive: true, force: true });
  const { scrapes, scrapesFailed } = bench;
  return report(results, { auditLines, sentToFull: bench.procs.full.sent, scrapes, scrapesFailed, options });
}

interface LoadResult {
  load: Load;
  rate: number;
  samples: Record<Target, Sample[]>;
}

/** One load: JIT warm-up, the closed-loop rate, then the rounds paced at PACE_SHARE of it. */
async function measureLoad(bench: Bench, load: Load, options: OpsCostOptions): Promise<LoadResult> {
  process.stderr.write(`ops-cost: ${load.name}: warm-up\n`);
  // Until V8 has compiled the hot paths, a server spends much of its CPU compiling.
  await round(bench, load, JIT_WARMUP_MS);
  const closed = await round(bench, load, options.seconds * 1000);
  const rate = Math.min(closed.light.run.rate, closed.full.run.rate) * PACE_SHARE;
  const samples: Record<Target, Sample[]> = { light: [], full: [], floor: [] };
  for (let i = 0; i < options.rounds; i++) {
    process.stderr.write(`ops-cost: ${load.name}: round ${i + 1} of ${options.rounds} at ${rate.toFixed(0)} req/s each\n`);
    await round(bench, load, WARMUP_MS, rate);
    const profiled = options.profileDir && i === 0 ? (['light', 'full'] as const) : [];
    for (const t of profiled) await ask(bench.procs[t].child, { type: 'profile-start' });
    const measured = await round(bench, load, options.seconds * 1000, rate);
    for (const t of profiled) {
      const file = path.join(options.profileDir!, `${t}-${load.master ? 'local' : 'refused'}.cpuprofile`);
      await ask(bench.procs[t].child, { type: 'profile-stop', file });
    }
    for (const t of TARGETS) samples[t].push(measured[t]);
  }
  return { load, rate, samples };
}

// ------------------------------------------------------------------ report

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const median = (values: number[]) => {
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
/** The spread of the middle half of the rounds (for 7 rounds: the 2nd to the 6th lowest). */
const iqr = (values: number[]) => {
  const s = sorted(values);
  return s[Math.ceil((3 * s.length) / 4) - 1] - s[Math.floor(s.length / 4)];
};

interface Totals {
  auditLines: string[];
  sentToFull: number;
  scrapes: number;
  scrapesFailed: number;
  options: OpsCostOptions;
}

function report(results: LoadResult[], totals: Totals): boolean {
  const lines: string[] = [];
  const checks: { name: string; text: string; ok: boolean }[] = [];
  const f = (x: number) => x.toFixed(1);
  lines.push(
    `ops-cost: server CPU µs per request (user + system), ${totals.options.rounds} rounds of ${totals.options.seconds} s each, ` +
      `concurrency ${CONCURRENCY}, paced at ${PACE_SHARE * 100}% of light's closed-loop rate; ${os.cpus().length} cores, Node ${process.version}`,
  );
  lines.push('light: no audit, metrics counted but not scraped; full: audit_log to a file with audit_args, /metrics scraped every 1 s');
  let errors = 0;
  for (const { load, rate, samples } of results) {
    const cpu = (t: Target) => samples[t].map((s) => s.cpuMicros);
    const [light, full, floor] = (['light', 'full', 'floor'] as const).map((t) => median(cpu(t)));
    const noise = Math.max(iqr(cpu('light')), iqr(cpu('full')));
    const paired = median(cpu('full').map((x, i) => x - cpu('light')[i]));
    const budget = BUDGET_SHARE * light + noise;
    const rounds = (t: Target) =>
      cpu(t)
        .map((x) => x.toFixed(0))
        .join(' ');
    lines.push('');
    lines.push(`${load.name}, ${rate.toFixed(0)} req/s:`);
    for (const t of ['light', 'full', 'floor'] as const) {
      const achieved = median(samples[t].map((s) => s.run.rate));
      const wrong = samples[t].reduce((n, s) => n + s.run.errors, 0);
      lines.push(
        `  ${t.padEnd(6)} median ${f(median(cpu(t))).padStart(6)}  IQR ${f(iqr(cpu(t))).padStart(5)}  rounds: ${rounds(t)}  ` +
          `(${achieved.toFixed(0)} req/s${wrong ? `, ${wrong} wrong` : ''})`,
      );
    }
    lines.push(
      `  beside the floor: light ${(light / floor).toFixed(2)}x, full ${(full / floor).toFixed(2)}x; own (minus floor): ` +
        `light ${f(light - floor)}, full ${f(full - floor)} µs/req`,
    );
    lines.push(
      `  full - light: ${f(full - light)} µs/req (${((100 * (full - light)) / light).toFixed(1)}%; median of the rounds' paired differences ` +
        `${f(paired)}); noise (larger IQR) ${f(noise)}`,
    );
    checks.push({
      name: `${load.name}: full - light within 5% of light + noise`,
      text: `${f(full - light)} µs <= ${f(budget)} µs`,
      ok: full - light <= budget,
    });
    errors += Object.values(samples).reduce((n, list) => n + list.reduce((m, s) => m + s.run.errors, 0), 0);
  }
  const withArgs = totals.auditLines.filter((line) => line.startsWith('audit ') && line.includes(' args=')).length;
  lines.push('');
  checks.push({ name: 'wrong or failed answers in every run', text: `${errors} (none)`, ok: errors === 0 });
  checks.push({
    name: 'audit lines of full, with args',
    text: `${withArgs} of ${totals.auditLines.length} lines for ${totals.sentToFull} items sent`,
    ok: totals.auditLines.length === totals.sentToFull && withArgs === totals.sentToFull,
  });
  checks.push({
    name: 'scrapes of full answered',
    text: `${totals.scrapes - totals.scrapesFailed} of ${totals.scrapes}`,
    ok: totals.scrapes > 0 && totals.scrapesFailed === 0,
  });
  for (const c of checks) lines.push(`${c.name}: ${c.text}: ${c.ok ? 'PASS' : 'FAIL'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return checks.every((c) => c.ok);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await ask(child, { type: 'stop' }).catch(() => child.kill());
  await exited;
}
