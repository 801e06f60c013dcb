/**
 * The package as users get it: `npm pack` (whose prepack script builds
 * dist/), the tarball's file list, then `npm install <tarball>` in an empty
 * directory, where `npx salt-rest-wsgi --help`, `import('salt-rest-wsgi')`
 * with a real request to the master double, the node:http example and a
 * TypeScript consumer must all work. One slow test (a build and an install).
 *
 * It packs a copy of the sources in a temp dir (node_modules linked), so the
 * build never writes this checkout's dist/ while other tests run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMaster } from './support/master.js';
import { runToEnd, type Finished } from './support/command.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const PASSWORD = 'hunter2-not-in-logs';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner'] } };

type Run = Finished;

/** Run a command to its end, as an inner npm (./support/command.ts: runToEnd). */
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> =>
  runToEnd(cmd, args, { cwd, env, asInnerNpm: true });

function ok(result: Run, what: string): Run {
  assert.equal(result.code, 0, `${what} failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)));
}

test('npm pack: the tarball installs into an empty directory and gives the command and the library', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-pack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));

  // --- pack a copy of the sources (prepack builds dist/ there) ---
  const src = join(dir, 'src');
  for (const entry of [
    'lib',
    'bin',
    'scripts',
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
    'README.md',
    'LICENSE',
    'contrib',
  ]) {
    await cp(join(repoRoot, entry), join(src, entry), { recursive: true });
  }
  await symlink(join(repoRoot, 'node_modules'), join(src, 'node_modules'), 'dir');
  const packed = ok(await run('npm', ['pack', '--json', '--pack-destination', dir], src), 'npm pack');
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
  const files = info.files.map((f) => f.path).sort();

  // Only the built library and command, their declarations, the docs and the systemd unit.
  for (const file of files) {
    assert.match(
      file,
      /^(package\.json|README\.md|LICENSE|contrib\/salt-rest-wsgi\.service|dist\/lib\/.+\.(js|d\.ts)|dist\/bin\/[^/]+\.js)$/,
      `unexpected file in the tarball: ${file}`,
    );
    assert.doesNotMatch(file, /(^|\/)(test|bench|examples)\/|\.map$|\.tsbuildinfo$|(?<!\.d)\.ts$/, file);
  }
  // Every module of lib/ is there, built and declared.
  const sources = (await filesUnder(join(src, 'lib'))).filter((f) => f.endsWith('.ts'));
  assert.ok(sources.includes('index.ts'));
  for (const source of sources) {
    const base = `dist/lib/${source.slice(0, -'.ts'.length)}`;
    assert.ok(files.includes(`${base}.js`) && files.includes(`${base}.d.ts`), `${base}.js and .d.ts in the tarball`);
  }
  for (const file of ['package.json', 'README.md', 'LICENSE', 'dist/bin/salt-rest-wsgi.js', 'contrib/salt-rest-wsgi.service'])
    assert.ok(files.includes(file), file);

  const pkg = JSON.parse(await readFile(join(src, 'package.json'), 'utf8')) as {
    version: string;
    license: string;
    engines: { node: string };
    exports: Record<string, unknown>;
  };
  assert.equal(pkg.license, 'Apache-2.0');
  assert.match(await readFile(join(src, 'LICENSE'), 'utf8'), /^\s*Apache License\s+Version 2\.0, January 2004/);
  assert.equal(pkg.engines.node, '>=20');
  assert.deepEqual(pkg.exports['.'], { types: './dist/lib/index.d.ts', default: './dist/lib/index.js' });

  // --- install into an empty directory ---
  const app = join(dir, 'app');
  await mkdir(app);
  ok(await run('npm', ['install', join(dir, info.filename), '--prefer-offline', '--no-audit', '--no-fund'], app), 'npm install <tarball>');
  const installed = join(app, 'node_modules', 'salt-rest-wsgi');
  assert.ok(((await stat(join(installed, 'dist/bin/salt-rest-wsgi.js'))).mode & 0o111) !== 0, 'the command is executable');

  const help = ok(await run('npx', ['salt-rest-wsgi', '--help'], app), 'npx salt-rest-wsgi --help');
  assert.match(help.stdout, /^Usage: salt-rest-wsgi /);
  const version = ok(await run('npx', ['salt-rest-wsgi', '--version'], app), 'npx salt-rest-wsgi --version');
  assert.equal(version.stdout, `salt-rest-wsgi ${pkg.version}\n`);

  // --- the library, from its package name, against a master ---
  const master = await startMaster({ users: USERS });
  t.after(() => master.close());
  const script = `
    import('salt-rest-wsgi').then(async ({ createHandler, HttpError, NetapiClient }) => {
      const http = await import('node:http');
      const handler = createHandler({ config: JSON.parse(process.env.MASTER_OPTIONS) });
      const server = http.createServer(handler).listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      const reply = await fetch('http://127.0.0.1:' + server.address().port + '/', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ client: 'runner', fun: 'test.arg', arg: ['packed'], eauth: 'pam', username: 'saltdev', password: process.env.PASSWORD }]),
      });
      console.log(JSON.stringify({ status: reply.status, body: await reply.json(), exports: [typeof HttpError, typeof NetapiClient] }));
      server.close();
      handler.close();
    });`;
  const imported = ok(
    await run(process.execPath, ['-e', script], app, { MASTER_OPTIONS: JSON.stringify(master.config), PASSWORD }),
    'import("salt-rest-wsgi")',
  );
  assert.deepEqual(JSON.parse(imported.stdout), {
    status: 200,
    body: { return: [{ args: ['packed'], kwargs: {} }] },
    exports: ['function', 'function'],
  });

  // --- the README's node:http example, as a user would save it ---
  await cp(join(repoRoot, 'examples', 'node-http.mjs'), join(app, 'server.mjs'));
  const server = spawn(process.execPath, ['server.mjs'], {
    cwd: app,
    env: { ...process.env, SALT_MASTER_CONFIG: master.configPath, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  });
  let out = '';
  server.stdout.setEncoding('utf8');
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.on('data', (d: string) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) resolve(Number(m[1]));
    });
    server.once('exit', () => reject(new Error(`server.mjs exited: ${out}`)));
  });
  const reply = await fetch(`http://127.0.0.1:${port}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([{ client: 'runner', fun: 'test.arg', arg: ['example'], eauth: 'pam', username: 'saltdev', password: PASSWORD }]),
  });
  assert.equal(reply.status, 200);
  assert.deepEqual(await reply.json(), { return: [{ args: ['example'], kwargs: {} }] });
  server.kill('SIGTERM');
  const [code] = await once(server, 'exit');
  assert.equal(code, 0);

  // --- a TypeScript consumer: the exports map's declarations ---
  await writeFile(
    join(app, 'consumer.mts'),
    `import { createHandler, NetapiClient, HttpError, type HandlerOptions, type Lowstate, type MasterOptions, type AccessRecord } from 'salt-rest-wsgi';
const options: HandlerOptions = { config: { sock_dir: '/run/salt/master' } satisfies Partial<MasterOptions>, trustProxy: true, accessLog: (r: AccessRecord) => void r.client };
const low: Lowstate = { client: 'local', tgt: '*', fun: 'test.ping' };
const handler = createHandler(options);
const netapi: NetapiClient = handler.netapi;
export const checks = [low, netapi, HttpError];
`,
  );
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  ok(
    await run(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--target',
        'es2022',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--types',
        'node',
        '--typeRoots',
        join(repoRoot, 'node_modules', '@types'),
        'consumer.mts',
      ],
      app,
    ),
    'tsc on a consumer of the installed package',
  );
});
