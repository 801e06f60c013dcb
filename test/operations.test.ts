/**
 * Running it in production (README): Prometheus metrics read by Prometheus's
 * own parser (Debian's python3-prometheus-client; .ci/run installs it) after
 * a mixed load, counters matching what was sent; /healthz and /readyz as the
 * master stops and returns; request ids; an audit record per item; client
 * certificates (mTLS) with openssl-made certificates, through curl.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { createHandler } from '../lib/http/handler.js';
import { formatAudit, type AuditRecord } from '../lib/http/audit.js';
import { createLogger } from '../lib/log.js';
import { AuditSink } from '../bin/operations.js';
import { recordingLogger, request, serve, sleep } from './support/http.js';
import { everyClient } from './support/lowstates.js';
import { startCommand } from './support/command.js';
import { issueClientCert, selfSignedCert, testCa } from './support/tls.js';

const PASSWORD = 'pw-OPS-77c1f0e2';
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };
const PYTHON = '/usr/bin/python3';

type After = { after(fn: () => unknown): void };

/** Prometheus's parser over the text: each sample as `name{labels}` → value; it throws on anything malformed. */
const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ','.join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        # NaN is valid in the text format (a gauge not sampled yet), not in JSON.
        out['%s{%s}' % (s.name, labels)] = s.value if math.isfinite(s.value) else str(s.value)
print(json.dumps(out))
`;

function parsePrometheus(text: string): Record<string, number> {
  const run = spawnSync(PYTHON, ['-c', PARSE], { input: text, encoding: 'utf8' });
  assert.equal(run.status, 0, `the Prometheus parser refused /metrics:\n${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, number>;
}

async function doubleWith(t: After, config: Record<string, unknown> = {}): Promise<SaltMasterDouble> {
  const master = await startMaster({
    users: USERS,
    minions: [{ id: 'minion1' }, { id: 'minion2' }, { id: 'ghost1', silent: true }],
    config: { rest_wsgi: { port: 0 }, ...config },
  });
  t.after(() => master.close());
  return master;
}

async function handlerAndMetrics(t: After, master: SaltMasterDouble, audit: AuditRecord[]) {
  const { logger, lines } = recordingLogger();
  const handler = createHandler({
    config: master.configPath,
    logger,
    accessLog: true,
    auditLog: (r) => audit.push(r),
    masterTimeoutMs: 1000,
  });
  const api = await serve(handler);
  const metrics = await serve(handler.metricsHandler);
  t.after(async () => {
    await api.close();
    await metrics.close();
    handler.close();
  });
  return { handler, api, metrics, lines };
}

test('/metrics after a mixed load: Prometheus parses it, and the counters are what was sent', async (t) => {
  const master = await doubleWith(t);
  const audit: AuditRecord[] = [];
  const { api, metrics } = await handlerAndMetrics(t, master, audit);
  const N = 4;
  const fleet = { ...CRED, client: 'local', tgt: '*', fun: 'test.ping', timeout: 0.3, gather_job_timeout: 0.3 };
  for (let i = 0; i < N; i++) {
    const reply = await request(api.port, { body: [fleet] });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json, { return: [{ minion1: true, minion2: true, ghost1: false }] });
  }
  const K400 = 3;
  for (let i = 0; i < K400; i++) assert.equal((await request(api.port, { body: [{ ...CRED, client: 'bogus', fun: 'x' }] })).status, 400);
  const K401 = 2;
  for (let i = 0; i < K401; i++) {
    const bad = { ...CRED, password: 'wrong', client: 'runner', fun: 'test.arg' };
    assert.equal((await request(api.port, { body: [bad] })).status, 401);
  }
  assert.equal((await request(api.port, { method: 'GET' })).status, 200);
  assert.equal((await request(api.port, { method: 'PUT' })).status, 405);

  const scrape = await request(metrics.port, { method: 'GET', path: '/metrics' });
  assert.equal(scrape.status, 200);
  assert.match(String(scrape.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const m = parsePrometheus(scrape.text);
  const p = 'salt_rest_wsgi_';
  assert.equal(m[`${p}http_responses_total{status="200"}`], N + 1);
  assert.equal(m[`${p}http_responses_total{status="400"}`], K400);
  assert.equal(m[`${p}http_responses_total{status="401"}`], K401);
  assert.equal(m[`${p}http_responses_total{status="405"}`], 1);
  assert.equal(m[`${p}http_request_duration_seconds_count{}`], N + K400 + K401 + 2);
  assert.equal(m[`${p}lowstate_items_total{client="local",outcome="ok"}`], N);
  assert.equal(m[`${p}lowstate_items_total{client="unknown",outcome="refused"}`], K400);
  assert.equal(m[`${p}lowstate_items_total{client="runner",outcome="denied"}`], K401);
  // The fleet `local`: two minions returned, the silent one answered false, each time.
  assert.equal(m[`${p}minion_returns_total{}`], 2 * N);
  assert.equal(m[`${p}minions_missing_total{}`], N);
  assert.equal(m[`${p}http_requests_in_flight{}`], 0);
  assert.equal(m[`${p}http_requests_shed_total{}`], 0);
  assert.equal(m[`${p}http_requests_throttled_total{}`], 0);
  assert.equal(m[`${p}master_request_channel_connected{}`], 1);
  assert.equal(m[`${p}master_event_bus_connected{}`], 1);
  assert.equal(m[`${p}master_ready{}`], 1);
  assert.ok(m[`${p}master_event_bus_events_total{}`] > 0);
  assert.ok(m[`${p}master_event_bus_bytes_total{}`] > m[`${p}master_event_bus_events_total{}`]);
  assert.ok(m[`${p}http_response_bytes_total{}`] > 0);
  assert.ok('process_cpu_user_seconds_total{}' in m, "Node's process metrics");
  // Bounded labels: no username, minion id, jid or function name anywhere in the text.
  for (const word of ['saltdev', 'minion1', 'ghost1', 'test.ping', 'test.arg', audit[0].jid as string]) {
    assert.equal(scrape.text.indexOf(word), -1, `${word} in /metrics`);
  }
  assert.equal(audit.length, N + K400 + K401);
});

test('shed (503) and throttled (429) requests are counted, and carry their request id', async (t) => {
  const master = await doubleWith(t, { rest_wsgi: { port: 0, max_in_flight: 1, auth_failure_limit: 1 } });
  const audit: AuditRecord[] = [];
  const { api, metrics } = await handlerAndMetrics(t, master, audit);
  const slow = request(api.port, { body: [{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 0.5 }] });
  await master.nextRequest('runner');
  const shed = await request(api.port, {
    body: [{ ...CRED, client: 'runner', fun: 'test.arg' }],
    headers: { 'content-type': 'application/json', 'x-request-id': 'shed-1' },
  });
  assert.equal(shed.status, 503);
  assert.equal(shed.headers['x-request-id'], 'shed-1');
  assert.equal((await slow).status, 200);
  assert.equal((await request(api.port, { body: [{ ...CRED, password: 'no', client: 'runner', fun: 'test.arg' }] })).status, 401);
  const throttled = await request(api.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] });
  assert.equal(throttled.status, 429);
  assert.match(String(throttled.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  const m = parsePrometheus((await request(metrics.port, { method: 'GET', path: '/metrics' })).text);
  assert.equal(m['salt_rest_wsgi_http_requests_shed_total{}'], 1);
  assert.equal(m['salt_rest_wsgi_http_requests_throttled_total{}'], 1);
  assert.equal(m['salt_rest_wsgi_http_responses_total{status="503"}'], 1);
  assert.equal(m['salt_rest_wsgi_http_responses_total{status="429"}'], 1);
});

/** Poll `path` until its status is `status`; the time it took, ms. */
async function untilStatus(port: number, path: string, status: number, ms: number): Promise<{ took: number; text: string }> {
  const start = performance.now();
  for (;;) {
    const reply = await request(port, { method: 'GET', path });
    if (reply.status === status) return { took: performance.now() - start, text: reply.text };
    assert.ok(performance.now() - start < ms, `${path} still ${reply.status} (${reply.text.trim()}) after ${ms} ms`);
    await sleep(20);
  }
}

test('/readyz: 503 within 2 s of the master stopping, in the words of the 503 answers; 200 within 2 s of its return; /healthz 200 throughout', async (t) => {
  const master = await doubleWith(t);
  const { metrics, api } = await handlerAndMetrics(t, master, []);
  await untilStatus(metrics.port, '/readyz', 200, 5000);
  // As Salt's salt-master on SIGTERM: its socket files stay in sock_dir, so the dropped connections tell.
  await master.stop({ leaveSockets: true });
  const down = await untilStatus(metrics.port, '/readyz', 503, 2000);
  assert.equal(down.text, 'Salt Master is not available.\n');
  assert.equal((await request(metrics.port, { method: 'GET', path: '/healthz' })).status, 200);
  // The API's own 503 says the same.
  await sleep(1100); // past the dispatcher's cached "master is running"
  const answer = await request(api.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] });
  assert.equal(answer.status, 503);
  assert.deepEqual(answer.json, { return: down.text.trim() });
  await master.start();
  const up = await untilStatus(metrics.port, '/readyz', 200, 2000);
  assert.equal(up.text, 'ready\n');
  assert.equal((await request(metrics.port, { method: 'GET', path: '/nothing' })).status, 404);
  t.diagnostic(`readyz: 503 after ${down.took.toFixed(0)} ms, 200 after ${up.took.toFixed(0)} ms`);
});

test('request ids: a good X-Request-Id is sent back and on the access line and audit record; a bad one is replaced, never echoed; traceparent logged', async (t) => {
  const master = await doubleWith(t);
  const audit: AuditRecord[] = [];
  const { api, lines } = await handlerAndMetrics(t, master, audit);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const good = await request(api.port, {
    body: [{ ...CRED, client: 'runner', fun: 'test.arg' }],
    headers: { 'content-type': 'application/json', 'x-request-id': 'abc.DEF_123-x', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
  });
  assert.equal(good.headers['x-request-id'], 'abc.DEF_123-x');
  for (const bad of ['a b', 'x'.repeat(129), 'evil\\nforged=1', '<script>', 'ünï']) {
    const reply = await request(api.port, { body: 'not json', headers: { 'content-type': 'application/json', 'x-request-id': bad } });
    assert.equal(reply.status, 400);
    assert.match(String(reply.headers['x-request-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(!lines.some((l) => l.msg.includes(bad)), `${bad} was logged`);
  }
  // A 413, refused before the body is read, carries one too.
  const big = await request(api.port, {
    body: [{ x: 'y'.repeat(2 * 1024 * 1024) }],
    headers: { 'content-type': 'application/json', 'x-request-id': 'big-1' },
  });
  assert.equal(big.status, 413);
  assert.equal(big.headers['x-request-id'], 'big-1');
  await sleep(50);
  const access = lines.find((l) => l.msg.startsWith('access ') && l.msg.includes('request_id=abc.DEF_123-x'));
  assert.ok(access, JSON.stringify(lines));
  assert.match(access.msg, new RegExp(`trace_id=${traceId}`));
  assert.equal(audit[0].requestId, 'abc.DEF_123-x');
  assert.ok(lines.some((l) => l.msg.includes('request_id=big-1')));
});

test('an audit record per item, for every client: who, what, where, its jid and minions; never a password or token', async (t) => {
  const master = await doubleWith(t);
  const audit: AuditRecord[] = [];
  const { api } = await handlerAndMetrics(t, master, audit);
  const made = await master.eauth.mkToken(CRED);
  assert.ok(made);
  for (const cred of [CRED, { token: made.token }]) {
    for (const [client, low] of everyClient(cred)) {
      audit.length = 0;
      const reply = await request(api.port, { body: [low] });
      assert.equal(reply.status, 200, `${client}: ${reply.text}`);
      assert.equal(audit.length, 1, client);
      const [r] = audit;
      assert.equal(r.client, client);
      assert.equal(r.fun, low.fun);
      assert.equal(r.status, 200);
      assert.equal(r.username, 'token' in cred ? '(token)' : 'saltdev');
      assert.equal(r.eauth, 'token' in cred ? undefined : 'pam');
      assert.equal(r.address, '127.0.0.1');
      assert.match(r.requestId, /^[0-9a-f-]{36}$/);
      assert.ok(r.durationMs >= 0);
      if (client.startsWith('local')) assert.equal(r.tgt, 'minion1');
      if (client !== 'wheel') assert.match(String(r.jid), /^\d{20}$/, client);
      if (client === 'local' || client === 'local_batch' || client === 'local_subset') {
        assert.deepEqual([r.targeted, r.returned, r.missing], [1, 1, 0], client);
      }
      assert.equal(r.args, undefined, 'no arguments without audit_args');
      const text = JSON.stringify(r);
      assert.ok(!text.includes(PASSWORD) && !text.includes(made.token), text);
    }
  }
  // A refused item has its record too (nothing ran).
  audit.length = 0;
  assert.equal((await request(api.port, { body: [{ ...CRED, client: 'local', fun: 'test.ping' }] })).status, 400);
  assert.deepEqual([audit.length, audit[0].client, audit[0].status], [1, 'local', 400]);
});

test('audit_args: arguments logged with secret-looking values masked', async (t) => {
  const master = await doubleWith(t);
  const audit: AuditRecord[] = [];
  const handler = createHandler({ config: master.configPath, auditLog: (r) => audit.push(r), auditArgs: true });
  const api = await serve(handler);
  t.after(async () => {
    await api.close();
    handler.close();
  });
  const low = {
    ...CRED,
    client: 'runner',
    fun: 'test.arg',
    arg: ['visible', 'password=hunter3', `with ${PASSWORD} inside`],
    kwarg: { api_key: 'k-1', nested: { db_passwd: 's3', secret_sauce: 'x', keep: 'shown' }, Token: 't' },
  };
  assert.equal((await request(api.port, { body: [low] })).status, 200);
  const args = JSON.parse(String(audit[0].args));
  assert.deepEqual(args, {
    arg: ['visible', 'password=***', '***'],
    kwarg: { api_key: '***', nested: { db_passwd: '***', secret_sauce: '***', keep: 'shown' }, Token: '***' },
  });
});

async function curl(args: string[]): Promise<{ code: number; status: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '10',
      ...args,
    ]);
    return { code: 0, status: stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, status: e.stdout, stderr: e.stderr };
  }
}

test('mTLS (the command): right CA and an allowed CN 200; no certificate, or a wrong CA, no handshake; an unlisted CN 403 unread, the master untouched; CN in access and audit lines', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'srw-mtls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const server = selfSignedCert(dir);
  const ca = testCa(dir, 'clients-ca');
  const otherCa = testCa(dir, 'other-ca');
  const allowed = issueClientCert(dir, ca, 'ops-console');
  const unlisted = issueClientCert(dir, ca, 'intruder');
  const foreign = issueClientCert(dir, otherCa, 'ops-console');
  const auditPath = join(dir, 'audit.log');
  const master = await doubleWith(t, {
    rest_wsgi: {
      port: 0,
      ssl_crt: server.certPath,
      ssl_key: server.keyPath,
      ssl_ca_certs: ca.certPath,
      ssl_cert_reqs: 'CERT_REQUIRED',
      ssl_allowed_cn: ['ops-console'],
      audit_log: auditPath,
    },
  });
  const run = await startCommand(t, ['-c', master.configPath]);
  const url = `https://127.0.0.1:${run.port}/`;
  const body = JSON.stringify([{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['x'] }]);
  const post = [
    '--cacert',
    server.certPath,
    '-H',
    'Content-Type: application/json',
    '-H',
    'X-Request-Id: mtls-1',
    '--data-binary',
    body,
    url,
  ];

  const ok = await curl(['--cert', allowed.certPath, '--key', allowed.keyPath, ...post]);
  assert.equal(ok.status, '200', ok.stderr);
  const none = await curl(post);
  assert.notEqual(none.code, 0, 'no certificate: no handshake');
  assert.equal(none.status, '000');
  const wrongCa = await curl(['--cert', foreign.certPath, '--key', foreign.keyPath, ...post]);
  assert.notEqual(wrongCa.code, 0, 'a certificate of another CA: no handshake');
  master.clearLog();
  const refused = await curl(['--cert', unlisted.certPath, '--key', unlisted.keyPath, ...post]);
  assert.equal(refused.status, '403', refused.stderr);
  assert.deepEqual(master.requests, [], 'an unlisted CN never reaches the master');

  await run.waitFor(/access method=POST path=\/ status=403 .* cn=intruder/);
  assert.match(run.stderr(), /access method=POST path=\/ status=200 .* cn=ops-console request_id=mtls-1/);
  const auditLines = (await readFile(auditPath, 'utf8')).trim().split('\n');
  assert.equal(auditLines.length, 1, auditLines.join('\n'));
  assert.match(
    auditLines[0],
    /^audit time=\S+ request_id=mtls-1 address=127\.0\.0\.1 cn=ops-console eauth=pam username=saltdev client=runner fun=test\.arg jid=\d{20} status=200 duration_ms=/,
  );
  // SIGHUP reloads the CA files with the certificate, and reopens the audit log
  // by its name: logrotate has moved the old file away, and keeps what it had.
  await rename(auditPath, `${auditPath}.1`);
  run.child.kill('SIGHUP');
  await run.waitFor(/SIGHUP: reloaded the TLS certificate .* and the CA certificates .*clients-ca\.pem/);
  await run.waitFor(/SIGHUP: reopened the audit log/);
  assert.equal(
    (await curl(['--cert', allowed.certPath, '--key', allowed.keyPath, ...post.map((a) => a.replace('mtls-1', 'mtls-2'))])).status,
    '200',
  );
  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
  assert.deepEqual(
    (await readFile(`${auditPath}.1`, 'utf8')).trim().split('\n'),
    auditLines,
    'the rotated file: the lines before the signal',
  );
  const after = (await readFile(auditPath, 'utf8')).trim().split('\n');
  assert.equal(after.length, 1, after.join('\n'));
  assert.match(after[0], /^audit time=\S+ request_id=mtls-2 address=127\.0\.0\.1 cn=ops-console .* status=200 /);
});

test('the command: --metrics-port serves /metrics, /healthz, /readyz on a listener of its own; audit lines in JSON with --log-format json', async (t) => {
  const master = await doubleWith(t);
  const run = await startCommand(t, ['-c', master.configPath, '--metrics-port', '0', '--log-format', 'json']);
  const [, port] = await run.waitFor(/serving metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
  assert.equal((await request(run.port, { body: [{ ...CRED, client: 'runner', fun: 'test.arg' }] })).status, 200);
  assert.equal((await request(Number(port), { method: 'GET', path: '/healthz' })).status, 200);
  await untilStatus(Number(port), '/readyz', 200, 5000);
  const m = parsePrometheus((await request(Number(port), { method: 'GET', path: '/metrics' })).text);
  assert.equal(m['salt_rest_wsgi_lowstate_items_total{client="runner",outcome="ok"}'], 1);
  // Not on the API's port: there, every path is the API.
  assert.equal((await request(run.port, { method: 'GET', path: '/metrics' })).text.includes('salt_rest_wsgi_'), false);
  const [line] = await run.waitFor(/\{[^\n]*"msg":"audit"[^\n]*\}/);
  const record = JSON.parse(line);
  assert.equal(record.client, 'runner');
  assert.equal(record.username, 'saltdev');
  assert.match(record.request_id, /^[0-9a-f-]{36}$/);
  run.child.kill('SIGTERM');
  assert.equal((await run.exited).code, 0);
});

test('AuditSink: lines reach the file within its flush time and on close; a full disk is an error line naming what was lost, and the sink goes on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'srw-audit-sink-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const written: string[] = [];
  const logger = createLogger({ stream: { write: (line: string) => written.push(line) }, timestamps: false });
  const record = (requestId: string): AuditRecord => ({
    time: '2026-12-04T20:00:00.000Z',
    requestId,
    address: '127.0.0.1',
    client: 'local',
    status: 200,
    durationMs: 1,
  });
  const path = join(dir, 'audit.log');
  const sink = new AuditSink(path, 'text', logger);
  sink.write(record('a'));
  sink.write(record('b'));
  await sleep(100);
  assert.deepEqual((await readFile(path, 'utf8')).split('\n'), [formatAudit(record('a')), formatAudit(record('b')), '']);
  // A line of escaped arguments longer than the buffer, between two that wait in it: in order.
  const long = { ...record('long'), args: JSON.stringify({ arg: ['\u0001'.repeat(4096), 'é😀'.repeat(2000)] }) };
  sink.write(record('c'));
  sink.write(long);
  sink.write(record('d'));
  sink.close();
  const lines = (await readFile(path, 'utf8')).split('\n');
  assert.deepEqual(
    lines.slice(2),
    [formatAudit(record('c')), formatAudit(long), formatAudit(record('d')), ''],
    'close writes what was pending',
  );
  assert.ok(formatAudit(long).length > 22_000);
  assert.equal((await stat(path)).mode & 0o137, 0, 'never more open than rw-r----- (the umask may close it further)');

  sink.write(record('after-close'));
  assert.match(written.join(''), /^INFO  audit .*request_id=after-close /, 'a record after close goes to the log');
  written.length = 0;

  if (!existsSync('/dev/full')) return t.skip('no /dev/full here');
  const full = new AuditSink('/dev/full', 'text', logger);
  full.write(record('e'));
  full.write(record('f'));
  full.close();
  assert.deepEqual(written, ['ERROR audit log /dev/full: ENOSPC; 2 audit line(s) not written in full\n']);
});
