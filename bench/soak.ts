/**
 * Soak: `npm run soak -- --minutes N [--concurrency C]`.
 *
 * Three processes, so that the server's descriptors and memory are its own:
 * the master double (this file with `--role master`), the server (the
 * salt-rest-wsgi command on the double's config) and this load generator.
 * For N minutes, C workers send a mix of every client and some bad input
 * over keep-alive connections, and the master is restarted (stopped, then
 * started on the same ports two seconds later) in the middle of every minute.
 *
 * Every answer is classed:
 * - ok: the status the request should get (200, or the 4xx of bad input);
 * - outage: a 503 or 504 of a request whose lifetime overlaps a restart
 *   (from the master's stop until 5 s after it is back): expected;
 * - unexplained: anything else (wrong status, network error, an outage
 *   answer outside a restart). The run should have none.
 *
 * Prints one line per minute while running, then the table: requests, ok,
 * bad input answered 4xx, outage answers, unexplained, p99 latency, and the
 * server's open descriptors and RSS at the end of each minute; then every
 * kind of non-200 answer with its count. Exit status 1 if anything was
 * unexplained or the server did not stop cleanly (SIGTERM, exit 0).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..');
const PASSWORD = 'soak-password';
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const MINIONS = ['minion1', 'minion2', 'minion3', 'minion4'];
/** How long after the master is back its restart still explains a 503/504. */
const SETTLE_MS = 5000;
const RESTART_DOWN_MS = 2000;

// ------------------------------------------------------------------ the master

async function runMaster(): Promise<void> {
  const { startMaster } = await import('../test/support/master.js');
  const master = await startMaster({
    users: { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } },
    minions: MINIONS.map((id, i) => ({ id, delayMs: 5 * i })),
    // Its bad input includes failed logins, all from one address: the failed-login
    // throttle would turn the rest of that address's requests into 429s.
    config: { timeout: 2, gather_job_timeout: 2, rest_wsgi: { auth_failure_limit: 0 } },
  });
  // The double keeps every request, event and job for tests: drop them, or
  // the master's memory grows for the length of the soak.
  setInterval(() => {
    master.clearLog();
    master.jobs.clear();
  }, 5000).unref();
  process.on('message', (message: { type: string }) => {
    void (async () => {
      if (message.type === 'restart') {
        await master.stop();
        const stoppedAt = Date.now();
        process.send!({ type: 'stopped', at: stoppedAt });
        await new Promise((r) => setTimeout(r, RESTART_DOWN_MS));
        await master.start();
        process.send!({ type: 'started', at: Date.now() });
      } else if (message.type === 'exit') {
        await master.close();
        process.exit(0);
      }
    })();
  });
  process.on('disconnect', () => void master.close().then(() => process.exit(0)));
  process.send!({ type: 'ready', configPath: master.configPath });
}

// ------------------------------------------------------------------ the load

interface Kind {
  name: string;
  weight: number;
  body: () => string;
  /** The status it should get from a healthy server. */
  expect: number;
  bad?: boolean;
}

const json = (value: unknown) => JSON.stringify(value);
const KINDS: Kind[] = [
  { name: 'local', weight: 20, expect: 200, body: () => json([{ ...CRED, client: 'local', tgt: '*', fun: 'test.ping' }]) },
  { name: 'local_async', weight: 15, expect: 200, body: () => json([{ ...CRED, client: 'local_async', tgt: '*', fun: 'test.ping' }]) },
  {
    name: 'local_subset',
    weight: 5,
    expect: 200,
    body: () => json([{ ...CRED, client: 'local_subset', tgt: '*', fun: 'test.ping', subset: 2 }]),
  },
  {
    name: 'local_batch',
    weight: 5,
    expect: 200,
    body: () => json([{ ...CRED, client: 'local_batch', tgt: '*', fun: 'test.ping', batch: '50%' }]),
  },
  {
    name: 'runner',
    weight: 10,
    expect: 200,
    body: () => json([{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['a', 1], kwarg: { b: 2 } }]),
  },
  { name: 'runner_async', weight: 5, expect: 200, body: () => json([{ ...CRED, client: 'runner_async', fun: 'test.arg', arg: ['a'] }]) },
  { name: 'wheel', weight: 10, expect: 200, body: () => json([{ ...CRED, client: 'wheel', fun: 'key.list_all' }]) },
  { name: 'wheel_async', weight: 5, expect: 200, body: () => json([{ ...CRED, client: 'wheel_async', fun: 'key.list_all' }]) },
  {
    name: 'two items',
    weight: 5,
    expect: 200,
    body: () =>
      json([
        { ...CRED, client: 'local', tgt: 'minion1', fun: 'cmd.run', arg: ['hostname'] },
        { ...CRED, client: 'runner', fun: 'test.arg', arg: [18446744073709551615n.toString()] },
      ]),
  },
  { name: 'bad json', weight: 3, bad: true, expect: 400, body: () => '[{"client": "local", ' },
  { name: 'bad client', weight: 3, bad: true, expect: 400, body: () => json([{ ...CRED, client: 'bogus', fun: 'test.ping' }]) },
  { name: 'no credentials', weight: 3, bad: true, expect: 401, body: () => json([{ client: 'local', tgt: '*', fun: 'test.ping' }]) },
  {
    name: 'wrong password',
    weight: 3,
    bad: true,
    expect: 401,
    body: () => json([{ ...CRED, password: 'wrong', client: 'runner', fun: 'test.arg' }]),
  },
  { name: 'too deep', weight: 1, bad: true, expect: 400, body: () => `[${'['.repeat(2000)}${']'.repeat(2000)}]` },
];
const TOTAL_WEIGHT = KINDS.reduce((n, k) => n + k.weight, 0);

function pickKind(): Kind {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const kind of KINDS) if ((r -= kind.weight) < 0) return kind;
  return KINDS[0];
}

interface Answer {
  status: number;
  text: string;
}

function post(agent: http.Agent, port: number, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(120_000, () => req.destroy(new Error('no answer within 120 s')));
    req.on('error', reject);
    req.end(body);
  });
}

interface Minute {
  requests: number;
  ok: number;
  badInput: number;
  outage: number;
  unexplained: number;
  latencies: number[];
  p99Ms: number;
  fds: number;
  rssMb: number;
  restarts: number;
}

const newMinute = (): Minute => ({
  requests: 0,
  ok: 0,
  badInput: 0,
  outage: 0,
  unexplained: 0,
  latencies: [],
  p99Ms: 0,
  fds: 0,
  rssMb: 0,
  restarts: 0,
});

function p99(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];
}

function serverFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

function serverRssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : -1;
  } catch {
    return -1;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A short text for an answer's message, for grouping (jids and numbers blanked). */
function messageOf(answer: Answer): string {
  let text = answer.text;
  try {
    const value = JSON.parse(text) as { return?: unknown };
    text = typeof value.return === 'string' ? value.return : JSON.stringify(value.return);
  } catch {
    // not JSON: keep the text
  }
  return text.replace(/\d{20}/g, '<jid>').slice(0, 180);
}

async function runSoak(minutes: number, concurrency: number, periodMs: number): Promise<number> {
  const master = fork(fileURLToPath(import.meta.url), ['--role', 'master'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { configPath } = await new Promise<{ configPath: string }>((resolve, reject) => {
    master.once('exit', (code) => reject(new Error(`the master exited (${code}) before it was ready`)));
    master.once('message', resolve);
  });

  const port = await freePort();
  const server: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'bin', 'salt-rest-wsgi.ts'), '-c', configPath, '--port', String(port), '--log-level', 'warn'],
    { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SALT_MASTER_CONFIG: undefined } },
  );
  // The server's warnings and errors: expected ones (the master going away) are counted, not printed.
  const serverLog = new Map<string, number>();
  let serverErrors = 0;
  let stderrRest = '';
  server.stderr!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (stderrRest + d).split('\n');
    stderrRest = lines.pop()!;
    for (const line of lines) {
      const text = line
        .replace(/^\S+ /, '')
        .replace(/\d{20}/g, '<jid>')
        .slice(0, 160);
      serverLog.set(text, (serverLog.get(text) ?? 0) + 1);
      if (/^ERROR/.test(text)) serverErrors++;
    }
  });
  const serverExit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    server.once('exit', (code, signal) => resolve({ code, signal })),
  );
  // Wait for it to listen.
  const probe = new http.Agent({ keepAlive: false });
  for (let i = 0; ; i++) {
    try {
      await new Promise<void>((resolve, reject) => {
        http.get({ agent: probe, host: '127.0.0.1', port, path: '/' }, (res) => res.resume().on('end', resolve)).on('error', reject);
      });
      break;
    } catch (err) {
      if (i > 200 || server.exitCode !== null) throw new Error(`the server did not start: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // Restarts: from asking for one (before the master stops) until SETTLE_MS
  // after it is back; the last one open until it says it is back.
  const outages: Array<{ from: number; to: number }> = [];
  master.on('message', (m: { type: string; at: number }) => {
    if (m.type === 'started') outages[outages.length - 1].to = m.at + SETTLE_MS;
  });
  const duringOutage = (start: number, end: number) => outages.some((o) => start <= o.to && end >= o.from);

  const table: Minute[] = [];
  let current = newMinute();
  const kinds = new Map<string, { count: number; explained: boolean }>();
  const note = (key: string, explained: boolean) => {
    const entry = kinds.get(key) ?? { count: 0, explained };
    entry.count++;
    kinds.set(key, entry);
  };

  const startedAt = Date.now();
  const endAt = startedAt + minutes * periodMs;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;

  async function worker(): Promise<void> {
    while (running && Date.now() < endAt) {
      const kind = pickKind();
      const t0 = performance.now();
      const start = Date.now();
      let answer: Answer | undefined;
      let failure: string | undefined;
      try {
        answer = await post(agent, port, kind.body());
      } catch (err) {
        failure = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
      const end = Date.now();
      const m = current;
      m.requests++;
      m.latencies.push(performance.now() - t0);
      if (answer && answer.status === kind.expect) {
        if (kind.bad) m.badInput++;
        else m.ok++;
        if (kind.bad) note(`${answer.status} ${kind.name}: ${messageOf(answer)}`, true);
      } else if (answer && (answer.status === 503 || answer.status === 504) && duringOutage(start, end)) {
        m.outage++;
        note(`${answer.status} ${kind.name} during a restart: ${messageOf(answer)}`, true);
      } else {
        m.unexplained++;
        note(answer ? `${answer.status} ${kind.name}: ${messageOf(answer)}` : `network error ${kind.name}: ${failure}`, false);
      }
      // A little think time: a busy, not a saturated, server.
      await new Promise((r) => setTimeout(r, Math.random() * 10));
    }
  }

  // A restart in the middle of every minute.
  let restartInterval: NodeJS.Timeout | undefined;
  const restart = () => {
    if (Date.now() + RESTART_DOWN_MS + SETTLE_MS > endAt) return; // not in the last seconds
    current.restarts++;
    outages.push({ from: Date.now(), to: Infinity });
    master.send({ type: 'restart' });
  };
  const restartTimer = setTimeout(() => {
    restart();
    restartInterval = setInterval(restart, periodMs);
  }, periodMs / 2);
  // The last row is taken when the workers are done: it includes requests
  // still running at the end (a request the master lost in a restart waits
  // for its timeout, 30 s).
  const takeRow = () => {
    const m = current;
    m.fds = serverFds(server.pid!);
    m.rssMb = serverRssMb(server.pid!);
    m.p99Ms = p99(m.latencies);
    m.latencies = [];
    table.push(m);
    process.stderr.write(
      `${periodMs === 60_000 ? 'minute' : 'period'} ${table.length}: ${m.requests} requests, ${m.ok} ok, ${m.badInput} bad input, ${m.outage} outage, ${m.unexplained} unexplained, p99 ${m.p99Ms.toFixed(1)} ms, fds ${m.fds}, rss ${m.rssMb.toFixed(1)} MB\n`,
    );
    current = newMinute();
  };
  const minuteTimer = setInterval(() => {
    if (table.length < minutes - 1) takeRow();
  }, periodMs);

  await Promise.all(Array.from({ length: concurrency }, worker));
  running = false;
  clearInterval(minuteTimer);
  clearTimeout(restartTimer);
  clearInterval(restartInterval);
  takeRow();
  agent.destroy();

  server.kill('SIGTERM');
  const stopped = await serverExit;
  master.send({ type: 'exit' });
  await new Promise((r) => master.once('exit', r));

  // ---------------------------------------------------------------- report
  const rows = table.map((m, i) => [
    String(i + 1),
    String(m.requests),
    String(m.ok),
    String(m.badInput),
    String(m.outage),
    String(m.unexplained),
    m.p99Ms.toFixed(1),
    String(m.fds),
    m.rssMb.toFixed(1),
  ]);
  const totals = table.reduce((t, m) => {
    t.requests += m.requests;
    t.ok += m.ok;
    t.badInput += m.badInput;
    t.outage += m.outage;
    t.unexplained += m.unexplained;
    return t;
  }, newMinute());
  const header = ['minute', 'requests', 'ok', 'bad input (4xx)', 'restart 503/504', 'unexplained', 'p99 ms', 'server fds', 'server RSS MB'];
  const out: string[] = [];
  const unit = periodMs === 60_000 ? 'minute' : `period of ${periodMs / 1000} s`;
  out.push(`soak: ${minutes} × ${unit}, ${concurrency} workers, master restarted in the middle of each (down ${RESTART_DOWN_MS / 1000} s)`);
  out.push('');
  out.push(`| ${header.join(' | ')} |`);
  out.push(`|${header.map(() => '---').join('|')}|`);
  for (const row of rows) out.push(`| ${row.join(' | ')} |`);
  out.push(`| total | ${totals.requests} | ${totals.ok} | ${totals.badInput} | ${totals.outage} | ${totals.unexplained} | | | |`);
  out.push('');
  out.push(`Master restarts: ${table.reduce((n, m) => n + m.restarts, 0)}`);
  out.push('');
  out.push('Answers other than 200, by kind:');
  for (const [key, { count, explained }] of [...kinds].sort((a, b) => b[1].count - a[1].count)) {
    out.push(`  ${explained ? 'expected   ' : 'UNEXPLAINED'} ${String(count).padStart(7)}  ${key}`);
  }
  out.push('');
  out.push(`Server log (warn and error), by line: ${serverLog.size === 0 ? 'none' : ''}`);
  for (const [line, count] of [...serverLog].sort((a, b) => b[1] - a[1]).slice(0, 20)) out.push(`  ${String(count).padStart(7)}  ${line}`);
  out.push('');
  out.push(`Server stop: SIGTERM → ${stopped.signal ? `killed by ${stopped.signal}` : `exit ${stopped.code}`}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return totals.unexplained === 0 && serverErrors === 0 && stopped.code === 0 ? 0 : 1;
}

// ------------------------------------------------------------------ main

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    minutes: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
    // A shorter "minute", for trying the soak out quickly.
    'period-seconds': { type: 'string', default: '60' },
  },
  strict: true,
});

if (values.role === 'master') {
  await runMaster();
} else {
  const minutes = Number(values.minutes);
  const concurrency = Number(values.concurrency);
  const period = Number(values['period-seconds']);
  if (!(minutes > 0) || !Number.isInteger(concurrency) || concurrency < 1 || !(period >= 5)) {
    process.stderr.write('usage: npm run soak -- --minutes N [--concurrency C] [--period-seconds S]\n');
    process.exit(2);
  }
  process.exitCode = await runSoak(minutes, concurrency, period * 1000);
}
