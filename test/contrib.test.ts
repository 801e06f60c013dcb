/**
 * contrib/salt-rest-wsgi.service (issues 14, 25): it ships in the package;
 * installed as the README's Deployment says (npm pack, npm install -g), the
 * unit that came with the package is accepted by systemd as written
 * (`systemd-analyze verify`, Debian's systemd package; skipped where it is
 * missing) and its ExecStart, a bare command name, is found where npm put
 * the command. The README's Deployment shows the unit byte for byte.
 *
 * verify looks the command up on systemd's own search path (/usr/local/bin,
 * /usr/bin, ...), not $PATH, and the machine's /usr is not ours to install
 * into: so the package is installed under a scratch root, at this npm's
 * global prefix inside it (`npm prefix -g`: /usr or /usr/local), and verify
 * runs with `--root` there, beside copies of systemd's units and /bin/kill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot, runToEnd } from './support/command.js';

const UNIT = join(repoRoot, 'contrib', 'salt-rest-wsgi.service');
const SYSTEM_UNITS = '/usr/lib/systemd/system';
const hasAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

/** Why the installed unit can't be verified here, or undefined. */
function cannotVerify(): string | undefined {
  if (!hasAnalyze) return 'systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)';
  if (!existsSync(SYSTEM_UNITS) || !existsSync('/usr/bin/kill'))
    return `needs ${SYSTEM_UNITS} and /usr/bin/kill to copy into the scratch root`;
  if (!existsSync(join(repoRoot, 'dist', 'bin', 'salt-rest-wsgi.js'))) return 'dist/ is not built (npm ci builds it)';
  return undefined;
}

/** A scratch root where systemd finds its units and /bin/kill. */
async function scratchRoot(t: { after(fn: () => unknown): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-root-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'usr', 'lib', 'systemd'), { recursive: true });
  await cp(SYSTEM_UNITS, join(root, SYSTEM_UNITS), { recursive: true, verbatimSymlinks: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await copyFile('/usr/bin/kill', join(root, 'usr', 'bin', 'kill'));
  await symlink('usr/bin', join(root, 'bin')); // as on merged-/usr systems; relative, so it stays inside the root
  await mkdir(join(root, 'etc', 'systemd', 'system'), { recursive: true });
  return root;
}

const npm = (args: string[], cwd: string) => runToEnd('npm', args, { cwd, asInnerNpm: true });

test('the unit installed with the package: systemd-analyze verify accepts it, without a warning, and finds its ExecStart where npm install -g put the command', {
  timeout: 300_000,
  skip: cannotVerify() ?? false,
}, async (t) => {
  const root = await scratchRoot(t);
  const packed = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', root], repoRoot);
  assert.equal(packed.code, 0, packed.stderr);
  const [{ filename }] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [{ filename: string }];
  const globalPrefix = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).trim();
  const prefix = join(root, globalPrefix);
  const install = await npm(
    [
      'install',
      '-g',
      '--allow-scripts=msgpackr-extract',
      '--prefix',
      prefix,
      join(root, filename),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    root,
  );
  assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);

  // As the README says: copied from the installed package to /etc/systemd/system/.
  const installedRoot = execFileSync('npm', ['root', '-g', '--prefix', prefix], { encoding: 'utf8' }).trim();
  const shipped = join(installedRoot, 'salt-rest-wsgi', 'contrib', 'salt-rest-wsgi.service');
  assert.equal(await readFile(shipped, 'utf8'), await readFile(UNIT, 'utf8'), 'the package ships contrib/ as it is');
  await copyFile(shipped, join(root, 'etc', 'systemd', 'system', 'salt-rest-wsgi.service'));
  t.diagnostic(`command at ${join(globalPrefix, 'bin', 'salt-rest-wsgi')} inside ${root}`);

  const verify = (unit: string) =>
    promisify(execFile)('systemd-analyze', ['verify', `--root=${root}`, unit]).catch(
      (e: Error & { stdout: string; stderr: string; code: number }) => e,
    );
  const result = await verify('/etc/systemd/system/salt-rest-wsgi.service');
  assert.equal('code' in result ? result.code : 0, 0, result.stderr);
  assert.equal(result.stderr, ''); // "Failed to parse time value, ignoring" is a warning there, and a 90 s stop timeout

  // The check is real: without the command on the search path, verify says so.
  await rm(join(prefix, 'bin', 'salt-rest-wsgi'));
  const missing = await verify('/etc/systemd/system/salt-rest-wsgi.service');
  assert.match(missing.stderr, /Command salt-rest-wsgi is not executable/);
});

test('the unit runs the command by name (systemd finds it on its search path), stops after shutdown_timeout, and is the README Deployment unit', async () => {
  const unit = await readFile(UNIT, 'utf8');
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1];
  assert.equal(exec, 'salt-rest-wsgi -c /etc/salt/master');
  // The command's shebang: node, found on the service's PATH, is exec'd (the main process, which gets the signals).
  const bin = await readFile(join(repoRoot, 'bin', 'salt-rest-wsgi.ts'), 'utf8');
  assert.ok(bin.startsWith('#!/usr/bin/env node\n'));
  assert.ok(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1]) > 25, 'over the default shutdown_timeout');
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { files: string[] };
  assert.ok(pkg.files.includes('contrib/salt-rest-wsgi.service'), 'the unit ships in the package');
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const deployment = readme.slice(readme.indexOf('## Deployment'));
  const block = /`contrib\/salt-rest-wsgi\.service`[\s\S]*?```ini\n([\s\S]*?)```/.exec(deployment);
  assert.ok(block, 'the Deployment section shows contrib/salt-rest-wsgi.service in an ini block');
  assert.equal(block[1], unit);
  assert.match(deployment, /npm install -g /);
  assert.match(deployment, /cp "\$\(npm root -g\)\/salt-rest-wsgi\/contrib\/salt-rest-wsgi\.service" \/etc\/systemd\/system\//);
  assert.match(deployment, /systemctl enable --now salt-rest-wsgi/);
});
