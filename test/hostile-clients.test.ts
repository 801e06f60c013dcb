/**
 * Slow and abusive clients: headers sent a byte at a time (slowloris), a
 * body that stalls or trickles, idle keep-alive connections, more requests
 * at once than the server takes, bodies over the limit. Over real sockets,
 * written by hand where a well-behaved client library would not do it.
 * Timeouts are scaled down (hundreds of ms); the defaults are in the README.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { applyServerTimeouts, createHandler, type HandlerOptions, type RestWsgiHandler } from '../lib/http/handler.js';
import { TOO_BUSY_MESSAGE } from '../lib/errors.js';
import { parseRawResponse, rawClient, request, serve, sleep, until } from './support/http.js';
import { startCommand } from './support/command.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };
const TIMEOUT_JSON = '{"return":"408: Request Timeout"}';

interface Env {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  server: http.Server;
  port: number;
}

async function setup(t: { after(fn: () => unknown): void }, options: Partial<HandlerOptions> = {}, headersTimeoutMs = 300): Promise<Env> {
  const master = await startMaster();
  const handler = createHandler({
    config: master.configPath,
    masterTimeoutMs: 500,
    bodyTimeoutMs: 600,
    bodyIdleTimeoutMs: 200,
    ...options,
  });
  const s = await serve(handler, (server) =>
    applyServerTimeouts(server, { headersTimeoutMs, requestTimeoutMs: 2000, keepAliveTimeoutMs: 300 }),
  );
  t.after(async () => {
    await s.close();
    handler.close();
    await master.close();
  });
  return { master, handler, server: s.server, port: s.port };
}

const postHead = (length: number | 'chunked') =>
  `POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n${length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}\r\n\r\n`;

test('a body that stalls: 408 with a JSON body after the idle timeout, the connection closed, nothing run', async (t) => {
  const env = await setup(t);
  const client = await rawClient(env.port);
  const start = performance.now();
  const body = JSON.stringify([{ ...CRED, client: 'local', tgt: '*', fun: 'test.ping' }]);
  client.write(postHead(body.length) + body.slice(0, 20));
  const raw = await client.closed;
  const ms = performance.now() - start;
  const reply = parseRawResponse(raw);
  assert.equal(reply.status, 408, raw);
  assert.match(reply.headers, /\r\nContent-Type: application\/json\r\n/);
  assert.match(reply.headers, /\r\nConnection: close\r\n/);
  assert.equal(reply.body, TIMEOUT_JSON);
  assert.ok(ms >= 180 && ms < 600, `answered after ${ms} ms (idle timeout 200 ms)`);
  assert.equal(env.master.requests.length, 0);
  assert.equal(env.handler.stats().inFlight, 0);
});

test('a body trickled a byte at a time, under the idle timeout: 408 at the body timeout', async (t) => {
  const env = await setup(t);
  for (const framing of [1000, 'chunked'] as const) {
    const client = await rawClient(env.port);
    const start = performance.now();
    client.write(postHead(framing));
    const trickle = setInterval(() => client.write(framing === 'chunked' ? '1\r\n \r\n' : ' '), 50);
    const raw = await client.closed;
    clearInterval(trickle);
    const ms = performance.now() - start;
    const reply = parseRawResponse(raw);
    assert.equal(reply.status, 408, raw);
    assert.equal(reply.body, TIMEOUT_JSON);
    assert.ok(ms >= 580 && ms < 1200, `${framing}: answered after ${ms} ms (body timeout 600 ms)`);
  }
  assert.equal(env.handler.stats().inFlight, 0);
});

test('slowloris: connections trickling their headers are cut at the headers timeout, other clients are served meanwhile', async (t) => {
  const env = await setup(t);
  const slow = await Promise.all(Array.from({ length: 50 }, () => rawClient(env.port)));
  const start = performance.now();
  const timers = slow.map((c, i) => {
    c.write('POST / HTTP/1.1\r\n');
    return setInterval(() => c.write(`X-Slow-${i}: a\r\n`), 50);
  });
  t.after(() => timers.forEach(clearInterval));
  // Served while 50 connections hang on their headers.
  const good = await request(env.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg', arg: [1] }] });
  assert.equal(good.status, 200, good.text);
  const closedAfter = await Promise.all(slow.map((c) => c.closed.then(() => performance.now() - start)));
  timers.forEach(clearInterval);
  for (const ms of closedAfter) assert.ok(ms < 300 + 75 + 500, `a slow connection lasted ${ms} ms (headers timeout 300 ms)`);
  // Node answers them 408 (the command adds a JSON body, tested below).
  for (const c of slow) assert.match(c.received(), /^HTTP\/1\.1 408 /);
});

test('an idle keep-alive connection is closed after the keep-alive timeout', async (t) => {
  const env = await setup(t);
  const client = await rawClient(env.port);
  const start = performance.now();
  client.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await until(() => client.received().includes('Marty'), 1000, 'the answer');
  await client.closed;
  const ms = performance.now() - start;
  assert.ok(ms >= 250 && ms < 1500, `closed after ${ms} ms (keep-alive timeout 300 ms)`);
});

test('maxInFlight: past it 503 with Retry-After, at once and running nothing; GET is not counted; the count goes back to 0', async (t) => {
  const env = await setup(t, { maxInFlight: 2 });
  const slowRunner = [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 8 }]; // 400 ms on the double
  const first = request(env.port, { body: slowRunner });
  const second = request(env.port, { body: slowRunner });
  await until(() => env.handler.stats().inFlight === 2, 2000, 'two in flight');
  const runners = () => env.master.itemRequests.filter((r) => r.cmd === 'runner').length;
  await until(() => runners() === 2, 2000, 'both started');

  const start = performance.now();
  const refused = await request(env.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['third'] }] });
  assert.ok(performance.now() - start < 200);
  assert.equal(refused.status, 503);
  assert.deepEqual(refused.json, { return: TOO_BUSY_MESSAGE });
  assert.equal(refused.headers['retry-after'], '1');
  assert.equal(refused.headers['content-type'], 'application/json');
  assert.equal(refused.headers.connection, 'close');
  assert.equal(runners(), 2, 'the refused request ran nothing');
  // GET is cheap and never waits on the master: not counted.
  assert.equal((await request(env.port, { method: 'GET' })).status, 200);

  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);
  await until(() => env.handler.stats().inFlight === 0, 1000, 'in flight back to 0');
  const after = await request(env.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['fourth'] }] });
  assert.equal(after.status, 200, after.text);
});

test('maxInFlight counts requests that fail too: refusals and errors release their slot', async (t) => {
  // 13 failed logins from one address: the failed-login throttle (test/http/throttle.test.ts) stays out of it.
  const env = await setup(t, { maxInFlight: 1, authFailureLimit: 0 });
  for (let i = 0; i < 20; i++) {
    const bodies = [
      'not json',
      [{ client: 'local', tgt: '*', fun: 'test.ping' }],
      [{ ...CRED, password: 'wrong', client: 'runner', fun: 'test.arg' }],
    ];
    const reply = await request(env.port, { body: bodies[i % bodies.length] });
    assert.ok(reply.status === 400 || reply.status === 401, reply.text);
  }
  assert.equal(env.handler.stats().inFlight, 0);
  assert.equal((await request(env.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] })).status, 200);
});

test('a body over the limit without a Content-Length (chunked): 413 once the limit is passed, the rest unread', async (t) => {
  const env = await setup(t, { maxBodyBytes: 1000 });
  const client = await rawClient(env.port);
  client.write(postHead('chunked'));
  const chunk = 'x'.repeat(500);
  const pump = setInterval(() => client.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`), 5);
  const raw = await client.closed;
  clearInterval(pump);
  const reply = parseRawResponse(raw);
  assert.equal(reply.status, 413, raw);
  assert.equal(reply.body, '{"return":"413: Request body too large"}');
  assert.equal(env.handler.stats().inFlight, 0);
});

test('the command: JSON 408 for slow headers and for a stalled body, 503 past --max-in-flight, from rest_wsgi: settings', async (t) => {
  const master = await startMaster({
    config: { rest_wsgi: { port: 0, headers_timeout: 0.3, body_timeout: 0.6, body_idle_timeout: 0.2, keepalive_timeout: 0.3 } },
  });
  t.after(() => master.close());
  const run = await startCommand(t, ['-c', master.configPath, '--max-in-flight', '1']);

  const slowHeaders = await rawClient(run.port);
  slowHeaders.write('POST / HTTP/1.1\r\nHost: localhost\r\n');
  const trickle = setInterval(() => slowHeaders.write('X-A: b\r\n'), 50);
  const stalledBody = await rawClient(run.port);
  stalledBody.write(`${postHead(100)}[{"client":`);
  const [headersRaw, bodyRaw] = await Promise.all([slowHeaders.closed, stalledBody.closed]);
  clearInterval(trickle);
  assert.equal(parseRawResponse(headersRaw).status, 408, headersRaw);
  assert.equal(parseRawResponse(headersRaw).body, TIMEOUT_JSON);
  assert.equal(parseRawResponse(bodyRaw).status, 408, bodyRaw);
  assert.equal(parseRawResponse(bodyRaw).body, TIMEOUT_JSON);

  const slow = request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 6 }] });
  await master.nextRequest('runner');
  const busy = await request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] });
  assert.equal(busy.status, 503);
  assert.equal(busy.text, `{"return":"${TOO_BUSY_MESSAGE}"}`);
  assert.equal(busy.headers['retry-after'], '1');
  assert.equal((await slow).status, 200);
  await sleep(10);
  assert.equal((await request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] })).status, 200);

  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
});

test('the command refuses unusable reliability settings with one line, exit 2', async (t) => {
  const cases: Array<[Record<string, unknown>, string[], RegExp]> = [
    [{ port: 0, headers_timeout: 'soon' }, [], /invalid rest_wsgi: headers_timeout "soon" in .*: expected a positive number of seconds/],
    [{ port: 0, shutdown_timeout: -1 }, [], /invalid rest_wsgi: shutdown_timeout -1 in .*: expected a positive number of seconds/],
    [{ port: 0, max_in_flight: 0 }, [], /invalid rest_wsgi: max_in_flight 0 in .*: expected a positive integer/],
    [{ port: 0 }, ['--max-in-flight', '2.5'], /invalid --max-in-flight "2\.5": expected a positive integer/],
    [{ port: 0 }, ['--shutdown-timeout', 'x'], /invalid --shutdown-timeout "x": expected a positive number of seconds/],
  ];
  for (const [section, args, message] of cases) {
    const master = await startMaster({ config: { rest_wsgi: section } });
    t.after(() => master.close());
    const { spawnSync } = await import('node:child_process');
    const { BIN, repoRoot } = await import('./support/command.js');
    const run = spawnSync(process.execPath, ['--import', 'tsx', BIN, '-c', master.configPath, ...args], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    assert.equal(run.status, 2, run.stderr);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, message);
  }
});
