/**
 * Secrets never leave: every client run with a distinctive password and a
 * distinctive token, successes and every kind of failure (wrong password,
 * unknown token, disabled client, malformed bodies quoting the password,
 * a body over the limit, a 500, the master down, a client that leaves);
 * all log output captured at the most verbose level (the handler's logger
 * and the command's stderr at --log-level debug, text and JSON) and every
 * response (headers and body). Neither value, nor the wrong password and
 * unknown token tried, may appear in any of it.
 */
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { applyMasterDefaults } from '../lib/salt/config.js';
import { createHandler } from '../lib/http/handler.js';
import { everyClient } from './support/lowstates.js';
import { recordingLogger, request, serve, until, type Reply } from './support/http.js';
import { startCommand } from './support/command.js';

const PASSWORD = 'pw-SECRET-4f9a0d7c2e1b';
const TOKEN = '5ec7e75ec7e7'.repeat(5) + 'a11c'; // 64 hex digits
const WRONG_PASSWORD = 'pw-WRONG-8b3e6f10a9d2';
const UNKNOWN_TOKEN = 'bad70ce1'.repeat(8);
const SECRETS = [PASSWORD, TOKEN, WRONG_PASSWORD, UNKNOWN_TOKEN];

const USER = { eauth: 'pam', username: 'saltdev', password: PASSWORD };

async function secretMaster(
  t: { after(fn: () => unknown): void },
  throttle: Record<string, unknown> = { auth_failure_limit: 0 },
): Promise<SaltMasterDouble> {
  const master = await startMaster({
    users: { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } },
    minions: [{ id: 'minion1' }, { id: 'slow1', delayMs: 2000 }],
    // The scenario's failed logins come from one address: the command's throttle is off there, and checked below.
    // Audit lines with every item's arguments (secret-looking ones masked), and the items' own credentials never.
    config: { rest_wsgi: { port: 0, audit_args: true, ...throttle } },
  });
  t.after(() => master.close());
  // A token of our choosing: made by the master (mk_token), then renamed.
  const made = await master.eauth.mkToken({ eauth: 'pam', username: 'saltdev', password: PASSWORD });
  assert.ok(made);
  master.eauth.tokens.delete(made.token);
  master.eauth.tokens.set(TOKEN, { ...made, token: TOKEN });
  return master;
}

/** Every request of the scenario; returns the replies (status, headers, body). */
async function runScenario(master: SaltMasterDouble, port: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  const post = async (body: unknown, path = '/', expected?: number) => {
    const reply = await request(port, { body, path });
    replies.push(reply);
    if (expected !== undefined) assert.equal(reply.status, expected, `${JSON.stringify(body).slice(0, 200)} → ${reply.text.slice(0, 300)}`);
    return reply;
  };
  // Every client, with the password and with the token; full returns too.
  for (const cred of [USER, { token: TOKEN }]) {
    for (const [, low] of everyClient(cred)) await post([low], '/?password=' + PASSWORD + '&token=' + TOKEN, 200);
    await post([{ ...cred, client: 'runner', fun: 'test.arg', arg: ['a'], full_return: true }], '/', 200);
    await post([{ ...cred, client: 'local', tgt: 'minion1', fun: 'test.ping', full_return: true }], '/', 200);
    await post([{ ...cred, client: 'local_batch', tgt: 'minion1', fun: 'test.ping', raw: true }], '/', 200);
  }
  // Refusals: wrong password, unknown token, no permission, bad shapes around good credentials.
  for (const [, low] of everyClient({ ...USER, password: WRONG_PASSWORD })) await post([low], '/', 401);
  for (const [, low] of everyClient({ token: UNKNOWN_TOKEN })) await post([low], '/', 401);
  await post([{ ...USER, client: 'bogus', fun: 'test.ping' }], '/', 400);
  await post([{ ...USER, client: 'ssh', tgt: '*', fun: 'test.ping' }], '/', 400);
  await post([{ ...USER, client: 'local', fun: 'test.ping' }], '/', 400);
  await post([{ ...USER, client: 'local_batch', tgt: '*', fun: 'test.ping', batch: PASSWORD.slice(0, 0) + 'lots' }], '/', 400);
  await post([{ ...USER, client: 'local', tgt: '*', fun: 'test.ping', raw_shell: true }], '/', 401);
  await post([{ ...USER, client: 'runner', fun: 'test.arg' }, 'not an item'], '/', 400);
  await post({ ...USER, client: 'runner', fun: 'test.arg', kwarg: 'not an object' }, '/', 400);
  // Malformed bodies that quote the secrets, on one line and over several.
  for (const body of [
    `[{"password":"${PASSWORD}", x}]`,
    `["${PASSWORD}",\nx]`,
    `{"password":"${PASSWORD}",\n"token":"${TOKEN}"\n,,}`,
    `${PASSWORD}`,
    `[{"password":"${PASSWORD}","token":"${TOKEN}"`,
    `{"token":"${TOKEN}\u0001"}`,
    Buffer.concat([Buffer.from(`[{"password":"${PASSWORD}","x":"`), Buffer.from([0xff]), Buffer.from('"}]')]),
  ]) {
    await post(body, '/', 400);
  }
  // Over the body limit.
  await post([{ ...USER, client: 'runner', fun: 'test.arg', arg: ['x'.repeat(2 * 1024 * 1024)] }], '/', 413);
  // A 500: the master fails on a wheel call (its transport answers with a bare string).
  const has = master.wheelFunctions.has.bind(master.wheelFunctions);
  master.wheelFunctions.has = () => {
    throw new Error('boom');
  };
  await post([{ ...USER, client: 'wheel', fun: 'key.list_all' }], '/', 500);
  await post([{ token: TOKEN, client: 'wheel', fun: 'key.list_all' }], '/', 500);
  master.wheelFunctions.has = has;
  // A client that leaves while its job runs (logged with the jid).
  const leaving = new AbortController();
  const gone = request(port, { body: [{ ...USER, client: 'local', tgt: 'slow1', fun: 'test.ping' }], signal: leaving.signal }).catch(
    () => undefined,
  );
  await master.nextRequest('publish');
  await new Promise((r) => setTimeout(r, 50));
  leaving.abort();
  await gone;
  // The bus drops while a job is waited for (504), then the master is down (503).
  const waiting = post([{ token: TOKEN, client: 'local', tgt: 'slow1', fun: 'test.ping' }]);
  await master.nextRequest('publish');
  await new Promise((r) => setTimeout(r, 50));
  await master.stop();
  assert.equal((await waiting).status, 504);
  await new Promise((r) => setTimeout(r, 1100)); // past the cached "master is running"
  for (const [, low] of everyClient(USER)) await post([low], '/', 503);
  return replies;
}

function assertNoSecret(where: string, text: string): void {
  for (const secret of SECRETS) {
    const at = text.indexOf(secret);
    assert.equal(at, -1, `${where} holds a secret: ...${text.slice(Math.max(0, at - 200), at + 100)}...`);
  }
}

test('the handler: no password or token in any log line (every level) or any response', async (t) => {
  const master = await secretMaster(t);
  const { logger, lines } = recordingLogger();
  // The scenario's failed logins come from one address: the throttle is off here, and checked below.
  const handler = createHandler({
    config: master.configPath,
    logger,
    accessLog: true,
    auditLog: true,
    auditArgs: true,
    masterTimeoutMs: 500,
    authFailureLimit: 0,
  });
  const server = await serve(handler);
  t.after(async () => {
    await server.close();
    handler.close();
  });
  // A second handler with only `local` enabled: the disabled-client refusal.
  const limited = createHandler({
    config: applyMasterDefaults({ ...master.config, netapi_enable_clients: ['local'] }),
    logger,
    accessLog: true,
  });
  const limitedServer = await serve(limited);
  t.after(async () => {
    await limitedServer.close();
    limited.close();
  });

  const replies: Reply[] = [];
  for (const cred of [USER, { token: TOKEN }]) {
    for (const [, low] of everyClient(cred).slice(1)) {
      const reply = await request(limitedServer.port, { body: [low] });
      assert.equal(reply.status, 400, reply.text);
      replies.push(reply);
    }
  }
  replies.push(...(await runScenario(master, server.port)));

  await until(() => lines.some((l) => l.msg.includes('the request went away')), 3000, 'the abandoned job logged');
  assert.ok(
    lines.some((l) => l.level === 'error'),
    'the 500 was logged',
  );
  assert.ok(
    lines.some((l) => l.msg.includes('access ')),
    'access lines were logged',
  );
  const audit = lines.filter((l) => l.msg.startsWith('audit '));
  for (const client of ['local', 'local_async', 'local_subset', 'local_batch', 'runner', 'runner_async', 'wheel', 'wheel_async']) {
    assert.ok(
      audit.some((l) => l.msg.includes(` client=${client} `) && l.msg.includes(' username=(token) ')),
      `${client} by token audited`,
    );
    assert.ok(
      audit.some((l) => l.msg.includes(` client=${client} `) && l.msg.includes(' username=saltdev ')),
      `${client} by password audited`,
    );
  }
  assert.ok(
    audit.filter((l) => !l.msg.includes(' client=? ')).every((l) => l.msg.includes(' args=')),
    'audit_args: the arguments of every item that is an object are there',
  );
  assert.ok(replies.length > 60);
  for (const line of lines) assertNoSecret(`log line (${line.level})`, line.msg);
  for (const reply of replies) assertNoSecret(`response ${reply.status}`, JSON.stringify(reply.headers) + reply.text);
});

for (const format of ['text', 'json']) {
  test(`the command at --log-level debug --log-format ${format}: no password or token in its output or any response`, async (t) => {
    const master = await secretMaster(t);
    // The audit lines in a file of their own (audit_log), as well as the log: both are checked.
    const auditPath = `${master.configPath}.audit`;
    await master.writeConfig({ rest_wsgi: { ...(master.config.rest_wsgi as object), audit_log: auditPath } });
    const run = await startCommand(t, ['-c', master.configPath, '--log-level', 'debug', '--log-format', format]);
    const replies = await runScenario(master, run.port);
    await run.waitFor(/the request went away/, 3000);
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0);
    const stderr = run.stderr();
    assert.match(stderr, /status=500|"status":500/);
    assert.match(stderr, /ERROR|"level":"error"/);
    assertNoSecret('stderr', stderr);
    const auditLines = readFileSync(auditPath, 'utf8');
    assert.match(auditLines, format === 'json' ? /"client":"wheel_async"/ : / client=wheel_async /);
    assert.match(auditLines, /args=|"args":/);
    assertNoSecret('audit_log', auditLines);
    for (const reply of replies) assertNoSecret(`response ${reply.status}`, JSON.stringify(reply.headers) + reply.text);
  });
}

/**
 * Refusals of every kind, with the secrets in every field a client could
 * put them, then wrong passwords until the address is throttled (limit 5:
 * only those count); then 429s to the right password and the right token.
 */
async function throttleScenario(port: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  const post = async (body: unknown, expected: number) => {
    const reply = await request(port, { body });
    assert.equal(reply.status, expected, `${JSON.stringify(body)} → ${reply.text}`);
    replies.push(reply);
  };
  await post([{ token: UNKNOWN_TOKEN, client: 'wheel', fun: 'key.list_all' }], 401);
  await post([{ ...USER, password: WRONG_PASSWORD, token: UNKNOWN_TOKEN, client: 'local', tgt: '*', fun: 'test.ping' }], 401);
  await post([{ token: `${TOKEN}-${PASSWORD}`, client: 'local', tgt: '*', fun: 'test.ping' }], 401); // malformed
  await post([{ username: 'saltdev', password: PASSWORD, client: 'local', tgt: '*', fun: 'test.ping' }], 401); // no eauth
  await post([{ ...USER, password: WRONG_PASSWORD, client: 'runner', fun: 'test.arg' }], 401);
  await post([{ ...USER, password: WRONG_PASSWORD, client: 'wheel', fun: 'key.list_all' }], 401);
  await post([{ ...USER, password: WRONG_PASSWORD, client: 'local', tgt: '*', fun: 'test.ping' }], 401);
  await post([{ ...USER, password: WRONG_PASSWORD, client: 'runner', fun: 'test.arg', kwarg: { password: WRONG_PASSWORD } }], 401);
  await post([{ ...USER, password: WRONG_PASSWORD, client: 'local_async', tgt: '*', fun: 'test.ping' }], 401);
  await post([{ ...USER, client: 'runner', fun: 'test.arg' }], 429);
  await post([{ token: TOKEN, client: 'runner', fun: 'test.arg' }], 429);
  return replies;
}

test('the throttle of failed logins: its warning and its 429s hold no password or token', async (t) => {
  const master = await secretMaster(t);
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, accessLog: true, authFailureLimit: 5 });
  const server = await serve(handler);
  t.after(async () => {
    await server.close();
    handler.close();
  });
  const replies = await throttleScenario(server.port);
  const warnings = lines.filter((l) => l.level === 'warn' && l.msg.startsWith('too many failed logins'));
  assert.equal(warnings.length, 1, JSON.stringify(lines));
  assert.match(warnings[0].msg, /tried "saltdev";/);
  for (const line of lines) assertNoSecret(`log line (${line.level})`, line.msg);
  for (const reply of replies) assertNoSecret(`response ${reply.status}`, JSON.stringify(reply.headers) + reply.text);
});

for (const format of ['text', 'json']) {
  test(`the command's throttle at --log-level debug --log-format ${format}: no password or token in its output or any response`, async (t) => {
    const master = await secretMaster(t, { auth_failure_limit: 5, auth_failure_window: 60 });
    const run = await startCommand(t, ['-c', master.configPath, '--log-level', 'debug', '--log-format', format]);
    const replies = await throttleScenario(run.port);
    await run.waitFor(/too many failed logins from 127\.0\.0\.1: 5 within 60 s/, 3000);
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).code, 0);
    const stderr = run.stderr();
    assert.match(stderr, /status=429|"status":429/);
    assertNoSecret('stderr', stderr);
    for (const reply of replies) assertNoSecret(`response ${reply.status}`, JSON.stringify(reply.headers) + reply.text);
  });
}
