/**
 * The salt-rest-wsgi command as a child process (from source, through tsx,
 * as `npm test` runs TypeScript): its stderr collected, waited on by
 * pattern, killed at the end of the test if still running. And any command
 * run to its end (runToEnd).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { readableServer } from './server-copy.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(repoRoot, 'bin', 'salt-rest-wsgi.ts');

export interface Command {
  child: ChildProcess;
  /** Address and port from the "listening on" line. */
  host: string;
  port: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first match of `re` in stderr (rejects after `ms`, or if the process exits first). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start the command with `args` and wait until it listens (its port from the
 * "listening on" line). `runAs`: a user name it runs as, through setpriv
 * (which execs, so the child is the server itself and killing it kills the server),
 * from a copy that user can read (test/support/server-copy.ts).
 */
export async function startCommand(
  t: { after(fn: () => unknown): void },
  args: string[],
  env: Record<string, string | undefined> = {},
  runAs?: string,
): Promise<Command> {
  // Another user may not reach the clone (under /root, say): it runs a bundled copy it can read.
  const bin = runAs === undefined ? undefined : await readableServer();
  const command = bin === undefined ? [process.execPath, '--import', 'tsx', BIN, ...args] : [process.execPath, bin, ...args];
  const asUser = runAs === undefined ? [] : asUserArgs(runAs);
  const [file, ...argv] = [...asUser, ...command];
  const child = spawn(file, argv, {
    cwd: bin === undefined ? repoRoot : dirname(bin),
    env: { ...process.env, SALT_MASTER_CONFIG: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let err = '';
  const waiters = new Set<() => void>();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const w of waiters) w();
  });
  child.stdout!.resume();
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal })) as Command['exited'];
  const waitFor = (re: RegExp, ms = 10_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
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
        // Let the last stderr data in first.
        setImmediate(() => {
          check();
          done();
          reject(new Error(`exited before ${re}:\n${err}`));
        });
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
  const [, host, port] = await waitFor(/listening on https?:\/\/([^ ]+):(\d+)\//);
  return { child, host, port: Number(port), stderr: () => err, waitFor, exited };
}

/** The setpriv prefix that runs a command as `user` (setpriv execs: the child is the command itself). */
export function asUserArgs(user: string): string[] {
  return ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--'];
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Added to (or, undefined, taken out of) the environment. */
  env?: Record<string, string | undefined>;
  /**
   * An npm run inside the tests: npm's own variables (set under `npm test`)
   * are left out, so that it acts as in a fresh shell, and it runs at low
   * priority (inherited by what it starts): an install is CPU-heavy, and the
   * CPU goes to the timing-sensitive test files running beside it.
   */
  asInnerNpm?: boolean;
}

/** Run `file` with `args` to its end: exit code, stdout, stderr. */
export async function runToEnd(file: string, args: string[], options: RunOptions = {}): Promise<Finished> {
  const base = options.asInnerNpm
    ? Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') && k !== 'INIT_CWD'))
    : process.env;
  const child = spawn(file, args, { cwd: options.cwd ?? repoRoot, env: { ...base, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (options.asInnerNpm && child.pid !== undefined) {
    try {
      setPriority(child.pid, 15);
    } catch {
      // already gone, or not allowed: only slower neighbours
    }
  }
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}
