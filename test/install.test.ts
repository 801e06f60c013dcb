/**
 * A production install from a clone (issue 14): `npm ci --omit=dev` in a
 * fresh clone (the files git would give one, in a temp dir) installs only the
 * runtime dependencies, and the postprepare script still builds dist/ (with the
 * lock file's compiler through npm exec: scripts/build.mjs), so the command
 * runs: `node dist/bin/salt-rest-wsgi.js --help` and `npm start -- --help`.
 * Then the tarball made there installs globally into an empty prefix
 * (`npm install -g --prefix`), whose `salt-rest-wsgi --help` works.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, runToEnd } from './support/command.js';

const run = (cmd: string, args: string[], cwd: string) => runToEnd(cmd, args, { cwd, asInnerNpm: true });

test('npm ci --omit=dev in a fresh clone: only runtime dependencies, a working command; its npm pack tarball installs globally', {
  timeout: 300_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-clone-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // What a clone of this tree holds: tracked files, and new ones not ignored (no dist/, no node_modules/).
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean);
  assert.ok(!files.some((f) => f.startsWith('dist/') || f.startsWith('node_modules/')), 'no built files in git');
  for (const file of files) await cp(join(repoRoot, file), join(dir, file), { recursive: true }).catch(() => undefined); // deleted, not yet committed
  assert.ok(files.includes('package-lock.json') && files.includes('scripts/build.mjs'));

  const install = await run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], dir);
  assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
  assert.doesNotMatch(install.stderr, /EBADENGINE/);
  const installed = await readdir(join(dir, 'node_modules'));
  for (const devOnly of ['typescript', 'tsx', 'zeromq', '@types', 'express', 'fastify'])
    assert.ok(!installed.includes(devOnly), `${devOnly} installed`);

  const help = await run(process.execPath, ['dist/bin/salt-rest-wsgi.js', '--help'], dir);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: salt-rest-wsgi /);
  const viaNpm = await run('npm', ['start', '--silent', '--', '--help'], dir);
  assert.equal(viaNpm.code, 0, viaNpm.stderr);
  assert.match(viaNpm.stdout, /^Usage: salt-rest-wsgi /);

  // The tarball, as Deployment installs it: `npm pack` (whose prepack would
  // build dist/ again, as it was just built: --ignore-scripts), then a global
  // install into an empty prefix, which must not build anything.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], dir);
  assert.equal(packed.code, 0, packed.stderr);
  const [{ filename }] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [{ filename: string }];
  const prefix = join(dir, 'global');
  await mkdir(prefix);
  // The package has no install script of its own (npm lists a tarball's `prepare` as one);
  // msgpackr's native extractor has one, allowed as README: Installing says.
  const scripts = JSON.parse(execFileSync('tar', ['-xOzf', join(dir, filename), 'package/package.json'], { encoding: 'utf8' })).scripts;
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(scripts[hook], undefined, hook);
  const global = await run(
    'npm',
    [
      'install',
      '-g',
      '--allow-scripts=msgpackr-extract',
      '--prefix',
      prefix,
      join(dir, filename),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    dir,
  );
  assert.equal(global.code, 0, `${global.stdout}\n${global.stderr}`);
  assert.doesNotMatch(global.stderr + global.stdout, /EBADENGINE|building dist\/|> node scripts\/build/);
  assert.doesNotMatch(global.stderr + global.stdout, /warn|install scripts|allowScripts/i, 'nothing an operator must wonder about');
  const report = await run(join(prefix, 'bin', 'salt-rest-wsgi'), ['-V'], dir);
  assert.match(report.stdout, /msgpackr: [\d.]+ \(msgpackr-extract in use\)/, report.stdout);
  const globalHelp = await run(join(prefix, 'bin', 'salt-rest-wsgi'), ['--help'], dir);
  assert.equal(globalHelp.code, 0, globalHelp.stderr);
  assert.match(globalHelp.stdout, /^Usage: salt-rest-wsgi /);
  const deps = await readdir(join(prefix, 'lib', 'node_modules', 'salt-rest-wsgi', 'node_modules'));
  assert.ok(deps.includes('msgpackr') && deps.includes('yaml'), deps.join());
  for (const devOnly of ['typescript', 'tsx', 'zeromq', '@types']) assert.ok(!deps.includes(devOnly), `${devOnly} installed`);
});
