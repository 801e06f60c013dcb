/**
 * The master going away: down when the server starts, restarted while
 * requests wait, and clients that leave mid-request. Real HTTP to the
 * handler, the master double over real ZeroMQ and its event bus socket;
 * the master is stopped and started on the same ports as a real restart.
 *
 * After each scenario nothing may be left behind: no request in flight, no
 * request waiting for the master, no bus subscription or bus watcher, and no
 * more live timers than before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { startMaster, type SaltMasterDouble, type MasterDoubleOptions } from './support/master.js';
import { createHandler, type RestWsgiHandler } from '../lib/http/handler.js';
import { everyClient } from './support/lowstates.js';
import { liveTimers, openHandles, recordingLogger, request, serve, sleep, until, type LogLine, type Reply } from './support/http.js';

const PASSWORD = 'outage-test-password';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const REQUEST_TIMEOUT_MS = 500;
const SERVICE_UNAVAILABLE = { return: 'Salt Master is not available.' };

interface Env {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  port: number;
  lines: LogLine[];
  post(body: unknown, signal?: AbortSignal): Promise<Reply>;
}

async function setup(t: { after(fn: () => unknown): void }, options: MasterDoubleOptions = {}): Promise<Env> {
  const master = await startMaster({ users: USERS, ...options });
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, masterTimeoutMs: REQUEST_TIMEOUT_MS });
  const server = await serve(handler);
  t.after(async () => {
    await server.close();
    handler.close();
    await master.close();
    for (const line of lines) assert.ok(!line.msg.includes(PASSWORD), `password in a log line: ${line.msg}`);
  });
  return {
    master,
    handler,
    port: server.port,
    lines,
    post: (body, signal) => request(server.port, { body, signal }),
  };
}

/** Nothing held: no request in flight, none waiting for the master, no subscription or watcher on the bus. */
async function assertNothingHeld(handler: RestWsgiHandler, before: Baseline): Promise<void> {
  await until(
    () => {
      const s = handler.stats();
      return s.inFlight === 0 && s.pendingRequests === 0 && s.busSubscriptions === 0 && s.busWatchers === 0;
    },
    2000,
    'nothing held',
  );
  await until(() => liveTimers() <= before.timers, 2000, `live timers back to ${before.timers} (now ${liveTimers()})`);
  await until(
    () => openHandles() <= before.handles,
    2000,
    `open handles back to ${before.handles} (now ${process.getActiveResourcesInfo().join(', ')})`,
  );
}

interface Baseline {
  timers: number;
  handles: number;
}

/** Timers and handles open now (the master double's and ours, idle). */
function baseline(): Baseline {
  return { timers: liveTimers(), handles: openHandles() };
}

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await work;
  return { value, ms: performance.now() - start };
}

test('master down at start: 503 at once for every client; the next requests after it starts succeed, no server restart', async (t) => {
  const env = await setup(t);
  assert.equal((await env.post([everyClient(CRED)[0][1]])).status, 200);
  const timersBefore = baseline(); // with the master up: it will be again at the end
  await env.master.stop();
  await sleep(1100); // past the second a "running" answer is reused

  for (const [client, low] of everyClient(CRED)) {
    const { value: reply, ms } = await timed(env.post([low]));
    assert.equal(reply.status, 503, `${client}: ${reply.text}`);
    assert.deepEqual(reply.json, SERVICE_UNAVAILABLE);
    assert.ok(ms < REQUEST_TIMEOUT_MS, `${client} took ${ms} ms`);
  }

  await env.master.start();
  // No pause: the request channel and the event bus reconnect by themselves, and requests wait for them.
  for (const [client, low] of everyClient(CRED)) {
    const reply = await env.post([low]);
    assert.equal(reply.status, 200, `${client}: ${reply.text}`);
  }
  await assertNothingHeld(env.handler, timersBefore);
});

test('master dead but its socket files left behind: 503 within the request timeout, never a hang', async (t) => {
  const env = await setup(t);
  await env.master.stop();
  // A crashed master leaves workers.ipc: the server believes it runs, and nothing answers.
  await writeFile(env.master.workersIpcPath, '');
  const timersBefore = baseline();

  const replies = await Promise.all(everyClient(CRED).map(([, low]) => timed(env.post([low]))));
  for (const [i, { value: reply, ms }] of replies.entries()) {
    const client = everyClient(CRED)[i][0];
    assert.equal(reply.status, 503, `${client}: ${reply.text}`);
    assert.deepEqual(reply.json, SERVICE_UNAVAILABLE);
    // Sync clients first wait for the bus (at most the request timeout), then nothing more is sent.
    assert.ok(ms < REQUEST_TIMEOUT_MS + 700, `${client} took ${ms} ms`);
  }
  await assertNothingHeld(env.handler, timersBefore);

  await rm(env.master.workersIpcPath);
  await env.master.start();
  const reply = await env.post([everyClient(CRED)[0][1]]);
  assert.equal(reply.status, 200, reply.text);
});

test('master restarted while requests wait: 504 or 503 with a clear message within their timeout; bus and channel recover; nothing left behind', async (t) => {
  const env = await setup(t, { minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: 10_000 }] });
  const { master, handler } = env;
  // One request first, so that lazily made things exist before counting timers.
  assert.equal((await env.post([{ ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' }])).status, 200);
  const timersBefore = baseline();

  // A sync local job waiting for a minion, a sync runner job waiting for its
  // end, and a wheel call waiting for the master's reply.
  const published = master.nextRequest('publish');
  const local = timed(env.post([{ ...CRED, client: 'local', tgt: 'slow1', fun: 'test.ping', timeout: 30 }]));
  await published;
  const started = master.nextRequest('runner');
  const runner = timed(env.post([{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600 }])); // 30 s on the double
  await started;
  await until(() => handler.stats().busSubscriptions >= 2, 2000, 'the sync waits started');
  master.answerRequests = false;
  const asked = master.nextRequest('wheel');
  const wheel = timed(env.post([{ ...CRED, client: 'wheel', fun: 'key.list_all' }]));
  await asked;
  await until(() => handler.stats().pendingRequests >= 1, 2000, 'the wheel call sent');

  await master.stop();
  master.answerRequests = true;

  const [l, r, w] = await Promise.all([local, runner, wheel]);
  assert.equal(l.value.status, 504, l.value.text);
  assert.match(
    (l.value.json as { return: string }).return,
    /^Lost the connection to the master's event bus while waiting for the returns of job \d{20}; it may still be running on the master\.$/,
  );
  assert.equal(r.value.status, 504, r.value.text);
  assert.match(
    (r.value.json as { return: string }).return,
    /^Lost the connection to the master's event bus while waiting for job \d{20}; it may still be running on the master\.$/,
  );
  // The waits end when the bus drops, not at their own (30 s) timeouts.
  assert.ok(l.ms < 2000 && r.ms < 2000, `local ${l.ms} ms, runner ${r.ms} ms`);
  // The master never answered the wheel call: 503 at the request timeout.
  assert.equal(w.value.status, 503, w.value.text);
  assert.deepEqual(w.value.json, SERVICE_UNAVAILABLE);
  assert.ok(w.ms < REQUEST_TIMEOUT_MS + 300, `wheel took ${w.ms} ms`);

  await assertNothingHeld(handler, timersBefore);

  // Back on the same ports: every client works again, with no restart of ours.
  await master.start();
  for (const [client, low] of everyClient(CRED)) {
    const reply = await env.post([low]);
    assert.equal(reply.status, 200, `${client}: ${reply.text}`);
  }
  assert.equal(master.busClientCount, 1, 'one bus connection, reconnected');
  await assertNothingHeld(handler, timersBefore);
});

test('restarts in a row under load: every request ends (200, 503 or 504) and nothing is left behind', async (t) => {
  const env = await setup(t, { minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: 150 }] });
  const { master, handler } = env;
  assert.equal((await env.post([{ ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' }])).status, 200);
  const timersBefore = baseline();

  const statuses = new Map<number, number>();
  let stop = false;
  const worker = async (i: number) => {
    const clients = everyClient(CRED, i % 2 ? 'slow1' : 'minion1');
    for (let n = 0; !stop; n++) {
      const reply = await env.post([clients[(i + n) % clients.length][1]]);
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      if (reply.status === 503 || reply.status === 504) assert.equal(typeof (reply.json as { return: unknown }).return, 'string');
    }
  };
  const workers = Array.from({ length: 8 }, (_, i) => worker(i));
  for (let round = 0; round < 3; round++) {
    await sleep(150);
    await master.stop();
    await sleep(100);
    await master.start();
  }
  await sleep(300);
  stop = true;
  await Promise.all(workers);
  assert.deepEqual(
    [...statuses.keys()].filter((s) => ![200, 503, 504].includes(s)),
    [],
    JSON.stringify([...statuses]),
  );
  assert.ok((statuses.get(200) ?? 0) > 0);
  await assertNothingHeld(handler, timersBefore);
  // And the server serves on.
  assert.equal((await env.post([everyClient(CRED)[0][1]])).status, 200);
});

/** The jid the master gave the next published job. */
function nextJid(master: SaltMasterDouble): Promise<string> {
  return new Promise((resolve) => {
    const on = (record: { cmd: string; reply?: unknown }) => {
      if (record.cmd !== 'publish') return;
      master.off('request', on);
      // The reply is set once the master handled it.
      const look = () => {
        const load = (record.reply as { load?: { jid?: string } } | undefined)?.load;
        if (load?.jid) resolve(load.jid);
        else setTimeout(look, 2);
      };
      look();
    };
    master.on('request', on);
  });
}

test('a client that leaves mid-request: its waits and timers go at once, one log line names the job, which runs on', async (t) => {
  const env = await setup(t, { minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: 400 }] });
  const { master, handler, lines } = env;
  assert.equal((await env.post([{ ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' }])).status, 200);
  const timersBefore = baseline();

  const jid = nextJid(master);
  const client = new AbortController();
  const gone = env.post([{ ...CRED, client: 'local', tgt: 'slow1', fun: 'test.ping' }], client.signal).catch((err: Error) => err);
  const job = await jid;
  await until(() => handler.stats().busSubscriptions >= 1, 2000, 'the wait started');
  client.abort();
  assert.ok((await gone) instanceof Error);

  // At once: well before the minion's 400 ms.
  const start = performance.now();
  await until(
    () => {
      const s = handler.stats();
      return s.inFlight === 0 && s.busSubscriptions === 0 && s.busWatchers === 0 && s.pendingRequests === 0;
    },
    1000,
    'released',
  );
  assert.ok(performance.now() - start < 200, `released after ${performance.now() - start} ms`);
  // Each line ends with its request's id (lib/http/request-id.ts).
  const about = lines.filter((l) => l.msg.includes(job)).map((l) => ({ ...l, msg: l.msg.replace(/ request_id=[\w.-]+$/, '') }));
  assert.deepEqual(about, [
    { level: 'info', msg: `stopped waiting for job ${job}: the request went away; the job keeps running on the master` },
  ]);

  // The job itself runs to its end on the master.
  await until(() => master.jobs.get(job)?.returns.has('slow1') === true, 3000, 'the job finished on the master');
  await assertNothingHeld(handler, timersBefore);
  assert.equal(lines.filter((l) => l.msg.includes(job)).length, 1);
});

test('a client that leaves while its job is being published: one log line with the jid once the master answers', async (t) => {
  const env = await setup(t, { minions: [{ id: 'minion1' }] });
  const { master, handler, lines } = env;
  const timersBefore = baseline();
  master.replyDelayMs = 200;
  const jid = nextJid(master);
  const client = new AbortController();
  const gone = env.post([{ ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' }], client.signal).catch((err: Error) => err);
  await master.nextRequest('publish');
  client.abort();
  assert.ok((await gone) instanceof Error);
  const job = await jid;
  await until(() => lines.some((l) => l.msg.includes(job)), 2000, 'the log line');
  assert.deepEqual(
    lines.filter((l) => l.msg.includes(job)).map((l) => l.msg.replace(/ request_id=[\w.-]+$/, '')),
    [`stopped waiting for job ${job}: the request went away; the job keeps running on the master`],
  );
  master.replyDelayMs = 0;
  await assertNothingHeld(handler, timersBefore);
});

test('a runner request that leaves: released at once, one line with the jid, the runner job finishes on the master', async (t) => {
  const env = await setup(t);
  const { master, handler, lines } = env;
  const timersBefore = baseline();
  const started = master.nextRequest('runner');
  const client = new AbortController();
  const gone = env.post([{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 6 }], client.signal).catch((err: Error) => err); // 300 ms
  const record = await started;
  await until(() => handler.stats().busSubscriptions >= 1, 2000, 'the wait started');
  client.abort();
  await gone;
  await until(() => handler.stats().inFlight === 0 && handler.stats().busSubscriptions === 0, 200, 'released');
  const jid = (record.reply as { jid: string }).jid;
  assert.deepEqual(
    lines.filter((l) => l.msg.includes(jid)).map((l) => l.msg.replace(/ request_id=[\w.-]+$/, '')),
    [`stopped waiting for job ${jid}: the request went away; the job keeps running on the master`],
  );
  await until(() => master.events.some((e) => e.tag === `salt/run/${jid}/ret`), 3000, 'the runner job ended on the master');
  await assertNothingHeld(handler, timersBefore);
});
