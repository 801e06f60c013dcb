/**
 * What Salt's own NetapiClient (salt/netapi/__init__.py) answers on a real
 * master set up by saltenv.sh: test/support/salt_netapi.py, run with
 * Debian's /usr/bin/python3 and the master's Salt source on PYTHONPATH
 * ($SALTENV/src, and $SALTENV/pylib for the modules Debian lacks), reading
 * the master's config, as root as the master runs.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'salt_netapi.py');
const PYTHON = '/usr/bin/python3';

/** One lowstate's outcome in Salt: its return, or the exception it raised. */
export interface SaltOutcome {
  return?: unknown;
  error?: { type: string; message: string };
  seconds: number;
}

/** The Salt source beside a saltenv.sh master config ($SALTENV/etc/salt/master), or why there is none. */
export function saltSourceOf(configPath: string): { pythonPath: string } | { missing: string } {
  const env = path.resolve(path.dirname(configPath), '..', '..');
  const src = path.join(env, 'src');
  if (!existsSync(PYTHON)) return { missing: `${PYTHON} is not installed` };
  if (!existsSync(path.join(src, 'salt', 'netapi', '__init__.py'))) return { missing: `no Salt source at ${src}` };
  return { pythonPath: [src, path.join(env, 'pylib')].join(path.delimiter) };
}

/** Run `lows` one after the other through Salt's NetapiClient on the master of `configPath`. */
export function saltNetapi(configPath: string, lows: Array<Record<string, unknown>>, timeoutMs = 170_000): Promise<SaltOutcome[]> {
  const source = saltSourceOf(configPath);
  if ('missing' in source) return Promise.reject(new Error(source.missing));
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYTHON,
      [SCRIPT, configPath],
      // A Salt call that never ends (its batch can loop forever) is ended after `timeoutMs`.
      { env: { ...process.env, PYTHONPATH: source.pythonPath }, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${SCRIPT} failed: ${err.message}\n${stderr.slice(-2000)}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as SaltOutcome[]);
        } catch {
          reject(new Error(`${SCRIPT} wrote no JSON: ${stdout.slice(-500)}\n${stderr.slice(-2000)}`));
        }
      },
    );
    child.stdin?.end(JSON.stringify(lows));
  });
}
