/**
 * The examples/ files run as the README's Embedding says, against the demo
 * (issue 25): `npm run demo` (here on a free port, writing its .demo.env to
 * a temp file with --write-env), then `node --env-file=<that file>
 * examples/<name>.mjs`, each answering a request (or, the dispatcher, printing
 * its result). `import ... from 'salt-rest-wsgi'` loads this checkout's
 * sources (test/support/import-source.mjs), as in test/embedding.test.ts;
 * the installed package resolves the name to dist/. Without a master config,
 * or the dispatcher without its user, each says in one line what to set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, runToEnd } from './support/command.js';
import { request } from './support/http.js';

const IMPORT_SOURCE = join(repoRoot, 'test', 'support', 'import-source.mjs');
type After = { after(fn: () => unknown): void };

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `npm run demo -- --port P --write-env FILE`, until it has written FILE and listens; stopped (Ctrl-C to its group) after the test. */
async function startDemo(t: After): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-examples-'));
  const envFile = join(dir, 'demo.env');
  const demo = spawn('npm', ['run', 'demo', '--', '--port', String(await freePort()), '--write-env', envFile], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(demo, 'exit');
  t.after(async () => {
    if (demo.exitCode === null && demo.signalCode === null) {
      process.kill(-demo.pid!, 'SIGINT');
      await exited;
    }
    assert.ok(!existsSync(envFile), 'the demo removes its env file when it stops');
    await rm(dir, { recursive: true, force: true });
  });
  let out = '';
  demo.stderr.resume();
  await new Promise<void>((resolve, reject) => {
    demo.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('Ctrl-C to stop both')) resolve();
    });
    demo.once('exit', () => reject(new Error(`the demo exited:\n${out}`)));
  });
  assert.match(out, new RegExp(`examples +node --env-file=${envFile} examples/node-http\\.mjs`));
  return envFile;
}

/** `node --env-file=FILE examples/<name>` (PORT from `env` wins over the file's, as Node gives the environment precedence). */
function spawnExample(name: string, envFile: string, env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', '--import', IMPORT_SOURCE, `--env-file=${envFile}`, join('examples', name)], {
    cwd: repoRoot,
    env: { ...process.env, SALT_MASTER_CONFIG: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Start a server example; its port from the line it prints (Fastify: "Server listening at"). */
async function startServerExample(t: After, name: string, envFile: string): Promise<number> {
  const child = spawnExample(name, envFile, { PORT: '0' });
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = await gone;
    assert.equal(code, 0, `${name} exits 0 on SIGTERM`);
  });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise<number>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = out.match(/listening (?:on|at) http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', () => reject(new Error(`${name} exited:\n${out}\n${err}`)));
  });
}

const envOf = (file: string) =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

test('each example runs against the demo with the one command the README gives', { timeout: 120_000 }, async (t) => {
  const envFile = await startDemo(t);
  const env = envOf(envFile);
  assert.equal(env.PORT, '8002', 'the examples listen beside the demo');
  assert.ok(existsSync(env.SALT_MASTER_CONFIG));
  const ping = [
    { eauth: env.SALT_EAUTH, username: env.SALT_USER, password: env.SALT_PASSWORD, client: 'local', tgt: 'minion1', fun: 'test.ping' },
  ];
  for (const [name, path] of [
    ['node-http.mjs', '/'],
    ['express.mjs', '/salt'],
    ['fastify.mjs', '/salt'],
  ]) {
    await t.test(name, async (t) => {
      const port = await startServerExample(t, name, envFile);
      const reply = await request(port, { path, body: ping });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(reply.json, { return: [{ minion1: true }] });
    });
  }
  await t.test('dispatcher.mjs', async () => {
    const child = spawnExample('dispatcher.mjs', envFile);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
    // ghost1, whose minion is down, is false after the demo's timeout + gather_job_timeout.
    assert.deepEqual(JSON.parse(out), { minion1: true, minion2: true, ghost1: false });
  });
});

test('without a master config each example says in one line what to set; the dispatcher names the variables it reads', async () => {
  const missing = join(tmpdir(), 'salt-rest-wsgi-no-such-dir', 'master');
  const source = ['--import', 'tsx', '--import', IMPORT_SOURCE];
  const user = { SALT_USER: 'saltdev', SALT_PASSWORD: 'x' };
  const runs = await Promise.all(
    ['node-http.mjs', 'express.mjs', 'fastify.mjs', 'dispatcher.mjs'].map((name) =>
      runToEnd(process.execPath, [...source, join('examples', name)], { env: { SALT_MASTER_CONFIG: missing, PORT: '0', ...user } }),
    ),
  );
  for (const run of runs) {
    assert.equal(run.code, 2, run.stderr);
    assert.equal(run.stderr, `Cannot read master config ${missing}: no such file; set SALT_MASTER_CONFIG to the master's config file\n`);
  }
  const noUser = await runToEnd(process.execPath, [...source, join('examples', 'dispatcher.mjs')], {
    env: { SALT_MASTER_CONFIG: missing, SALT_USER: undefined, SALT_PASSWORD: undefined },
  });
  assert.equal(noUser.code, 2);
  assert.equal(noUser.stderr, 'set SALT_USER and SALT_PASSWORD (and SALT_EAUTH, default pam) to an eauth user of the master\n');
});
