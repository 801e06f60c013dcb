/**
 * The salt-rest-wsgi command, run as a user runs it: a child process on a
 * temp master config, real HTTP to it, stopped with a signal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(repoRoot, 'bin', 'salt-rest-wsgi.ts');

interface Run {
  child: ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first match of `re` in stderr (rejects after `ms`). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The command from source through tsx, as `npm test` runs TypeScript. */
function start(args: string[], env: Record<string, string | undefined> = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], {
    cwd: repoRoot,
    env: { ...process.env, SALT_MASTER_CONFIG: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  const waiters = new Set<() => void>();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const w of waiters) w();
  });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal })) as Run['exited'];
  return {
    child,
    stderr: () => err,
    exited,
    waitFor(re, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = err.match(re);
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${re} in stderr within ${ms} ms:\n${err}`));
        }, ms);
        const gone = () => {
          done();
          reject(new Error(`exited before ${re}:\n${err}\n${out}`));
        };
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', gone);
        };
        waiters.add(check);
        child.once('exit', gone);
        check();
      });
    },
  };
}

/** Run to completion: exit code, stdout, stderr. */
async function runToEnd(args: string[], env: Record<string, string | undefined> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], {
    cwd: repoRoot,
    env: { ...process.env, SALT_MASTER_CONFIG: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = await once(child, 'close');
  return { code: code as number, stdout, stderr };
}

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-bin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('--help and --version', async () => {
  const help = await runToEnd(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: salt-rest-wsgi \[-c\|--config FILE\] \[--port N\] \[--host ADDR\] \[--log-level LEVEL\]/);
  assert.match(help.stdout, /rest_wsgi:/);
  const version = await runToEnd(['--version']);
  assert.equal(version.code, 0);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout, `salt-rest-wsgi ${pkg.version}\n`);
});

test('bad usage exits 2 with one line', async () => {
  for (const args of [['--bogus'], ['--port', 'eighty'], ['--port', '70000'], ['--log-level', 'loud'], ['extra']]) {
    const run = await runToEnd(args);
    assert.equal(run.code, 2, args.join(' '));
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /^salt-rest-wsgi: /);
  }
});

test('a missing config file exits 2 naming it', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope', 'master');
  const run = await runToEnd(['-c', missing, '--port', '0']);
  assert.equal(run.code, 2);
  assert.equal(run.stderr, `salt-rest-wsgi: Cannot read master config ${missing}: no such file\n`);
  const viaEnv = await runToEnd(['--port', '0'], { SALT_MASTER_CONFIG: missing });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /no such file/);
});

test('no port anywhere: exit 2 saying where to put it', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'master');
  await writeFile(config, `sock_dir: ${join(dir, 'sock')}\n`);
  const run = await runToEnd(['-c', config]);
  assert.equal(run.code, 2);
  assert.equal(run.stderr, `salt-rest-wsgi: no port configured: add "rest_wsgi: {port: 8001}" to ${config}, or pass --port\n`);
  // SALT_MASTER_CONFIG is honoured as Salt does, and -c takes Salt's config directory too.
  const viaEnv = await runToEnd([], { SALT_MASTER_CONFIG: config });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, new RegExp(`to ${config}, or pass --port`));
  const viaDir = await runToEnd(['-c', dir]);
  assert.match(viaDir.stderr, new RegExp(`to ${config}, or pass --port`));
});
