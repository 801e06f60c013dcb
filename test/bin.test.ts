/**
 * The salt-rest-wsgi command, run as a user runs it: a child process on a
 * temp master config, real HTTP to it, stopped with a signal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { request, type Reply } from './support/http.js';
import { BIN, repoRoot, runToEnd, startCommand } from './support/command.js';
import { createLogger, formatAccess } from '../lib/log.js';

const PASSWORD = 'hunter2-not-in-logs';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };

/** Run the command to completion: exit code, stdout, stderr. */
function runCommand(args: string[], env: Record<string, string | undefined> = {}) {
  return runToEnd(process.execPath, ['--import', 'tsx', BIN, ...args], { env: { SALT_MASTER_CONFIG: undefined, ...env } });
}

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-bin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('--help and --version', async () => {
  const [help, version] = await Promise.all([runCommand(['--help']), runCommand(['--version'])]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: salt-rest-wsgi \[-c\|--config FILE\] \[options\]/);
  assert.match(help.stdout, /rest_wsgi:/);
  assert.equal(version.code, 0);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout, `salt-rest-wsgi ${pkg.version}\n`);
});

test('-V and --versions-report: the version, the Salt lines and transports it speaks, its dependencies', async () => {
  const [short, long] = await Promise.all([runCommand(['-V']), runCommand(['--versions-report'])]);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const run of [short, long]) {
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    assert.match(run.stdout, new RegExp(`^salt-rest-wsgi ${pkg.version.replaceAll('.', '\\.')}\n`));
    assert.match(
      run.stdout,
      /\n {6}3007: checked against 3007\.1 masters \(zeromq, tcp, ws\)\n {6}3006: checked against 3006\.0 masters \(zeromq\)\n/,
    );
    assert.match(run.stdout, /\nTransports: zeromq, tcp, ws \(/);
    assert.match(run.stdout, new RegExp(`Node\\.js: ${process.versions.node.replaceAll('.', '\\.')}\n`));
    assert.match(run.stdout, /msgpackr: \d+\.\d+\.\d+ \((msgpackr-extract in use|no msgpackr-extract: strings decoded in JavaScript)\)\n/);
    assert.match(run.stdout, /\n {8}ws: \d+\.\d+\.\d+\n {6}yaml: \d+\.\d+\.\d+\n$/);
  }
  assert.equal(short.stdout, long.stdout);
  // Without the native extractor (msgpackr's switch): said so.
  const js = await runCommand(['-V'], { MSGPACKR_NATIVE_ACCELERATION_DISABLED: 'true' });
  assert.match(js.stdout, /msgpackr: [\d.]+ \(no msgpackr-extract: strings decoded in JavaScript\)/);
  const help = await runCommand(['--help']);
  assert.match(help.stdout, /-V, --versions-report/);
});

test('bad usage exits 2 with one line', async () => {
  const cases = [['--bogus'], ['--port', 'eighty'], ['--port', '70000'], ['--log-level', 'loud'], ['extra']];
  const runs = await Promise.all(cases.map((args) => runCommand(args)));
  for (const [i, run] of runs.entries()) {
    assert.equal(run.code, 2, cases[i].join(' '));
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /^salt-rest-wsgi: /);
  }
});

test('a missing config file exits 2 naming it', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope', 'master');
  const [run, viaEnv] = await Promise.all([
    runCommand(['-c', missing, '--port', '0']),
    runCommand(['--port', '0'], { SALT_MASTER_CONFIG: missing }),
  ]);
  assert.equal(run.code, 2);
  assert.equal(run.stderr, `salt-rest-wsgi: Cannot read master config ${missing}: no such file\n`);
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /no such file/);
});

test('no port anywhere: exit 2 saying where to put it', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'master');
  await writeFile(config, `sock_dir: ${join(dir, 'sock')}\n`);
  // SALT_MASTER_CONFIG is honoured as Salt does, and -c takes Salt's config directory too.
  const [run, viaEnv, viaDir] = await Promise.all([
    runCommand(['-c', config]),
    runCommand([], { SALT_MASTER_CONFIG: config }),
    runCommand(['-c', dir]),
  ]);
  assert.equal(run.code, 2);
  assert.equal(run.stderr, `salt-rest-wsgi: no port configured: add "rest_wsgi: {port: 8001}" to ${config}, or pass --port\n`);
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, new RegExp(`to ${config}, or pass --port`));
  assert.match(viaDir.stderr, new RegExp(`to ${config}, or pass --port`));
});

/** What `curl -sS -H 'Content-Type: application/json' -d '<json>' host:port` does. */
function curl(port: number, body?: unknown, path = '/'): Promise<Reply> {
  return request(port, { method: body === undefined ? 'GET' : 'POST', path, body });
}

async function masterWithApi(
  t: { after(fn: () => unknown): void },
  config: Record<string, unknown> = { rest_wsgi: { port: 0 } },
): Promise<SaltMasterDouble> {
  const master = await startMaster({ users: USERS, config });
  t.after(() => master.close());
  return master;
}

/** Start the command; its port from the "listening on" line; killed at the end if still running. */
async function startServing(t: { after(fn: () => unknown): void }, args: string[], env: Record<string, string | undefined> = {}) {
  const run = await startCommand(t, args, env);
  return { run, host: run.host, port: run.port };
}

test("serves the master config's rest_wsgi port, logs each request, stops on SIGTERM with exit 0", async (t) => {
  const master = await masterWithApi(t);
  const { run, host, port } = await startServing(t, ['-c', master.configPath]);
  assert.equal(host, '127.0.0.1');
  assert.doesNotMatch(run.stderr(), /master not running/);

  const reply = await curl(
    port,
    [{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['hello'], kwarg: { a: 1 } }],
    '/?password=in-the-query',
  );
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.equal(reply.text, '{"return":[{"args":["hello"],"kwargs":{"a":1}}]}');
  assert.equal(Number(reply.headers['content-length']), Buffer.byteLength(reply.text));

  const get = await curl(port, undefined, '/anything');
  assert.equal(get.status, 200);

  // One access line per request: method, path (no query string), status, bytes, duration, client, request id.
  await run.waitFor(/path=\/anything/);
  const access = run
    .stderr()
    .split('\n')
    .filter((l) => l.includes(' access '));
  assert.equal(access.length, 2, run.stderr());
  assert.match(
    access[0],
    new RegExp(
      `INFO  access method=POST path=/ status=200 bytes=${reply.text.length} duration_ms=\\d+\\.\\d client=127\\.0\\.0\\.1 request_id=[0-9a-f-]{36}$`,
    ),
  );
  assert.match(
    access[1],
    /access method=GET path=\/anything status=200 bytes=\d+ duration_ms=[\d.]+ client=127\.0\.0\.1 request_id=[0-9a-f-]{36}$/,
  );

  run.child.kill('SIGTERM');
  const { code } = await run.exited;
  assert.equal(code, 0);
  assert.match(run.stderr(), /SIGTERM: stopping/);
  assert.match(run.stderr(), /stopped\n$/);
  // Never a password, whatever the path or body held.
  assert.ok(!run.stderr().includes(PASSWORD) && !run.stderr().includes('in-the-query'), run.stderr());
});

test('SALT_MASTER_CONFIG is honoured; flags override rest_wsgi port and host', async (t) => {
  // An address this machine doesn't have: only the --host override makes it start.
  const master = await masterWithApi(t, { rest_wsgi: { port: 1, host: '192.0.2.1' } });
  const { run, host } = await startServing(t, ['--port', '0', '--host', '127.0.0.1', '--log-level', 'debug'], {
    SALT_MASTER_CONFIG: master.configPath,
  });
  assert.equal(host, '127.0.0.1');
  assert.match(run.stderr(), new RegExp(`master config ${master.configPath}`));
  run.child.kill('SIGINT');
  assert.equal((await run.exited).code, 0);
});

test('starts while the master is down, says so in one line, and answers 503', async (t) => {
  const master = await masterWithApi(t);
  await master.stop();
  const { run, port } = await startServing(t, ['-c', master.configPath]);
  await run.waitFor(/master not running.*\n/);
  const warnings = run
    .stderr()
    .split('\n')
    .filter((l) => l.includes('master not running'));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], new RegExp(`WARN  master not running at ${master.sockDir}: requests get 503 until it starts$`));

  const reply = await curl(port, [{ ...CRED, client: 'runner', fun: 'test.arg' }]);
  assert.equal(reply.status, 503);
  assert.equal(reply.text, '{"return":"Salt Master is not available."}');
  await run.waitFor(/ access method=POST path=\/ status=503 /);

  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
});

test('SIGTERM during a request: the request is answered, then exit 0; a second signal exits at once', async (t) => {
  const master = await masterWithApi(t);
  const { run, port } = await startServing(t, ['-c', master.configPath]);

  // test.sleep 4 takes 200 ms on the double (sleepScale 0.05).
  const started = master.nextRequest('runner', 5000);
  const pending = curl(port, [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 4 }]);
  await started;
  run.child.kill('SIGTERM');
  const reply = await pending;
  assert.equal(reply.status, 200);
  assert.equal(reply.text, '{"return":[true]}');
  assert.equal(reply.headers.connection, 'close');
  assert.equal((await run.exited).code, 0);

  // A job that would run for 30 s: the second signal doesn't wait for it.
  const second = await startServing(t, ['-c', master.configPath]);
  const longStarted = master.nextRequest('runner', 5000);
  const abandoned = curl(second.port, [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600 }]).catch((err: Error) => err);
  await longStarted;
  second.run.child.kill('SIGTERM');
  await second.run.waitFor(/SIGTERM: stopping after 1 running request/);
  second.run.child.kill('SIGTERM');
  const { code } = await second.run.exited;
  assert.equal(code, 1);
  assert.match(second.run.stderr(), /SIGTERM again: exiting now/);
  assert.ok((await abandoned) instanceof Error);
});

test('a request Node cannot parse gets a JSON 400', async (t) => {
  const master = await masterWithApi(t);
  const { run, port } = await startServing(t, ['-c', master.configPath]);
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
    let text = '';
    socket.setEncoding('utf8').on('data', (d: string) => (text += d));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(raw, /\r\nContent-Type: application\/json\r\n/);
  assert.ok(raw.endsWith('\r\n\r\n{"return":"400: Bad Request"}'), raw);
  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
});

test('log lines: level filter, one line per message, access lines without query or control characters', () => {
  const written: string[] = [];
  const logger = createLogger({ level: 'warn', stream: { write: (line: string) => written.push(line) }, timestamps: false });
  logger.debug('no');
  logger.info('no');
  logger.warn('two\nlines\r\u0000');
  logger.error('error');
  assert.deepEqual(written, ['WARN  two\\nlines\\r\\u0000\n', 'ERROR error\n']);
  assert.equal(
    formatAccess({ method: 'POST', url: '/a b?token=abc', status: 200, bytes: 10, durationMs: 1.25, client: '::1' }),
    'access method=POST path="/a b" status=200 bytes=10 duration_ms=1.3 client=::1',
  );
  assert.equal(
    formatAccess({ method: 'GET', url: '/x\ny', status: 405, bytes: 0, durationMs: 0, client: '127.0.0.1' }),
    'access method=GET path="/x\\ny" status=405 bytes=0 duration_ms=0.0 client=127.0.0.1',
  );
});

test('a port already in use: exit 1 with one line', async (t) => {
  const master = await masterWithApi(t);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const run = await runCommand(['-c', master.configPath, '--port', String(port)]);
  assert.equal(run.code, 1);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0], new RegExp(`ERROR cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE$`));
});
