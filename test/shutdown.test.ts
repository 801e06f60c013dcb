/**
 * Stopping the command: SIGTERM stops accepting, lets running requests
 * finish up to --shutdown-timeout, then ends the rest (503/504, their jobs
 * go on on the master), closes its ZeroMQ socket and event bus connection
 * and exits 0 by itself; a second signal exits at once with status 1.
 *
 * "By itself": after 'stopped' the process is left to exit when nothing
 * holds it. A socket or timer left open would keep it alive, and it would
 * log "still holding handles" before forcing its way out: the tests assert
 * that never happens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startMaster } from './support/master.js';
import { request, sleep } from './support/http.js';
import { startCommand } from './support/command.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };

async function masterWithApi(t: { after(fn: () => unknown): void }) {
  const master = await startMaster({ minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: 30_000 }], config: { rest_wsgi: { port: 0 } } });
  t.after(() => master.close());
  return master;
}

test('SIGTERM: stops accepting, the running request finishes, idle keep-alive connections close, exit 0 by itself', async (t) => {
  const master = await masterWithApi(t);
  const run = await startCommand(t, ['-c', master.configPath]);
  await master.waitForBusClients(1);

  // An idle keep-alive connection (it would otherwise be held open for 5 s).
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  assert.equal((await request(run.port, { method: 'GET', agent })).status, 200);

  const started = master.nextRequest('runner');
  const running = request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 8 }] }); // 400 ms
  await started;
  const signalledAt = performance.now();
  run.child.kill('SIGTERM');
  await run.waitFor(/SIGTERM: stopping after 1 running request\(s\) \(at most 25 s\)/);

  // No new connections.
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect(run.port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');

  const reply = await running;
  assert.equal(reply.status, 200, reply.text);
  assert.equal(reply.text, '{"return":[true]}');
  assert.equal(reply.headers.connection, 'close');

  const { code, signal } = await run.exited;
  const ms = performance.now() - signalledAt;
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.ok(ms < 1500, `exited ${ms} ms after SIGTERM`);
  assert.match(run.stderr(), /INFO  stopped\n$/);
  assert.doesNotMatch(run.stderr(), /still holding handles|shutdown timeout/);
  // Its bus connection is gone (the master double saw it close).
  await sleep(50);
  assert.equal(master.busClientCount, 0);
});

test('past --shutdown-timeout, requests still waiting end with 504 naming their job, then exit 0 by itself', async (t) => {
  const master = await masterWithApi(t);
  const run = await startCommand(t, ['-c', master.configPath, '--shutdown-timeout', '0.5']);
  await master.waitForBusClients(1);

  const runnerStarted = master.nextRequest('runner');
  const runner = request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600 }] }); // 30 s
  await runnerStarted;
  const published = master.nextRequest('publish');
  const local = request(run.port, { body: [{ ...CRED, client: 'local', tgt: 'slow1', fun: 'test.ping', timeout: 60 }] });
  await published;
  await sleep(50);

  const signalledAt = performance.now();
  run.child.kill('SIGTERM');
  const [r, l] = await Promise.all([runner, local]);
  const answeredAfter = performance.now() - signalledAt;
  assert.equal(r.status, 504, r.text);
  // The server is the one stopping (issue 14): it says so and names the job, which goes on.
  assert.match(r.text, /^\{"return":"The server is shutting down: it stopped waiting for job \d{20}, which goes on on the master\."\}$/);
  assert.equal(l.status, 504, l.text);
  assert.match(l.text, /^\{"return":"The server is shutting down: it stopped waiting for job \d{20}, which goes on on the master\."\}$/);
  assert.ok(answeredAfter >= 450 && answeredAfter < 1500, `answered ${answeredAfter} ms after SIGTERM (deadline 500 ms)`);

  const { code } = await run.exited;
  assert.equal(code, 0);
  assert.ok(performance.now() - signalledAt < 2500);
  const stderr = run.stderr();
  assert.match(stderr, /WARN  shutdown timeout \(0\.5 s\): ending 2 running request\(s\); their jobs go on on the master\n/);
  assert.match(stderr, /INFO  stopped\n$/);
  assert.doesNotMatch(stderr, /still holding handles/);
  // The jobs themselves were not touched on the master.
  assert.equal(master.executed.filter((e) => (e.kind === 'runner' && e.fun !== 'salt.cmd') || e.kind === 'publish').length, 2);
});

test('shutdown_timeout from rest_wsgi:, and a second signal exits at once with status 1', async (t) => {
  const master = await startMaster({ config: { rest_wsgi: { port: 0, shutdown_timeout: 60 } } });
  t.after(() => master.close());
  const run = await startCommand(t, ['-c', master.configPath]);
  const started = master.nextRequest('runner');
  const abandoned = request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600 }] }).catch((err: Error) => err);
  await started;
  run.child.kill('SIGTERM');
  await run.waitFor(/stopping after 1 running request\(s\) \(at most 60 s\)/);
  const secondAt = performance.now();
  run.child.kill('SIGINT');
  const { code } = await run.exited;
  assert.equal(code, 1);
  assert.ok(performance.now() - secondAt < 1000);
  assert.match(run.stderr(), /WARN  SIGINT again: exiting now\n/);
  assert.ok((await abandoned) instanceof Error);
});

test('SIGINT with nothing running: exit 0 at once, nothing left open', async (t) => {
  const master = await masterWithApi(t);
  const run = await startCommand(t, ['-c', master.configPath]);
  await master.waitForBusClients(1);
  const at = performance.now();
  run.child.kill('SIGINT');
  assert.equal((await run.exited).code, 0);
  assert.ok(performance.now() - at < 1000);
  assert.match(run.stderr(), /INFO  SIGINT: stopping\n.*INFO  stopped\n$/s);
  assert.doesNotMatch(run.stderr(), /still holding handles/);
});
