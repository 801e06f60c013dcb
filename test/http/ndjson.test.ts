/**
 * The streamed answer (lib/http/ndjson.ts, README: Streamed answers):
 * real HTTP to createHandler() in front of the master double. The contract:
 * the lines of a request, folded (test/support/ndjson.ts), equal the JSON
 * answer of the same request, for every client; and each minion's line
 * goes out when its return comes, not at the item's end.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http, { type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { createHandler, type HandlerOptions, type RestWsgiHandler } from '../../lib/http/handler.js';
import { minionLine, wantsNdjson } from '../../lib/http/ndjson.js';
import { RawJson, toJson } from '../../lib/json.js';
import { liveTimers, recordingLogger, request, until, type LogLine } from '../support/http.js';
import { fold, pausedPost, streamPost, wallNow, type Streamed } from '../support/ndjson.js';
import type { AuditRecord } from '../../lib/http/audit.js';
import type { AccessRecord } from '../../lib/log.js';

const PASSWORD = 'hunter2-not-in-logs';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const SLOW_MS = 400;

interface Setup {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  port: number;
  lines: LogLine[];
  close(): Promise<void>;
}

async function setup(handlerOptions: Partial<HandlerOptions> = {}): Promise<Setup> {
  const master = await startMaster({
    users: USERS,
    minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: SLOW_MS }, { id: 'ghost1', silent: true }],
    config: { timeout: 1, gather_job_timeout: 1 },
  });
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, masterTimeoutMs: 2000, ...handlerOptions });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    master,
    handler,
    port: (server.address() as AddressInfo).port,
    lines,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      handler.close();
      await master.close();
      for (const line of lines) assert.ok(!line.msg.includes(PASSWORD), `password in a log line: ${line.msg}`);
    },
  };
}

/** Job ids and Salt's time stamps differ between two runs of a request. */
function normalized(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value)
      .replace(/\b\d{20}\b/g, '<jid>')
      .replace(/"_stamp":"[^"]+"/g, '"_stamp":"<stamp>"'),
  );
}

/** The request both ways: folded lines equal the JSON answer, status and body. */
async function assertFoldsToJson(s: Setup, lowstates: Array<Record<string, unknown>>): Promise<Streamed> {
  const json = await request(s.port, { body: lowstates });
  const streamed = await streamPost(s.port, { body: lowstates });
  const folded = fold(streamed, lowstates);
  assert.equal(folded.status, json.status, `${streamed.text}\nvs\n${json.text}`);
  assert.deepEqual(normalized(folded.body), normalized(json.json), `${streamed.text}\nvs\n${json.text}`);
  if (streamed.status === 200) assert.equal(streamed.headers['content-type'], 'application/x-ndjson');
  else assert.equal(streamed.headers['content-type'], 'application/json');
  return streamed;
}

test('wantsNdjson: application/x-ndjson named, not outweighed by application/json; wildcards are JSON', () => {
  for (const yes of [
    'application/x-ndjson',
    'Application/X-NDJSON',
    'application/x-ndjson; q=0.9',
    'application/json;q=0.5, application/x-ndjson',
    'text/plain, application/x-ndjson;q=1',
  ]) {
    assert.equal(wantsNdjson(yes), true, yes);
  }
  for (const no of [
    undefined,
    '',
    '*/*',
    'application/json',
    'application/*',
    'application/x-ndjson;q=0',
    'application/json, application/x-ndjson;q=0.5',
    'application/x-ndjsonx',
  ]) {
    assert.equal(wantsNdjson(no), false, String(no));
  }
});

describe('streamed answers against the master double', () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(() => s.close());

  const targets = ['minion1', 'slow1', 'ghost1'];
  const cases: Array<[string, Array<Record<string, unknown>>]> = [
    ['local (a silent minion: false)', [{ ...CRED, client: 'local', tgt: targets, tgt_type: 'list', fun: 'test.ping' }]],
    ['local, full_return', [{ ...CRED, client: 'local', tgt: 'minion1', fun: 'test.arg', arg: [1], full_return: true }]],
    ['local, nothing matched', [{ ...CRED, client: 'local', tgt: 'nobody*', fun: 'test.ping' }]],
    ['local_async', [{ ...CRED, client: 'local_async', tgt: '*', fun: 'test.ping' }]],
    ['local_subset', [{ ...CRED, client: 'local_subset', tgt: ['minion1', 'ghost1'], tgt_type: 'list', fun: 'test.ping', subset: 2 }]],
    ['local_batch', [{ ...CRED, client: 'local_batch', tgt: targets, tgt_type: 'list', fun: 'test.ping', batch: '1' }]],
    ['local_batch, raw', [{ ...CRED, client: 'local_batch', tgt: ['minion1'], tgt_type: 'list', fun: 'test.ping', raw: true }]],
    ['runner', [{ ...CRED, client: 'runner', fun: 'test.arg', arg: [1, 2], kwarg: { a: 1 } }]],
    ['runner_async', [{ ...CRED, client: 'runner_async', fun: 'test.arg', arg: [1] }]],
    ['wheel', [{ ...CRED, client: 'wheel', fun: 'key.list_all' }]],
    ['wheel_async', [{ ...CRED, client: 'wheel_async', fun: 'key.list_all' }]],
    [
      'several items, every kind',
      [
        { ...CRED, client: 'runner', fun: 'test.arg', arg: ['first'] },
        { ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' },
        { ...CRED, client: 'local_batch', tgt: 'minion1', fun: 'test.ping' },
      ],
    ],
    [
      'refused before running (bad credentials): its usual status and body',
      [{ ...CRED, password: 'wrong', client: 'local', tgt: '*', fun: 'test.ping' }],
    ],
    ['refused before running (no fun)', [{ ...CRED, client: 'local', tgt: '*' }]],
    [
      'an item failing once lines went out: its error line',
      [
        { ...CRED, client: 'local', tgt: 'minion1', fun: 'test.ping' },
        { ...CRED, password: 'wrong', client: 'runner', fun: 'test.arg' },
        { ...CRED, client: 'runner', fun: 'test.arg', arg: ['never'] },
      ],
    ],
  ];
  for (const [name, lowstates] of cases) {
    test(`folded, the lines are the JSON answer: ${name}`, async () => {
      const streamed = await assertFoldsToJson(s, lowstates);
      if (name.includes('error line')) {
        assert.equal(streamed.status, 200);
        assert.deepEqual(streamed.lines.at(-1)!.value, {
          item: 1,
          error: true,
          status: 401,
          code: 'SRW_ERR_AUTHENTICATION',
          return: 'Authentication failure of type "eauth" occurred for user saltdev.',
        });
      }
    });
  }

  test('the lines of local: a return each as it comes, then the silent minion, then the end', async () => {
    const low = { ...CRED, client: 'local', tgt: targets, tgt_type: 'list', fun: 'test.ping' };
    const t0 = wallNow();
    const streamed = await streamPost(s.port, { body: [low] });
    const values = streamed.lines.map((l) => l.value);
    assert.deepEqual(values.slice(0, 3), [
      { item: 0, minion: 'minion1', return: true },
      { item: 0, minion: 'slow1', return: true },
      { item: 0, minion: 'ghost1', return: false },
    ]);
    assert.equal(values.length, 4);
    const end = values[3];
    assert.match(String(end.jid), /^\d{20}$/);
    assert.deepEqual({ ...end, jid: 'j' }, { item: 0, done: true, jid: 'j', returned: 2, missing: 1 });
    // minion1 at once, slow1 when it returns, ghost1 only after timeout + gather_job_timeout (2 s).
    const [first, slow, ghost] = streamed.lines.map((l) => l.at - t0);
    assert.ok(first < SLOW_MS, `minion1's line after ${first.toFixed(0)} ms`);
    assert.ok(slow >= SLOW_MS - 50 && slow < 1500, `slow1's line after ${slow.toFixed(0)} ms`);
    assert.ok(ghost >= 1900, `ghost1's line after ${ghost.toFixed(0)} ms`);
  });

  test('the end line of local_batch names its sub-jobs', async () => {
    const low = { ...CRED, client: 'local_batch', tgt: ['minion1', 'slow1'], tgt_type: 'list', fun: 'test.ping', batch: '1' };
    const streamed = await streamPost(s.port, { body: [low] });
    const end = streamed.lines.at(-1)!.value;
    assert.equal(end.done, true);
    assert.equal(end.returned, 2);
    assert.equal(end.missing, 0);
    assert.equal((end.jids as string[]).length, 2);
  });

  test('the client going away ends the wait at once; nothing is held for it', async () => {
    const timers = liveTimers();
    const low = { ...CRED, client: 'local', tgt: ['minion1', 'ghost1'], tgt_type: 'list', fun: 'test.ping' };
    const t0 = performance.now();
    const streamed = await streamPost(s.port, { body: [low], onLine: () => true });
    assert.deepEqual(streamed.lines[0].value, { item: 0, minion: 'minion1', return: true });
    await until(() => s.handler.stats().inFlight === 0, 1000, 'the request ends');
    assert.ok(performance.now() - t0 < 1000, 'well before ghost1 would have been given up on');
    const stats = s.handler.stats();
    assert.equal(stats.busSubscriptions, 0);
    assert.equal(stats.busWatchers, 0);
    assert.equal(stats.pendingRequests, 0);
    await until(() => liveTimers() <= timers, 1000, 'no timer left');
    assert.ok(s.lines.some((l) => /stopped waiting for job \d+: the request went away/.test(l.msg)));
  });
});

test('a heartbeat line while nothing comes, passed over by the fold', async () => {
  const s = await setup({ ndjsonHeartbeatMs: 200 });
  try {
    const low = [{ ...CRED, client: 'local', tgt: ['minion1', 'ghost1'], tgt_type: 'list', fun: 'test.ping' }];
    const streamed = await assertFoldsToJson(s, low);
    const beats = streamed.lines.filter((l) => l.value.heartbeat === true);
    // ghost1's 2 s of silence after minion1's line: a beat every 200 ms.
    assert.ok(beats.length >= 5, `${beats.length} heartbeats`);
    for (const beat of beats) assert.deepEqual(beat.value, { heartbeat: true });
    const gaps = streamed.lines.slice(1).map((l, i) => l.at - streamed.lines[i].at);
    assert.ok(Math.max(...gaps) < 600, `the longest gap between lines: ${Math.max(...gaps).toFixed(0)} ms`);
  } finally {
    await s.close();
  }
});

test('the lines of one read of the bus go out as one write, not a write each', async () => {
  const ids = Array.from({ length: 300 }, (_, i) => `fleet-${String(i).padStart(3, '0')}`);
  const master = await startMaster({ users: USERS, minions: ids.map((id) => ({ id })) });
  const handler = createHandler({ config: master.configPath, masterTimeoutMs: 2000 });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const reader = await pausedPost((server.address() as AddressInfo).port, [
      { ...CRED, client: 'local', tgt: 'fleet-*', fun: 'test.ping' },
    ]);
    const { status, headers, lines: got, chunks } = await reader.resume();
    assert.equal(status, 200);
    assert.equal(headers['transfer-encoding'], 'chunked');
    const lines = got.map((l) => l.value);
    const minions = lines.filter((l) => 'minion' in l);
    assert.deepEqual(minions.map((l) => l.minion).sort(), ids);
    assert.ok(minions.every((l) => l.return === true));
    assert.equal(lines.at(-1)?.done, true);
    // The double's 300 returns come in a few reads of the bus: a write per read, not per line.
    const withMinions = chunks.filter((c) => c.includes('"minion"')).length;
    assert.ok(withMinions <= 30, `${withMinions} writes for ${minions.length} minion lines`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    handler.close();
    await master.close();
  }
});

/**
 * A reader that falls behind (README: Streamed answers): a fleet whose
 * returns are far more than the cap and the kernel's socket buffers
 * (Linux's loopback send buffer grows to tcp_wmem's 4 MiB) together.
 */
describe('a slow reader: what waits unsent is capped and timed', () => {
  const FLEET = 160;
  const RETURN_CHARS = 128 * 1024; // 20 MiB of lines in all
  const CAP = 1024 * 1024;
  const BIG = 'x'.repeat(RETURN_CHARS);
  const fleet = Array.from({ length: FLEET }, (_, i) => `big${String(i).padStart(3, '0')}`);
  const low = { ...CRED, client: 'local', tgt: 'big*', fun: 'test.echo', arg: [BIG] };
  let master: SaltMasterDouble;

  before(async () => {
    master = await startMaster({
      users: USERS,
      minions: [...fleet.map((id) => ({ id })), { id: 'late1', delayMs: 3000 }],
      config: { timeout: 5, gather_job_timeout: 1 },
    });
  });
  after(() => master.close());

  interface Served {
    handler: RestWsgiHandler;
    port: number;
    lines: LogLine[];
    audit: AuditRecord[];
    access: AccessRecord[];
    /** The responses of the requests, server side. */
    responses: ServerResponse[];
    close(): Promise<void>;
  }

  async function serveWith(options: Partial<HandlerOptions>): Promise<Served> {
    const { logger, lines } = recordingLogger();
    const audit: AuditRecord[] = [];
    const access: AccessRecord[] = [];
    const handler = createHandler({
      config: master.configPath,
      logger,
      auditLog: (r) => audit.push(r),
      accessLog: (r) => access.push(r),
      ...options,
    });
    const responses: ServerResponse[] = [];
    const server = http.createServer((req, res) => {
      responses.push(res);
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      handler,
      port: (server.address() as AddressInfo).port,
      lines,
      audit,
      access,
      responses,
      async close() {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        handler.close();
      },
    };
  }

  /** What the server holds for its answers: the queued lines, and what each response and its socket hold. */
  function held(s: Served): number {
    return s.handler.stats().unsentBytes + s.responses.reduce((sum, res) => sum + res.writableLength, 0);
  }

  async function cutCount(s: Served, reason: string): Promise<number> {
    const metric = await s.handler.metrics.getSingleMetric('salt_rest_wsgi_ndjson_answers_cut_total')!.get();
    return metric.values.find((v) => v.labels.reason === reason)?.value ?? 0;
  }

  /** Nothing is held for the request once it ended: no bytes, no wait on the bus. */
  function assertNothingHeld(s: Served): void {
    const stats = s.handler.stats();
    assert.equal(stats.inFlight, 0);
    assert.equal(stats.unsentBytes, 0);
    assert.equal(stats.busSubscriptions, 0);
    assert.equal(stats.busWatchers, 0);
    assert.equal(stats.pendingRequests, 0);
  }

  test('a reader that stops: what is held stays under the cap, a 507 line ends the answer, the job runs on', async (t) => {
    const s = await serveWith({ ndjsonMaxUnsentBytes: CAP, sendTimeoutMs: 30_000 });
    t.after(() => s.close());
    const reader = await pausedPost(s.port, [low]);
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, held(s))), 2);
    await until(() => s.lines.some((l) => l.msg.startsWith('The reader fell behind')), 10_000, 'the cut');
    // The answer ended on the server's side while its reader still reads nothing.
    await until(() => s.handler.stats().inFlight === 0, 5000, 'the request ends');
    clearInterval(sampler);
    assertNothingHeld(s);
    // At most the cap, one line past it, and the piece the socket holds.
    const bound = CAP + 2 * (RETURN_CHARS + 1024) + 64 * 1024;
    t.diagnostic(`held at most ${most} bytes (bound ${bound}); the reader took ${reader.received()} bytes before it stopped`);
    assert.ok(most <= bound, `held ${most} bytes`);
    assert.ok(s.responses[0].writableLength <= 128 * 1024 + RETURN_CHARS, `the response holds ${s.responses[0].writableLength}`);

    const streamed = await reader.resume();
    assert.equal(streamed.status, 200);
    assert.ok(streamed.complete, 'the answer ended (its last chunk came)');
    const last = streamed.lines.at(-1)!.value;
    const jid = String(last.jid);
    assert.match(jid, /^\d{20}$/);
    assert.deepEqual(Object.keys(last), ['item', 'error', 'status', 'code', 'jid', 'return']);
    assert.equal(last.status, 507);
    assert.equal(last.code, 'SRW_ERR_READER_TOO_SLOW');
    assert.match(
      String(last.return),
      /^The reader fell behind: \d+ bytes of this streamed answer were waiting unsent \(ndjson_max_unsent_bytes: 1048576\)/,
    );
    assert.ok(String(last.return).includes(`"fun": "jobs.lookup_jid", "jid": "${jid}"`), String(last.return));
    // Folded, the lines are the error; what was sent before it, minion lines of the fleet, each once, no end line.
    assert.deepEqual(fold(streamed, [low]), { status: 507, body: { return: last.return } });
    const sent = streamed.lines.slice(0, -1).map((l) => l.value);
    assert.ok(sent.length > 0 && sent.length < FLEET, `${sent.length} minion lines sent`);
    for (const line of sent) assert.deepEqual(Object.keys(line), ['item', 'minion', 'return']);
    assert.ok(sent.every((line) => line.return === BIG));
    assert.equal(new Set(sent.map((line) => line.minion)).size, sent.length);
    t.diagnostic(`${sent.length} of ${FLEET} minion lines sent before the cut`);

    // Nothing is lost: the job ran on, its returns all in the job cache.
    const looked = await request(s.port, { body: [{ ...CRED, client: 'runner', fun: 'jobs.lookup_jid', jid }] });
    assert.equal(looked.status, 200);
    assert.equal(Object.keys((looked.json as { return: [Record<string, unknown>] }).return[0]).length, FLEET);
    assert.equal(await cutCount(s, 'reader_behind'), 1);
    assert.equal(await cutCount(s, 'send_timeout'), 0);
    assert.deepEqual(
      s.audit.map((r) => [r.client, r.status]),
      [
        ['local', 507],
        ['runner', 200],
      ],
    );
    assert.equal(s.audit[0].jid, jid);
    await until(() => s.access.length === 2, 1000, 'two access records');
    assert.equal(s.access[0].status, 200); // its status went out with the first line; it was read to its end
  });

  test('a fast reader of the same load gets every line', async (t) => {
    const s = await serveWith({ ndjsonMaxUnsentBytes: CAP });
    t.after(() => s.close());
    const streamed = await streamPost(s.port, { body: [low] });
    const folded = fold(streamed, [low]);
    assert.equal(folded.status, 200, streamed.text.slice(-400));
    const result = (folded.body as { return: [Record<string, string>] }).return[0];
    assert.deepEqual(Object.keys(result).sort(), fleet);
    assert.ok(Object.values(result).every((ret) => ret === BIG));
    assert.equal(streamed.lines.at(-1)!.value.done, true);
    assertNothingHeld(s);
    assert.equal(await cutCount(s, 'reader_behind'), 0);
  });

  test('a reader that takes nothing more mid-stream is disconnected after send_timeout; nothing is held', async (t) => {
    // No cap: only the send timeout stops it. late1 returns after 3 s: the job is still on when the reader is cut.
    const s = await serveWith({ ndjsonMaxUnsentBytes: 0, sendTimeoutMs: 500 });
    t.after(() => s.close());
    const reader = await pausedPost(s.port, [{ ...low, tgt: '*' }], { firstLine: true });
    await until(() => reader.received() > 0, 5000, 'the first line');
    const t0 = performance.now();
    await until(() => s.responses[0]?.destroyed === true, 5000, 'the connection cut');
    const cutAfter = performance.now() - t0;
    t.diagnostic(`disconnected ${cutAfter.toFixed(0)} ms after the reader stopped (send_timeout 500 ms)`);
    assert.ok(cutAfter < 2500, `cut after ${cutAfter.toFixed(0)} ms: before late1 returns`);
    await until(() => s.handler.stats().inFlight === 0, 1000, 'the request ends');
    assertNothingHeld(s);
    assert.equal(await cutCount(s, 'send_timeout'), 1);
    assert.ok(s.lines.some((l) => l.level === 'warn' && /took nothing of this streamed answer for 0.5 s/.test(l.msg)));
    const streamed = await reader.resume();
    assert.equal(streamed.complete, false, 'the answer was cut, not ended');
    await until(() => s.access.length === 1, 1000, 'the access record');
    assert.equal(s.access[0].status, 499);
    assert.equal(s.audit[0].status, 499);
  });

  test('cut, then never read: the rest is dropped after send_timeout', async (t) => {
    const s = await serveWith({ ndjsonMaxUnsentBytes: CAP, sendTimeoutMs: 500 });
    t.after(() => s.close());
    const reader = await pausedPost(s.port, [low]);
    await until(() => s.responses[0]?.destroyed === true, 10_000, 'the connection cut');
    assertNothingHeld(s);
    assert.equal(await cutCount(s, 'reader_behind'), 1);
    assert.equal(await cutCount(s, 'send_timeout'), 1);
    reader.socket.destroy();
  });
});

test('a minion line is the JSON text of its object, for every kind of value', () => {
  const ids = ['minion1', 'quo"te\\back', 'ünï\u2028', '\ud800lone', '__proto__'];
  const values: unknown[] = [
    true,
    false,
    null,
    undefined,
    0,
    -1.5,
    'text',
    new RawJson('{"a":[1,2,{"b":null}],"big":12345678901234567890}'),
    { nested: new RawJson('[1]'), list: [true, 'x'] },
    Buffer.from([0, 255]),
    new Map<unknown, unknown>([[1, 'one']]),
    new Date(0),
    { ret: true, retcode: 0, jid: '20261205000000000000' },
  ];
  for (const id of ids) {
    for (const value of values) {
      assert.equal(minionLine(3, id, 'return', value), toJson({ item: 3, minion: id, return: value }));
      assert.equal(minionLine(0, id, 'entry', value), toJson({ item: 0, minion: id, entry: value }));
    }
  }
});
