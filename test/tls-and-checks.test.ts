/**
 * The command's TLS and its start-up checks (issue 14): rest_wsgi: ssl_crt /
 * ssl_key (or --ssl-crt / --ssl-key) serve HTTPS, which curl --cacert reads;
 * SIGHUP reloads them for new connections and never stops the server; half a
 * TLS config or an unreadable file exits 2 with one line; disable_ssl as
 * rest_cherrypy reads it. Unknown rest_wsgi: keys and a non-loopback address
 * without TLS are warned about; -l is --log-level.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { BIN, repoRoot, startCommand } from './support/command.js';
import { request } from './support/http.js';
import { selfSignedCert, type SelfSigned } from './support/tls.js';
import { closest, editDistance, isLoopback } from '../bin/checks.js';
import { SETTING_KEYS } from '../lib/http/settings.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };
const curl = promisify(execFile);

type After = { after(fn: () => unknown): void };

async function tempDir(t: After): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function certIn(dir: string, name: string): Promise<SelfSigned> {
  await mkdir(join(dir, name));
  return selfSignedCert(join(dir, name));
}

async function masterWith(t: After, restWsgi: Record<string, unknown>): Promise<SaltMasterDouble> {
  const master = await startMaster({ config: { rest_wsgi: { port: 0, ...restWsgi } } });
  t.after(() => master.close());
  return master;
}

/** The command to its end: exit code and stderr. */
async function runToEnd(args: string[]): Promise<{ code: number; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], {
    cwd: repoRoot,
    env: { ...process.env, SALT_MASTER_CONFIG: undefined },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = await once(child, 'close');
  return { code: code as number, stderr };
}

/** The fingerprint of the certificate a new TLS connection gets. */
async function servedFingerprint(port: number, ca: Buffer): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca });
  await once(socket, 'secureConnect');
  const fingerprint = socket.getPeerCertificate().fingerprint256;
  socket.destroy();
  return fingerprint;
}

function fingerprintOf(cert: Buffer): string {
  return new X509Certificate(cert).fingerprint256;
}

test('ssl_crt/ssl_key in the master config: HTTPS that curl --cacert reads; SIGHUP reloads the files for new connections and the server stays up', async (t) => {
  const dir = await tempDir(t);
  const first = await certIn(dir, 'first');
  const second = await certIn(dir, 'second');
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  await copyFile(first.certPath, live.cert);
  await copyFile(first.keyPath, live.key);
  const master = await masterWith(t, { ssl_crt: live.cert, ssl_key: live.key });
  const run = await startCommand(t, ['-c', master.configPath]);
  assert.match(run.stderr(), /INFO  listening on https:\/\/127\.0\.0\.1:\d+\//);

  const body = JSON.stringify([{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['tls'] }]);
  const url = `https://localhost:${run.port}/`;
  const answer = await curl('curl', ['-sS', '--cacert', first.certPath, '-H', 'Content-Type: application/json', '-d', body, url]);
  assert.equal(answer.stdout, '{"return":[{"args":["tls"],"kwargs":{}}]}');
  // Plain HTTP on that port is not served.
  await assert.rejects(curl('curl', ['-sS', '-m', '5', `http://localhost:${run.port}/`]));

  // A connection made before the reload keeps working on the old certificate.
  const kept = tls.connect({ host: '127.0.0.1', port: run.port, servername: 'localhost', ca: first.cert });
  await once(kept, 'secureConnect');

  await copyFile(second.certPath, live.cert);
  await copyFile(second.keyPath, live.key);
  run.child.kill('SIGHUP');
  await run.waitFor(/INFO  SIGHUP: reloaded the TLS certificate .*live\.crt and key .*live\.key for new connections/);
  assert.equal(await servedFingerprint(run.port, second.cert), fingerprintOf(second.cert));
  const renewed = await curl('curl', ['-sS', '--cacert', second.certPath, '-H', 'Content-Type: application/json', '-d', body, url]);
  assert.equal(renewed.stdout, '{"return":[{"args":["tls"],"kwargs":{}}]}');
  await assert.rejects(curl('curl', ['-sS', '--cacert', first.certPath, url]), /SSL certificate problem|certificate/);
  kept.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  let old = '';
  kept.setEncoding('utf8').on('data', (d: string) => (old += d));
  await once(kept, 'end');
  assert.match(old, /^HTTP\/1\.1 200 OK/);

  // A broken file on SIGHUP: logged, the current certificate kept, still serving.
  await copyFile(join(dir, 'first', 'key.pem'), live.cert);
  run.child.kill('SIGHUP');
  await run.waitFor(/ERROR SIGHUP: kept the current TLS certificate: unusable TLS certificate/);
  assert.equal(await servedFingerprint(run.port, second.cert), fingerprintOf(second.cert));
  assert.equal(run.child.exitCode, null);
  assert.equal(run.child.signalCode, null);
});

test('--ssl-crt/--ssl-key serve HTTPS and win over disable_ssl; disable_ssl: true serves HTTP despite ssl_crt/ssl_key', async (t) => {
  const dir = await tempDir(t);
  const cert = await certIn(dir, 'c');
  const disabled = await masterWith(t, { disable_ssl: true, ssl_crt: cert.certPath, ssl_key: cert.keyPath });
  const plain = await startCommand(t, ['-c', disabled.configPath]);
  assert.match(plain.stderr(), /listening on http:\/\//);
  assert.equal((await request(plain.port, { method: 'GET' })).status, 200);

  const flagged = await startCommand(t, ['-c', disabled.configPath, '--ssl-crt', cert.certPath, '--ssl-key', cert.keyPath]);
  assert.match(flagged.stderr(), /listening on https:\/\//);
  const reply = await request(flagged.port, { method: 'GET', ca: cert.cert });
  assert.equal(reply.status, 200);
});

test('half a TLS config, an unreadable file or a key that does not match exits 2 with one line', async (t) => {
  const dir = await tempDir(t);
  const a = await certIn(dir, 'a');
  const b = await certIn(dir, 'b');
  const onlyCrt = await masterWith(t, { ssl_crt: a.certPath });
  const onlyKey = await masterWith(t, { ssl_key: a.keyPath });
  const missing = await masterWith(t, { ssl_crt: join(dir, 'nope.crt'), ssl_key: a.keyPath });
  const cases: Array<[string[], RegExp]> = [
    [
      ['-c', onlyCrt.configPath],
      /^salt-rest-wsgi: rest_wsgi: ssl_crt and ssl_key go together in .*: give both, or neither \(or disable_ssl: true\)\n$/,
    ],
    [['-c', onlyKey.configPath], /^salt-rest-wsgi: rest_wsgi: ssl_crt and ssl_key go together/],
    [['-c', onlyCrt.configPath, '--ssl-crt', a.certPath], /^salt-rest-wsgi: --ssl-crt and --ssl-key go together: give both, or neither\n$/],
    [['-c', missing.configPath], /^salt-rest-wsgi: cannot read the TLS certificate .*nope\.crt: no such file\n$/],
    [
      ['-c', onlyCrt.configPath, '--ssl-crt', a.certPath, '--ssl-key', b.keyPath],
      /^salt-rest-wsgi: unusable TLS certificate .* and key .*: .*\n$/,
    ],
  ];
  const runs = await Promise.all(cases.map(([args]) => runToEnd(args)));
  for (const [i, run] of runs.entries()) {
    assert.equal(run.code, 2, cases[i][0].join(' '));
    assert.match(run.stderr, cases[i][1]);
    assert.equal(run.stderr.split('\n').length, 2, run.stderr);
  }
});

test('SIGHUP without TLS is logged and ignored: the server stays up', async (t) => {
  const master = await masterWith(t, {});
  const run = await startCommand(t, ['-c', master.configPath]);
  run.child.kill('SIGHUP');
  await run.waitFor(/INFO  SIGHUP: no TLS certificate to reload/);
  assert.equal((await request(run.port, { method: 'GET' })).status, 200);
  assert.equal(run.child.exitCode, null);
});

test('unknown rest_wsgi: keys are warned by name with the closest known key; a non-loopback host without TLS warns once; -l is --log-level', async (t) => {
  const master = await masterWith(t, { prot: 5, max_body_size: 10, ssl_cert: 'x' });
  const run = await startCommand(t, ['-c', master.configPath, '--host', '0.0.0.0', '-l', 'debug']);
  await run.waitFor(/without TLS/);
  const err = run.stderr();
  assert.match(err, /WARN  ignoring unknown option rest_wsgi: prot in .* \(did you mean port\?\)\n/);
  assert.match(err, /WARN  ignoring unknown option rest_wsgi: max_body_size in .* \(did you mean max_request_body_size\?\)\n/);
  assert.match(err, /WARN  ignoring unknown option rest_wsgi: ssl_cert in .* \(did you mean ssl_crt\?\)\n/);
  assert.equal(err.match(/without TLS: credentials travel in clear/g)?.length, 1, err);
  assert.match(
    err,
    /WARN  serving 0\.0\.0\.0 without TLS: credentials travel in clear; set rest_wsgi: ssl_crt and ssl_key, or keep 127\.0\.0\.1 behind a TLS proxy\n/,
  );
  // Loopback: no warning.
  const local = await startCommand(t, ['-c', master.configPath, '--host', '127.0.0.1']);
  assert.doesNotMatch(local.stderr(), /without TLS/);
});

test('closest known key by Levenshtein distance, and what counts as loopback', () => {
  assert.equal(editDistance('prot', 'port'), 2);
  assert.equal(editDistance('', 'port'), 4);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(closest('prot', SETTING_KEYS), 'port');
  assert.equal(closest('hots', SETTING_KEYS), 'host');
  assert.equal(closest('shutdown_timout', SETTING_KEYS), 'shutdown_timeout');
  assert.equal(closest('disable_tls', SETTING_KEYS), 'disable_ssl');
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.ok(isLoopback(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', 'salt.example.com']) assert.ok(!isLoopback(host), host);
});
