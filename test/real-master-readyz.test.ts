/**
 * /readyz (lib/http/metrics.ts, README "Metrics, /healthz, /readyz") as a
 * real Salt master stops and starts again: the command with a metrics port
 * in front of the master of env SALT_REAL_MASTER_CONFIG (one set up by
 * saltenv.sh); its salt-master stopped through its pidfile
 * (<root_dir>/pids/master.pid, saltenv.sh's: the daemon leads its own
 * process group, so the group is signalled), minion1 too (so that it is
 * launched afresh: its reconnecting is Salt's business), then started again by the
 * command in env SALT_REAL_MASTER_START (.ci/real-masters passes saltenv.sh
 * start with that master's environment: it launches only what is not
 * running and waits until minion1 answers). /readyz turns 503 within 2 s of
 * the master being gone, in the words of the API's 503 answers, and 200
 * within 2 s of its ret port listening again and its event socket being
 * there; /healthz is 200 throughout; a `local` test.ping works afterwards.
 * test/operations.test.ts holds the same on the master double.
 *
 * It stops the master: .ci/real-masters runs it last for each master, alone.
 * Without both variables it skips, saying why (SALT_REAL_REQUIRED=1: it fails).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadMasterConfig, type MasterOptions } from '../lib/salt/config.js';
import { startCommand } from './support/command.js';
import { request, sleep } from './support/http.js';
import { wallNow } from './support/ndjson.js';
import { SALTDEV } from './support/real-master.js';

const CONFIG = process.env.SALT_REAL_MASTER_CONFIG || undefined;
const START = process.env.SALT_REAL_MASTER_START || undefined;
const MISSING = !CONFIG
  ? 'SALT_REAL_MASTER_CONFIG is not set: no real Salt master (.ci/real-masters starts them)'
  : !START
    ? "SALT_REAL_MASTER_START is not set: no command to start the master again (.ci/real-masters passes saltenv.sh start), so it isn't stopped"
    : undefined;
const REQUIRED = process.env.SALT_REAL_REQUIRED === '1';
/** The event bus's socket in sock_dir (salt/utils/event.py: master_event_pub.ipc). */
const EVENT_SOCKET = 'master_event_pub.ipc';
const READY_MS = 2000;

/** What the poller saw of /readyz: each change of status, when, with its text. */
interface Change {
  at: number;
  status: number;
  text: string;
}

/** Polls /readyz and /healthz every 50 ms until stopped: /readyz's changes, /healthz's statuses other than 200. */
function watchProbes(port: number) {
  const changes: Change[] = [];
  const unhealthy: string[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const ready = await request(port, { method: 'GET', path: '/readyz' });
      if (changes.at(-1)?.status !== ready.status) changes.push({ at: wallNow(), status: ready.status, text: ready.text });
      const health = await request(port, { method: 'GET', path: '/healthz' });
      if (health.status !== 200) unhealthy.push(`${health.status} ${health.text}`);
      await sleep(50);
    }
  })();
  return {
    changes,
    unhealthy,
    /** The first change to `status` at or after `since`. */
    async first(status: number, since: number, ms: number): Promise<Change> {
      const end = wallNow() + ms;
      for (;;) {
        const found = changes.find((c) => c.status === status && c.at >= since);
        if (found) return found;
        assert.ok(wallNow() < end, `/readyz not ${status} within ${ms} ms: ${JSON.stringify(changes)}`);
        await sleep(20);
      }
    },
    async stop(): Promise<void> {
      running = false;
      await done;
    },
  };
}

/** Something listens on the master's ret port (ss, as saltenv.sh checks it). */
function listening(opts: MasterOptions): boolean {
  const ss = spawnSync('ss', ['-ltnH', `sport = :${opts.ret_port}`], { encoding: 'utf8' });
  return ss.status === 0 && ss.stdout.trim() !== '';
}

/** The event socket, made at or after `since` (wall ms): the one a master that started since made. */
function eventSocketSince(opts: MasterOptions, since: number): boolean {
  const st = statSync(join(String(opts.sock_dir), EVENT_SOCKET), { throwIfNoEntry: false });
  return st !== undefined && st.ctimeMs >= since - 1000;
}

async function until(what: string, check: () => boolean, ms: number): Promise<number> {
  const end = wallNow() + ms;
  while (!check()) {
    assert.ok(wallNow() < end, `${what}: not within ${ms} ms`);
    await sleep(25);
  }
  return wallNow();
}

const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Stop a daemon saltenv.sh started (`master`, `minion1`: its pidfile under
 * <root_dir>/pids names the leader of its process group, setsid's) and
 * wait until the whole group is gone. Resolves with when it was signalled.
 */
async function stopDaemon(opts: MasterOptions, name: string, script: RegExp): Promise<number> {
  const pidfile = join(opts.root_dir, 'pids', `${name}.pid`);
  assert.ok(existsSync(pidfile), `no ${pidfile}: not a master saltenv.sh started`);
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  assert.match(cmdline, script, `pid ${pid} of ${pidfile} is not ${name}: ${cmdline}`);
  const signalled = wallNow();
  process.kill(-pid, 'SIGTERM');
  const end = signalled + 30_000;
  while (groupAlive(pid) && wallNow() < end) await sleep(50);
  if (groupAlive(pid)) process.kill(-pid, 'SIGKILL');
  await until(`the process group of ${name} gone`, () => !groupAlive(pid), 10_000);
  return signalled;
}

/** How long the start command may take (saltenv.sh waits minutes for a minion that doesn't come). */
const START_MS = 150_000;

/** Run the start command to its end (killed after START_MS); resolves with its exit code and output. */
function runStart(command: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const timer = setTimeout(() => {
      output += `\n(killed after ${START_MS} ms)`;
      process.kill(-child.pid!, 'SIGTERM');
    }, START_MS);
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test('SALT_REAL_MASTER_CONFIG and SALT_REAL_MASTER_START are given when SALT_REAL_REQUIRED=1', { skip: !REQUIRED }, () => {
  assert.equal(MISSING, undefined, MISSING);
});

test("/readyz on a real master: 503 within 2 s of it stopping, in the 503 answers' words; 200 within 2 s of it listening again; /healthz 200 throughout", {
  skip: MISSING,
  timeout: 300_000,
}, async (t) => {
  const opts = loadMasterConfig(String(CONFIG));
  const run = await startCommand(t, ['-c', String(CONFIG), '--port', '0', '--metrics-port', '0']);
  const [, metricsPort] = await run.waitFor(/serving metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  const probes = watchProbes(Number(metricsPort));
  let stopped = false;
  let started = false;
  t.after(async () => {
    await probes.stop();
    // A failure between the two: the master is started again for whoever comes next.
    if (stopped && !started) await runStart(String(START));
  });
  // A server just started may answer 503 until its first connection to the master: from its first 200 on is what is checked.
  const first = await probes.first(200, 0, 10_000);

  const signalled = await stopDaemon(opts, 'master', /salt-master/);
  stopped = true;
  const gone = await until('the ret port closed', () => !listening(opts), 10_000);
  // Salt's master leaves its sockets behind when stopped so: the connections, not the files, tell.
  const left = readdirSync(String(opts.sock_dir)).filter((f) => f.endsWith('.ipc'));
  const down = await probes.first(503, signalled, gone - wallNow() + READY_MS);
  assert.equal(down.text, 'Salt Master is not available.\n');
  // The API's 503 says the same.
  const answer = await request(run.port, { body: [{ client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV }] });
  assert.deepEqual([answer.status, answer.json], [503, { return: down.text.trim() }]);
  assert.equal(probes.changes.at(-1)?.status, 503, 'still 503 while the master is down');

  // minion1 too, so that the start command launches it afresh: how a minion reconnects to a
  // master that came back differs by transport (3007.1's tcp minion did not, in 20 minutes), and
  // is Salt's business, not what is checked here.
  await stopDaemon(opts, 'minion1', /salt-minion/);
  const launched = wallNow();
  const starting = runStart(String(START));
  const up = await until(
    "the master's ret port listening and its event socket made",
    () => listening(opts) && eventSocketSince(opts, launched),
    120_000,
  );
  const ready = await probes.first(200, launched, up - wallNow() + READY_MS);
  assert.equal(ready.text, 'ready\n');
  const start = await starting;
  const startDone = wallNow();
  started = start.code === 0;
  assert.equal(start.code, 0, `the start command failed:\n${start.output}`);
  const ping = await request(run.port, { body: [{ client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV }] });
  assert.equal(ping.text, '{"return":[{"minion1":true}]}');
  await probes.stop();
  assert.deepEqual(probes.unhealthy, [], '/healthz was not 200 throughout');
  assert.deepEqual(
    probes.changes.filter((c) => c.at >= first.at).map((c) => c.status),
    [200, 503, 200],
  );
  t.diagnostic(
    `after SIGTERM: /readyz 503 at ${ms(down.at - signalled)}, the master gone (ret port closed) at ${ms(gone - signalled)}, its sockets left behind: ${left.join(', ') || 'none'}; ` +
      `after the start command: ret port and event socket at ${ms(up - launched)}, /readyz 200 at ${ms(ready.at - launched)} ` +
      `(${ms(ready.at - up)} from there), the command done (minion1 answering) at ${ms(startDone - launched)}`,
  );
});

const ms = (x: number): string => `${(x / 1000).toFixed(2)} s`;
