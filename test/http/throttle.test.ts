/**
 * Failed logins throttled per client address (lib/http/throttle.ts): real HTTP
 * to createHandler() on port 0, backed by the master double, clients on
 * loopback aliases (127.0.0.2, 127.0.0.3) or, with trustProxy, named by
 * X-Forwarded-For. The sliding window's arithmetic is checked on the table
 * itself with a clock of the test's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { createHandler, GET_MESSAGE, type HandlerOptions, type RestWsgiHandler } from '../../lib/http/handler.js';
import { AuthThrottle, DEFAULT_AUTH_FAILURE_ADDRESSES, authThrottle } from '../../lib/http/throttle.js';
import { silentLogger } from '../../lib/log.js';
import { tooManyFailedLoginsMessage } from '../../lib/errors.js';
import { floodAddress, forwardedFlood, recordingLogger, request, serve, sleep, type LogLine, type Reply } from '../support/http.js';
import { BIN, repoRoot, startCommand } from '../support/command.js';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';

const PASSWORD = 'pw-right-7c1d0e9a';
const WRONG = 'pw-wrong-3f8b2a61';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel'] } };
const RIGHT = { eauth: 'pam', username: 'saltdev', password: PASSWORD, client: 'runner', fun: 'test.arg', arg: ['ok'] };
const WRONG_LOGIN = { ...RIGHT, password: WRONG };

const ATTACKER = '127.0.0.2';
const OTHER = '127.0.0.3';

interface Env {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  port: number;
  lines: LogLine[];
  /** POST `body` from `from` (a loopback address), or with `X-Forwarded-For: from` when `forwarded`. */
  post(body: unknown, from?: string, forwarded?: boolean): Promise<Reply>;
}

async function start(t: { after(fn: () => unknown): void }, options: Partial<HandlerOptions>): Promise<Env> {
  const master = await startMaster({ users: USERS, minions: [{ id: 'minion1' }] });
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, masterTimeoutMs: 1000, ...options });
  const server = await serve(handler);
  t.after(async () => {
    await server.close();
    handler.close();
    await master.close();
  });
  // One connection per request, as a guessing client would open them, each from its own address.
  const post = (body: unknown, from = '127.0.0.1', forwarded = false) =>
    forwarded
      ? request(server.port, { body, headers: { 'content-type': 'application/json', 'x-forwarded-for': from } })
      : request(server.port, { body, localAddress: from });
  return { master, handler, port: server.port, lines, post };
}

/** Requests the master received for the items (its runner-signature lookups aside). */
const seen = (master: SaltMasterDouble) => master.itemRequests.length;

function assertThrottled(reply: Reply, windowS: number): void {
  assert.equal(reply.status, 429, reply.text);
  assert.equal(reply.headers['content-type'], 'application/json');
  const retry = Number(reply.headers['retry-after']);
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= windowS, `Retry-After ${reply.headers['retry-after']}`);
  assert.deepEqual(reply.json, { return: tooManyFailedLoginsMessage(retry) });
  assert.match(
    reply.json.return,
    /^Too many failed logins; retry after \d+ s \(until then every POST from this address is refused, correct credentials too\)$/,
  );
  assert.equal(reply.headers.connection, 'close');
}

test('40 wrong passwords from one address: 401s up to the limit, then 429 with Retry-After and nothing reaches the master; another address is served in the same second; after the window the first is served again', async (t) => {
  const windowMs = 4000; // the 40 requests take far less, even on a loaded machine
  const env = await start(t, { authFailureLimit: 10, authFailureWindowMs: windowMs });
  const before = seen(env.master);
  const statuses: number[] = [];
  let firstThrottled: Reply | undefined;
  let seenAtLimit = 0;
  for (let i = 0; i < 40; i++) {
    const reply = await env.post([WRONG_LOGIN], ATTACKER);
    statuses.push(reply.status);
    if (reply.status === 429) firstThrottled ??= reply;
    else assert.equal(reply.status, 401, reply.text);
    if (i === 9) seenAtLimit = seen(env.master);
  }
  const throttledAt = performance.now();
  assert.deepEqual(statuses, [...Array(10).fill(401), ...Array(30).fill(429)]);
  assertThrottled(firstThrottled!, windowMs / 1000);
  // Each failure reached the master once; none past the limit did.
  assert.equal(seenAtLimit - before, 10, 'the master saw the 10 failures');
  assert.equal(seen(env.master), seenAtLimit, 'nothing reached the master past the limit');

  // The right password from the same address is refused too, unread: the throttle is per address, not per password.
  assertThrottled(await env.post([RIGHT], ATTACKER), windowMs / 1000);
  // GET runs nothing and is answered as always.
  const get = await request(env.port, { method: 'GET', localAddress: ATTACKER });
  assert.equal(get.status, 200);
  assert.deepEqual(get.json, { return: GET_MESSAGE });

  // Another address, in the same second: served.
  const other = await env.post([RIGHT], OTHER);
  assert.ok(performance.now() - throttledAt < 1000, 'within the same second');
  assert.equal(other.status, 200, other.text);
  assert.deepEqual(other.json, { return: [{ args: ['ok'], kwargs: {} }] });
  assert.equal(seen(env.master) - seenAtLimit, 1);

  // One warning, naming the address and the username tried; no password.
  const warnings = env.lines.filter((l) => l.level === 'warn');
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.match(
    warnings[0].msg,
    /^too many failed logins from 127\.0\.0\.2: 10 within 4 s, tried "saltdev"; its POSTs get 429 for [1-4] s$/,
  );
  for (const line of env.lines) assert.ok(!line.msg.includes(WRONG) && !line.msg.includes(PASSWORD), line.msg);

  // Past the window (the oldest failure out): the first address is served again.
  await sleep(windowMs - (performance.now() - throttledAt) + 100);
  const again = await env.post([RIGHT], ATTACKER);
  assert.equal(again.status, 200, again.text);
  assert.equal(seen(env.master) - seenAtLimit, 2);
});

test('what counts: a password the master refused (or a command it refused with one), once per request; a bad, unknown or expired token, our own refusals, 400s and 200s do not', async (t) => {
  const env = await start(t, { authFailureLimit: 4, authFailureWindowMs: 60_000 });
  const expired = await env.master.eauth.mkToken({ eauth: 'pam', username: 'saltdev', password: PASSWORD });
  assert.ok(expired);
  expired.expire = Date.now() / 1000 - 1;
  // As Salt's netapi tests send them (tests/pytests/functional/netapi/...: bad, empty, pathname tokens), many more than the limit.
  const notCounted: unknown[] = [
    [{ token: 'abad1dea'.repeat(8), client: 'wheel', fun: 'key.list_all' }], // unknown to the master
    [{ token: expired.token, client: 'runner', fun: 'test.arg' }], // expired: the client logs in again
    [{ token: '', client: 'local', tgt: '*', fun: 'test.ping' }],
    [{ token: '../../../etc/passwd', client: 'local', tgt: '*', fun: 'test.ping' }],
    [{ token: 'not-hex', client: 'local', tgt: '*', fun: 'test.ping' }],
    [{ ...WRONG_LOGIN, token: 'abad1dea'.repeat(8) }], // a token wins over eauth (salt/master.py)
    [{ client: 'local', tgt: '*', fun: 'test.ping' }], // no credentials
    [RIGHT, { ...RIGHT, raw_shell: true }], // refused by us before the master is asked
  ];
  for (let round = 0; round < 2; round++) {
    for (const body of notCounted) {
      const reply = await env.post(body);
      assert.equal(reply.status, 401, `${JSON.stringify(body)}: ${reply.text}`);
    }
  }
  assert.equal(env.handler.stats().failedLoginAddresses, 0, '16 refused tokens and refusals of ours: no failed login');
  assert.equal((await env.post([RIGHT])).status, 200);

  const counted: unknown[] = [
    [WRONG_LOGIN, WRONG_LOGIN, WRONG_LOGIN], // three failing items: one failure
    [{ eauth: 'auto', username: 'nobody', password: 'x', client: 'local', tgt: '*', fun: 'test.ping' }], // unknown to external_auth
    [{ eauth: 'pam', password: WRONG, client: 'runner', fun: 'test.arg' }], // no username
  ];
  for (const body of counted) {
    const reply = await env.post(body);
    assert.equal(reply.status, 401, reply.text);
    // Neither a success nor a refusal of another kind counts, nor erases a failure.
    assert.equal((await env.post([RIGHT])).status, 200);
    assert.equal((await env.post([{ ...RIGHT, client: 'bogus' }])).status, 400);
    assert.equal((await env.post('not json')).status, 400);
    assert.equal((await env.post([{ token: 'abad1dea'.repeat(8), client: 'wheel', fun: 'key.list_all' }])).status, 401);
  }
  assert.equal(env.lines.filter((l) => l.level === 'warn').length, 0, 'three failures: not throttled yet');
  // A right item before a wrong one: the request is answered 401, and counts.
  const fourth = await env.post([RIGHT, WRONG_LOGIN]);
  assert.equal(fourth.status, 401, fourth.text);
  assertThrottled(await env.post([RIGHT]), 60);
  // Throttled, a token is refused too: the 429 is the address's, before anything is read.
  assertThrottled(await env.post([{ token: 'abad1dea'.repeat(8), client: 'wheel', fun: 'key.list_all' }]), 60);
  const warnings = env.lines.filter((l) => l.level === 'warn');
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0].msg,
    /^too many failed logins from 127\.0\.0\.1: 4 within 60 s, tried "saltdev", "nobody", \(none\); its POSTs get 429 for 60 s$/,
  );
  assert.ok(!warnings[0].msg.includes('abad1dea') && !warnings[0].msg.includes(WRONG));
});

test('behind a proxy (trustProxy): the client is the X-Forwarded-For address, so clients behind it are throttled apart', async (t) => {
  const env = await start(t, { authFailureLimit: 3, authFailureWindowMs: 60_000, trustProxy: true });
  for (let i = 0; i < 3; i++) assert.equal((await env.post([WRONG_LOGIN], '203.0.113.7', true)).status, 401);
  assertThrottled(await env.post([WRONG_LOGIN], '203.0.113.7', true), 60);
  // Entries left of the proxy's are the client's own writing: never used.
  assertThrottled(await env.post([RIGHT], '198.51.100.1, 203.0.113.7', true), 60);
  assert.equal((await env.post([RIGHT], '203.0.113.7, 198.51.100.1', true)).status, 200);
  assert.equal((await env.post([RIGHT], '203.0.113.8', true)).status, 200);
  assert.match(env.lines.find((l) => l.level === 'warn')!.msg, /^too many failed logins from 203\.0\.113\.7: /);
});

test("without trustProxy every client behind a proxy has the proxy's address: one client's failures throttle them all", async (t) => {
  const env = await start(t, { authFailureLimit: 3, authFailureWindowMs: 60_000 });
  for (let i = 0; i < 3; i++) assert.equal((await env.post([WRONG_LOGIN], '203.0.113.7', true)).status, 401);
  assertThrottled(await env.post([RIGHT], '203.0.113.8', true), 60);
});

test('more addresses than the table holds (X-Forwarded-For, trustProxy), each failing once: the table stays at its cap, oldest out, and the latest address is still throttled', async (t) => {
  // 100,000 addresses, and the table's memory, are `npm run bench:throttle`; here enough to pass the cap.
  const limit = 3;
  // Each failure is the master's answer to a wrong password: a generous master timeout, as the flood keeps a loaded machine busy.
  const env = await start(t, { authFailureLimit: limit, authFailureWindowMs: 600_000, trustProxy: true, masterTimeoutMs: 30_000 });
  const total = DEFAULT_AUTH_FAILURE_ADDRESSES + 2000;
  const statuses = await forwardedFlood(env.port, total, floodAddress);
  assert.deepEqual([...statuses], [[401, total]]);
  const stats = env.handler.stats();
  assert.equal(stats.failedLoginAddresses, DEFAULT_AUTH_FAILURE_ADDRESSES, 'the table is full, and no fuller');
  assert.equal(env.lines.filter((l) => l.level === 'warn').length, 0);

  // The latest address fails up to the limit: throttled, as before the flood.
  const latest = floodAddress(total - 1);
  for (let i = 1; i < limit; i++) assert.equal((await env.post([WRONG_LOGIN], latest, true)).status, 401);
  assertThrottled(await env.post([RIGHT], latest, true), 600);
  assert.equal(env.handler.stats().failedLoginAddresses, DEFAULT_AUTH_FAILURE_ADDRESSES);
  // The first addresses went out, oldest first: their count starts again from 0.
  for (let i = 1; i < limit; i++) assert.equal((await env.post([WRONG_LOGIN], floodAddress(0), true)).status, 401);
  assert.equal((await env.post([RIGHT], floodAddress(0), true)).status, 200);
});

test('limit or window 0 turns the throttle off; bad values are refused', async (t) => {
  for (const off of [{ authFailureLimit: 0 }, { authFailureWindowMs: 0 }]) {
    const env = await start(t, { ...off });
    for (let i = 0; i < 15; i++) assert.equal((await env.post([WRONG_LOGIN])).status, 401);
    assert.equal(env.handler.stats().failedLoginAddresses, 0);
  }
  for (const bad of [{ authFailureLimit: -1 }, { authFailureLimit: 1.5 }, { authFailureWindowMs: -5 }, { authFailureWindowMs: Infinity }]) {
    assert.throws(() => authThrottle(bad, silentLogger), RangeError, JSON.stringify(bad));
  }
});

test('the window slides: failures leave it one by one, a success erases none, the log line comes once per throttling', () => {
  const { logger, lines } = recordingLogger();
  const table = new AuthThrottle({ limit: 3, windowMs: 10_000, logger });
  const low = { eauth: 'pam', username: 'saltdev', password: WRONG };
  table.fail('a', low, 0);
  table.fail('a', low, 4000);
  assert.equal(table.retryAfterS('a', 4000), 0);
  table.fail('a', low, 6000);
  assert.equal(table.retryAfterS('a', 6000), 4); // until the failure at 0 leaves, at 10 000
  assert.equal(table.retryAfterS('a', 9001), 1);
  assert.equal(table.retryAfterS('a', 10_000), 0);
  assert.equal(lines.length, 1);
  // Failures at 4000 and 6000 are still in the window: one more throttles again, until 14 000.
  table.fail('a', low, 10_500);
  assert.equal(table.retryAfterS('a', 10_500), 4);
  assert.equal(lines.length, 2);
  // A request already running when it was throttled fails too: counted, no second line, the wait moves on.
  table.fail('a', low, 11_000);
  assert.equal(table.retryAfterS('a', 11_000), 5); // until 16 000, the failure at 6000 out
  assert.equal(lines.length, 2);
  assert.equal(table.retryAfterS('b', 11_000), 0);
  // Long after: the entry is gone at the next failure anywhere.
  table.fail('b', low, 40_000);
  // A token refused is no failed login: nothing counted.
  table.fail('c', { token: 'abc', eauth: 'pam' }, 40_001);
  assert.deepEqual(table.stats().addresses, 1);
  for (const line of lines) assert.ok(!line.msg.includes(WRONG));
});

test('the table is capped, oldest last failure out; names are kept few and short', () => {
  const { logger, lines } = recordingLogger();
  const table = new AuthThrottle({ limit: 8, windowMs: 60_000, maxAddresses: 3, logger });
  const nameless = { eauth: 'pam', password: 'x' };
  for (const [i, address] of ['a', 'b', 'c', 'd'].entries()) table.fail(address, nameless, i);
  assert.equal(table.stats().addresses, 3);
  table.fail('b', nameless, 10); // b is now the newest: c goes out next
  table.fail('e', nameless, 11);
  table.fail('b', nameless, 12);
  // b has 3 failures; a and c went out: a new failure there is their first.
  for (let i = 0; i < 6; i++) table.fail('b', { eauth: 'pam', username: `user${i}${'x'.repeat(100)}` }, 20 + i);
  assert.ok(table.retryAfterS('b', 30) > 0);
  assert.equal(table.stats().addresses, 3);
  assert.equal(lines.length, 1);
  assert.match(lines[0].msg, /tried \(none\), "user0x+", "user1x+", "user2x+", "user3x+", 1 more;/);
  assert.ok(!lines[0].msg.includes('x'.repeat(60)), 'names cut at 64 characters');
  const { approxBytes } = table.stats();
  assert.ok(approxBytes > 0 && approxBytes < 3 * 2000, String(approxBytes));
});

test('the command: rest_wsgi: auth_failure_limit and auth_failure_window (seconds)', async (t) => {
  const master = await startMaster({ users: USERS, config: { rest_wsgi: { port: 0, auth_failure_limit: 2, auth_failure_window: 2.5 } } });
  t.after(() => master.close());
  const run = await startCommand(t, ['-c', master.configPath]);
  for (let i = 0; i < 2; i++) assert.equal((await request(run.port, { body: [WRONG_LOGIN] })).status, 401);
  const throttledAt = performance.now();
  assertThrottled(await request(run.port, { body: [RIGHT] }), 3);
  await run.waitFor(
    /WARN.*too many failed logins from 127\.0\.0\.1: 2 within 2\.5 s, tried "saltdev"; its POSTs get 429 for [1-3] s/,
    2000,
  );
  await sleep(2500 - (performance.now() - throttledAt) + 100);
  assert.equal((await request(run.port, { body: [RIGHT] })).status, 200);
  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
  assert.ok(!run.stderr().includes(WRONG));

  // Unusable values: one line, exit 2 (the three commands at once: each starts tsx).
  const cases = [
    [{ auth_failure_limit: -1 }, /invalid rest_wsgi: auth_failure_limit -1 in .*: expected an integer, 0 \(off\) or more/],
    [{ auth_failure_limit: 'many' }, /invalid rest_wsgi: auth_failure_limit "many" in .*: expected an integer, 0 \(off\) or more/],
    [{ auth_failure_window: -1 }, /invalid rest_wsgi: auth_failure_window -1 in .*: expected a number of seconds, 0 or more/],
  ] as const;
  await Promise.all(
    cases.map(async ([section, message]) => {
      const bad = await startMaster({ config: { rest_wsgi: { port: 0, ...section } } });
      t.after(() => bad.close());
      const exit = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', BIN, '-c', bad.configPath], { cwd: repoRoot }, (err, _stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });
      assert.equal(exit.code, 2, exit.stderr);
      assert.equal(exit.stderr.trim().split('\n').length, 1, exit.stderr);
      assert.match(exit.stderr, message);
    }),
  );
});

/**
 * The same against a real Salt master, when SALT_REAL_MASTER_CONFIG names its
 * config file (and the master runs). Its eauth `auto` takes any password, so
 * the failing login is a user that `external_auth` does not list (`nobody`):
 * the master answers the publish with AuthorizationError (401) and logs
 * `Authentication failure of type "eauth" occurred.` at warning. The
 * master's sends are counted on our request channel (a test-only wrapper)
 * and, as a cross-check, in the master's log_file.
 */
const REAL_MASTER = process.env.SALT_REAL_MASTER_CONFIG;
test('a real master: 40 failing logins give 401s then 429s, nothing sent past the limit; another address served in the same second; served again after the window', {
  skip: REAL_MASTER
    ? false
    : "set SALT_REAL_MASTER_CONFIG to a running master's config file (e.g. /var/tmp/saltenv/etc/salt/master) to run it",
}, async (t) => {
  const windowMs = 5000;
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: REAL_MASTER, logger, authFailureLimit: 10, authFailureWindowMs: windowMs });
  const server = await serve(handler);
  t.after(async () => {
    await server.close();
    handler.close();
  });
  const channel = (handler.netapi as unknown as { channel: { send: (...args: unknown[]) => Promise<unknown> } }).channel;
  const send = channel.send.bind(channel);
  let sends = 0;
  channel.send = (...args) => (sends++, send(...args));
  const logFile = String(handler.master.log_file ?? '');
  const logSize = () => (logFile.startsWith('/') ? statSync(logFile).size : 0);
  const logStart = logSize();

  const failing = { eauth: 'auto', username: 'nobody', password: WRONG, client: 'local', tgt: '*', fun: 'test.ping' };
  const right = { eauth: 'auto', username: 'saltdev', password: 'any', client: 'wheel', fun: 'key.list_all' };
  const statuses: number[] = [];
  const started = performance.now();
  let throttledAt = 0;
  let firstThrottled: Reply | undefined;
  for (let i = 0; i < 40; i++) {
    const reply = await request(server.port, { body: [failing], localAddress: ATTACKER });
    statuses.push(reply.status);
    if (reply.status === 401) assert.deepEqual(reply.json, { return: 'Authorization error occurred.' });
    else if (!firstThrottled) {
      firstThrottled = reply;
      throttledAt = performance.now();
    }
  }
  const failuresMs = performance.now() - started;
  assert.deepEqual(statuses, [...Array(10).fill(401), ...Array(30).fill(429)]);
  assertThrottled(firstThrottled!, windowMs / 1000);
  assert.equal(sends, 10, 'requests sent to the master');
  const otherAfterMs = performance.now() - throttledAt;
  const other = await request(server.port, { body: [right], localAddress: OTHER });
  const otherTookMs = performance.now() - throttledAt - otherAfterMs;
  assert.equal(other.status, 200, other.text);
  assert.equal((other.json as { return: Array<{ data: { success: boolean } }> }).return[0].data.success, true, other.text);
  assert.ok(otherAfterMs < 1000, `sent ${otherAfterMs} ms after the first 429`);
  const masterLines = logFile.startsWith('/')
    ? readFileSync(logFile)
        .subarray(logStart)
        .toString()
        .split('\n')
        .filter((l) => l.includes('Authentication failure of type "eauth" occurred.')).length
    : -1;
  assert.match(lines.find((l) => l.level === 'warn')!.msg, /^too many failed logins from 127\.0\.0\.2: 10 within 5 s, tried "nobody"; /);

  await sleep(windowMs - (performance.now() - throttledAt) + 100);
  const again = await request(server.port, { body: [right], localAddress: ATTACKER });
  assert.equal(again.status, 200, again.text);
  assert.equal(sends, 12);
  t.diagnostic(
    `40 failing logins in ${failuresMs.toFixed(0)} ms: ${statuses.filter((s) => s === 401).length}×401, ${statuses.filter((s) => s === 429).length}×429 ` +
      `(Retry-After ${firstThrottled!.headers['retry-after']}); sends to the master ${sends - 2} for the failures; ` +
      `master log lines 'Authentication failure' during them: ${masterLines}; other address sent ${otherAfterMs.toFixed(0)} ms after the first 429, 200 in ${otherTookMs.toFixed(0)} ms; ` +
      `first address 200 again after ${(performance.now() - throttledAt).toFixed(0)} ms`,
  );
  if (masterLines >= 0) assert.ok(masterLines >= 10, `${masterLines} master log lines`);
});
