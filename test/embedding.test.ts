/**
 * Embedding (issue 7): the examples/ files, which the README's "Embedding"
 * section shows verbatim, run as users run them (node:http, Express,
 * Fastify, the dispatcher without HTTP) against the master double; then the
 * handler in-process under node:https, behind Express body parsers, two
 * handlers on two masters, the access log with and without trustProxy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { selfSignedCert } from './support/tls.js';
import { createHandler, type AccessRecord, type Logger, type RestWsgiHandler } from '../lib/index.js';
import { GET_MESSAGE } from '../lib/http/handler.js';
import { UNSUPPORTED_TYPE_MESSAGE } from '../lib/http/body-formats.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLES = join(repoRoot, 'examples');
/** Makes `import ... from 'salt-rest-wsgi'` in an example load this checkout's lib/ (see the file). */
const IMPORT_SOURCE = join(repoRoot, 'test', 'support', 'import-source.mjs');

const PASSWORD = 'hunter2-not-in-logs';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
/** A runner call whose reply shows an integer past 2^53 kept exact: the handler read the body itself. */
const ARG_BODY = `[{"eauth":"pam","username":"saltdev","password":"${PASSWORD}","client":"runner","fun":"test.arg","arg":[18446744073709551615]}]`;
const ARG_REPLY = '{"return":[{"args":[18446744073709551615],"kwargs":{}}]}';
const GET_REPLY = JSON.stringify({ return: GET_MESSAGE });

type After = { after(fn: () => unknown): void };

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

interface RequestSpec {
  method?: string;
  path?: string;
  body?: string | Buffer;
  headers?: Record<string, string | number>;
  /** https: trust this CA. */
  ca?: Buffer;
}

function request(port: number, spec: RequestSpec = {}): Promise<Reply> {
  const method = spec.method ?? (spec.body === undefined ? 'GET' : 'POST');
  const headers: Record<string, string | number> = {
    ...(spec.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(spec.body) }),
    ...spec.headers,
  };
  const options = { host: '127.0.0.1', port, method, path: spec.path ?? '/', headers, agent: false as const };
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    };
    const req = spec.ca ? https.request({ ...options, ca: spec.ca }, onResponse) : http.request(options, onResponse);
    req.on('error', reject);
    req.end(spec.body);
  });
}

async function masterFor(t: After, options: Parameters<typeof startMaster>[0] = {}): Promise<SaltMasterDouble> {
  const master = await startMaster({ users: USERS, ...options });
  t.after(() => master.close());
  return master;
}

interface Example {
  child: ChildProcess;
  port: number;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then the exit: the example closes its server and handler and must end by itself. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnExample(name: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', '--import', IMPORT_SOURCE, join(EXAMPLES, name)], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Start examples/<name> on a free port against `master`; its port from the line it prints. */
async function startExample(t: After, name: string, master: SaltMasterDouble): Promise<Example> {
  const child = spawnExample(name, { SALT_MASTER_CONFIG: master.configPath, PORT: '0' });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal })) as ReturnType<Example['stop']>;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 20 s:\n${out}\n${err}`)), 20_000);
    child.stdout!.on('data', (d: string) => {
      out += d;
      // Ours print "listening on http://...", Fastify logs "Server listening at http://...".
      const m = out.match(/listening (?:on|at) http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`${name} exited:\n${out}\n${err}`));
    });
  });
  return {
    child,
    port,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

function assertJson(reply: Reply, status: number, text: string): void {
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.equal(reply.text, text);
}

/** The ```js blocks of the README's "## Embedding" section, each with the `examples/...` file named before it. */
function embeddingSnippets(readme: string): { file: string; code: string }[] {
  const start = readme.indexOf('\n## Embedding\n');
  assert.ok(start >= 0, 'README has an "## Embedding" section');
  const next = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, next < 0 ? undefined : next);
  const snippets: { file: string; code: string }[] = [];
  const block = /```js\n([\s\S]*?)```/g;
  for (let m: RegExpExecArray | null; (m = block.exec(section)); ) {
    const before = section.slice(0, m.index);
    const named = [...before.matchAll(/`examples\/([\w.-]+)`/g)].pop();
    assert.ok(named, `a js block in Embedding names no examples/ file before it:\n${m[1]}`);
    snippets.push({ file: named[1], code: m[1] });
  }
  return snippets;
}

test('the README Embedding snippets are the examples/ files, byte for byte, and every example is shown', async () => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const snippets = embeddingSnippets(readme);
  const files = (await readdir(EXAMPLES)).filter((f) => f.endsWith('.mjs')).sort();
  assert.deepEqual(snippets.map((s) => s.file).sort(), files);
  for (const { file, code } of snippets) {
    assert.equal(code, await readFile(join(EXAMPLES, file), 'utf8'), `README snippet differs from examples/${file}`);
  }
});

test('examples/node-http.mjs: serves any path, logs through console, exits on SIGTERM once closed', async (t) => {
  const master = await masterFor(t);
  const app = await startExample(t, 'node-http.mjs', master);
  assertJson(await request(app.port, { body: ARG_BODY, path: '/?password=in-the-query' }), 200, ARG_REPLY);
  assertJson(await request(app.port, { path: '/anything' }), 200, GET_REPLY);
  assertJson(
    await request(app.port, { body: ARG_BODY, headers: { 'content-type': 'application/xml' } }),
    415,
    JSON.stringify({ return: UNSUPPORTED_TYPE_MESSAGE }),
  );

  // Exit 0 without process.exit: server.close() and handler.close() left nothing open.
  assert.deepEqual(await app.stop(), { code: 0, signal: null });
  const access = app
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('access '));
  assert.equal(access.length, 3, app.stdout());
  assert.match(
    access[0],
    /^access method=POST path=\/ status=200 bytes=56 duration_ms=[\d.]+ client=127\.0\.0\.1 request_id=[0-9a-f-]{36}$/,
  );
  assert.match(access[2], /^access method=POST path=\/ status=415 /);
  assert.ok(!app.stdout().includes(PASSWORD) && !app.stdout().includes('in-the-query'), app.stdout());
});

test('examples/express.mjs: mounted at /salt, any path under it, never calls next', async (t) => {
  const master = await masterFor(t);
  const app = await startExample(t, 'express.mjs', master);
  assertJson(await request(app.port, { body: ARG_BODY, path: '/salt' }), 200, ARG_REPLY);
  assertJson(await request(app.port, { body: ARG_BODY, path: '/salt/deeper/path?token=in-the-query' }), 200, ARG_REPLY);
  assertJson(await request(app.port, { path: '/salt/' }), 200, GET_REPLY);
  const dele = await request(app.port, { method: 'DELETE', path: '/salt' });
  assertJson(dele, 405, '{"return":"405: Method Not Allowed"}');
  assert.equal(dele.headers.allow, 'GET, HEAD, POST');
  // Outside the mount path Express answers (its own 404): the handler took only /salt.
  const outside = await request(app.port, { body: ARG_BODY, path: '/elsewhere' });
  assert.equal(outside.status, 404);
  assert.equal(master.itemRequests.filter((r) => r.cmd === 'runner').length, 2);

  assert.deepEqual(await app.stop(), { code: 0, signal: null });
  const access = app
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('access '));
  assert.equal(access.length, 4, app.stdout());
  // The path the client asked for (Express's originalUrl), never the query string.
  assert.match(access[1], /^access method=POST path=\/salt\/deeper\/path status=200 /);
  assert.ok(!app.stdout().includes(PASSWORD) && !app.stdout().includes('in-the-query'), app.stdout());
});

test('examples/fastify.mjs: raw request and response under /salt, the handler reads the body, pino as logger', async (t) => {
  const master = await masterFor(t);
  const app = await startExample(t, 'fastify.mjs', master);
  assertJson(await request(app.port, { body: ARG_BODY, path: '/salt' }), 200, ARG_REPLY);
  assertJson(await request(app.port, { body: ARG_BODY, path: '/salt/x/y' }), 200, ARG_REPLY);
  assertJson(await request(app.port, { path: '/salt' }), 200, GET_REPLY);
  // Fastify parsed nothing: a body it would refuse (no JSON) or cap (its own 1 MiB
  // limit) gets the handler's answers, in the handler's shape.
  const notJson = await request(app.port, { body: 'not json', path: '/salt' });
  assert.equal(notJson.status, 400);
  assert.match(notJson.text, /^\{"return":"400: /);
  assertJson(
    await request(app.port, { body: Buffer.alloc(2 << 20, 0x20), path: '/salt' }),
    413,
    '{"return":"413: Request body too large"}',
  );
  assertJson(
    await request(app.port, { body: ARG_BODY, path: '/salt', headers: { 'content-type': 'application/xml' } }),
    415,
    JSON.stringify({ return: UNSUPPORTED_TYPE_MESSAGE }),
  );
  const outside = await request(app.port, { path: '/elsewhere' });
  assert.equal(outside.status, 404);
  assert.notEqual(outside.text, GET_REPLY);

  assert.deepEqual(await app.stop(), { code: 0, signal: null });
  // pino's JSON lines; never the password.
  assert.match(app.stdout(), /"msg":"Server listening at http:\/\/127\.0\.0\.1:\d+"/);
  assert.ok(!app.stdout().includes(PASSWORD), app.stdout());
});

test('examples/dispatcher.mjs: a lowstate item run without HTTP', async (t) => {
  const master = await masterFor(t, { minions: [{ id: 'minion1' }, { id: 'minion2' }] });
  const child = spawnExample('dispatcher.mjs', { SALT_MASTER_CONFIG: master.configPath, SALT_USER: 'saltdev', SALT_PASSWORD: PASSWORD });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, err);
  assert.deepEqual(JSON.parse(out), { minion1: true, minion2: true });
  assert.equal(master.executed.filter((e) => e.kind === 'publish' && e.fun === 'test.ping').length, 1);
});

test('examples/dispatcher.mjs: a wrong password prints the refusal (status and message), exit 1, no stack', async (t) => {
  const master = await masterFor(t, { minions: [{ id: 'minion1' }] });
  const child = spawnExample('dispatcher.mjs', { SALT_MASTER_CONFIG: master.configPath, SALT_USER: 'saltdev', SALT_PASSWORD: 'wrong' });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = await once(child, 'exit');
  assert.equal(code, 1, err);
  assert.equal(out, '');
  assert.equal(err, 'refused: 401 Authentication error occurred.\n');
  assert.equal(master.executed.length, 0);
});

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

async function serveHandler(t: After, handler: http.RequestListener, server = http.createServer()): Promise<number> {
  server.on('request', handler);
  const port = await listen(server);
  t.after(() => closeServer(server));
  return port;
}

test('node:https: the handler as is, over real TLS', async (t) => {
  const master = await masterFor(t);
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { key, cert } = selfSignedCert(dir);
  const handler = createHandler({ config: master.configPath });
  t.after(() => handler.close());
  const port = await serveHandler(t, handler, https.createServer({ key, cert }));
  assertJson(await request(port, { body: ARG_BODY, ca: cert }), 200, ARG_REPLY);
  assertJson(await request(port, { ca: cert }), 200, GET_REPLY);
});

test('Express body parsers in front: req.body is used when they read the body, the stream when they skipped it', async (t) => {
  const master = await masterFor(t);
  const handler = createHandler({ config: master.configPath });
  t.after(() => handler.close());
  let nextCalled = 0;
  const afterMount: express.RequestHandler = (_req, res) => {
    nextCalled++;
    res.status(418).end();
  };

  // express.json() read and parsed it: the handler takes req.body.
  const parsed = express();
  parsed.use(express.json());
  parsed.use('/salt', handler);
  parsed.use(afterMount);
  const parsedPort = await serveHandler(t, parsed);
  const body = JSON.stringify([{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['parsed'], kwarg: { n: 1 } }]);
  assertJson(await request(parsedPort, { body, path: '/salt' }), 200, '{"return":[{"args":["parsed"],"kwargs":{"n":1}}]}');
  // A single object, as express.json() leaves it.
  assertJson(
    await request(parsedPort, { body: JSON.stringify({ ...CRED, client: 'runner', fun: 'test.arg' }), path: '/salt/x' }),
    200,
    '{"return":[{"args":[],"kwargs":{}}]}',
  );

  // express.urlencoded() skips a JSON request but still sets req.body = {}: the body is still in the stream.
  const skipped = express();
  skipped.use(express.urlencoded({ extended: false }));
  skipped.use('/salt', handler);
  skipped.use(afterMount);
  const skippedPort = await serveHandler(t, skipped);
  assertJson(await request(skippedPort, { body: ARG_BODY, path: '/salt' }), 200, ARG_REPLY);

  // express.raw() leaves a Buffer: parsed by the handler, integers exact.
  const raw = express();
  raw.use(express.raw({ type: 'application/json' }));
  raw.use('/salt', handler);
  const rawPort = await serveHandler(t, raw);
  assertJson(await request(rawPort, { body: ARG_BODY, path: '/salt' }), 200, ARG_REPLY);

  assert.equal(nextCalled, 0);
});

test('two handlers in one process talk to two different masters; close() releases one without touching the other', async (t) => {
  const [alpha, beta] = await Promise.all([
    masterFor(t, { minions: [{ id: 'alpha1' }] }),
    masterFor(t, { minions: [{ id: 'beta1' }, { id: 'beta2' }] }),
  ]);
  // One from a config file, one from an object of master options.
  const onAlpha = createHandler({ config: alpha.configPath });
  const onBeta = createHandler({ config: { ...beta.config } });
  t.after(() => onAlpha.close());
  t.after(() => onBeta.close());
  const [alphaPort, betaPort] = await Promise.all([serveHandler(t, onAlpha), serveHandler(t, onBeta)]);
  const ping = JSON.stringify([{ ...CRED, client: 'local', tgt: '*', fun: 'test.ping' }]);

  const [a, b] = await Promise.all([request(alphaPort, { body: ping }), request(betaPort, { body: ping })]);
  assertJson(a, 200, '{"return":[{"alpha1":true}]}');
  assertJson(b, 200, '{"return":[{"beta1":true,"beta2":true}]}');
  assert.equal(alpha.counts.publish, 1);
  assert.equal(beta.counts.publish, 1);
  assert.equal(alpha.busClientCount, 1);
  assert.equal(beta.busClientCount, 1);

  onAlpha.close();
  await until(() => alpha.busClientCount === 0, 'alpha bus connection closed');
  assert.equal(beta.busClientCount, 1);
  assertJson(await request(betaPort, { body: ping }), 200, '{"return":[{"beta1":true,"beta2":true}]}');
  assert.equal(alpha.counts.publish, 1);
});

async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function recordingLogger(): { logger: Logger; lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (msg: string) => void lines.push({ level, msg });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

test('access log: records through a function or lines through the logger; X-Forwarded-For only with trustProxy, right-most entry', async (t) => {
  const master = await masterFor(t);
  const records: AccessRecord[] = [];
  const trusting = createHandler({ config: master.configPath, trustProxy: true, accessLog: (r) => records.push(r) });
  const { logger, lines } = recordingLogger();
  const direct = createHandler({ config: master.configPath, logger, accessLog: true });
  const quiet = recordingLogger();
  const silent = createHandler({ config: master.configPath, logger: quiet.logger });
  t.after(() => [trusting, direct, silent].forEach((h: RestWsgiHandler) => h.close()));
  const [trustingPort, directPort] = await Promise.all([serveHandler(t, trusting), serveHandler(t, direct)]);
  const forwarded = { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' };

  assertJson(await request(trustingPort, { body: ARG_BODY, path: '/a?password=x', headers: forwarded }), 200, ARG_REPLY);
  assertJson(await request(trustingPort, { path: '/b' }), 200, GET_REPLY);
  await until(() => records.length === 2, 'two access records');
  assert.equal(records[0].method, 'POST');
  assert.equal(records[0].status, 200);
  assert.equal(records[0].bytes, Buffer.byteLength(ARG_REPLY));
  assert.ok(records[0].durationMs >= 0);
  // The entry our proxy appended, not the one the client wrote.
  assert.equal(records[0].client, '203.0.113.9');
  // No header: the socket's peer.
  assert.equal(records[1].client, '127.0.0.1');

  assertJson(await request(directPort, { body: ARG_BODY, path: '/c?token=abc', headers: forwarded }), 200, ARG_REPLY);
  await until(() => lines.length === 1, 'one access line');
  assert.equal(lines[0].level, 'info');
  assert.match(
    lines[0].msg,
    /^access method=POST path=\/c status=200 bytes=56 duration_ms=[\d.]+ client=127\.0\.0\.1 request_id=[0-9a-f-]{36}$/,
  );

  // Without accessLog nothing is logged for a request.
  const silentPort = await serveHandler(t, silent);
  assertJson(await request(silentPort, { path: '/' }), 200, GET_REPLY);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(quiet.lines, []);
});
