/**
 * contrib/salt-rest-wsgi.service (issue 14): systemd accepts it as written
 * (`systemd-analyze verify`, Debian's systemd package; skipped where it is
 * missing), it runs node directly (so that SIGTERM reaches the server, not
 * npm), and the README's Deployment shows it byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './support/command.js';

const UNIT = join(repoRoot, 'contrib', 'salt-rest-wsgi.service');
const hasAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

test('systemd-analyze verify accepts contrib/salt-rest-wsgi.service, without a warning', {
  skip: hasAnalyze ? false : 'systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)',
}, async (t) => {
  let unit = await readFile(UNIT, 'utf8');
  // verify checks that ExecStart's program exists: where node is elsewhere, check the unit with this node instead.
  if (!existsSync('/usr/bin/node')) unit = unit.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `);
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'salt-rest-wsgi.service'), unit);
  const result = await promisify(execFile)('systemd-analyze', ['verify', join(dir, 'salt-rest-wsgi.service')]).catch(
    (e: Error & { stdout: string; stderr: string; code: number }) => e,
  );
  assert.equal('code' in result ? result.code : 0, 0, result.stderr);
  assert.equal(result.stderr, ''); // "Failed to parse time value, ignoring" is a warning there, and a 90 s stop timeout
});

test('the unit runs node directly on the global install, stops after shutdown_timeout, and is the README Deployment unit', async () => {
  const unit = await readFile(UNIT, 'utf8');
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1];
  assert.match(
    exec,
    /^\/usr\/bin\/node \/usr\/local\/lib\/node_modules\/salt-rest-wsgi\/dist\/bin\/salt-rest-wsgi\.js -c \/etc\/salt\/master$/,
  );
  assert.ok(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1]) > 25, 'over the default shutdown_timeout');
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const deployment = readme.slice(readme.indexOf('## Deployment'));
  const block = /`contrib\/salt-rest-wsgi\.service`[\s\S]*?```ini\n([\s\S]*?)```/.exec(deployment);
  assert.ok(block, 'the Deployment section shows contrib/salt-rest-wsgi.service in an ini block');
  assert.equal(block[1], unit);
  assert.match(deployment, /npm install -g /);
});
