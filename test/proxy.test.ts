/**
 * Behind a TLS-terminating proxy: the command runs behind a real nginx
 * (Debian's package; .ci/run installs it) configured with the README's
 * Deployment block and a throwaway self-signed certificate, and real HTTPS
 * requests go through it. nginx reaches the server from 127.0.0.2 and the
 * client connects from 127.0.0.3, so the access log tells the proxy's
 * address from the client's: the client's with --trust-proxy, the proxy's
 * without. Also the command's JSON log lines and its proxy-related options.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { BIN, repoRoot, startCommand, type Command } from './support/command.js';
import { selfSignedCert } from './support/tls.js';
import { request, type Reply } from './support/http.js';
import { createLogger } from '../lib/log.js';
import http from 'node:http';
import { createHandler } from '../lib/http/handler.js';
import { streamPost, type Streamed } from './support/ndjson.js';

const PASSWORD = 'hunter2-not-in-logs';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const PROXY_ADDRESS = '127.0.0.2';
const CLIENT_ADDRESS = '127.0.0.3';

type After = { after(fn: () => unknown): void };

/** nginx on PATH or in /usr/sbin (not on every user's PATH), else undefined. */
function findNginx(): string | undefined {
  for (const candidate of ['nginx', '/usr/sbin/nginx']) {
    if (spawnSync(candidate, ['-v'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return undefined;
}

/** Debian's nginx, a directory of the test's own and a throwaway certificate; the test skipped (failed in CI) without nginx. */
async function nginxOrSkip(t: TestContext): Promise<{ nginx: string; dir: string; cert: ReturnType<typeof selfSignedCert> } | undefined> {
  const nginx = findNginx();
  if (!nginx) {
    if (process.env.CI) assert.fail('nginx is not installed: .ci/run installs it (apt-get install nginx)');
    t.skip('nginx is not installed (apt-get install nginx): the proxy test needs it; CI installs it');
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-nginx-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { nginx, dir, cert: selfSignedCert(dir) };
}

/** SIGTERM, then the exit code. */
async function stop(command: Command): Promise<number | null> {
  command.child.kill('SIGTERM');
  return (await command.exited).code;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The README's Deployment nginx block, with this test's port, certificate and upstream. */
async function readmeServerBlock(port: number, certPath: string, keyPath: string, upstreamPort: number): Promise<string> {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const deployment = readme.slice(readme.indexOf('\n## Deployment\n'));
  const block = deployment.match(/```nginx\n(server \{[\s\S]*?\n\})\n```/);
  assert.ok(block, 'the README Deployment section has an nginx server block');
  let conf = block[1];
  const replace = (from: string, to: string) => {
    assert.equal(conf.split(from).length, 2, `the README nginx block has "${from}" once`);
    conf = conf.replace(from, to);
  };
  replace('listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`);
  replace('/etc/ssl/certs/salt.example.com.pem', certPath);
  replace('/etc/ssl/private/salt.example.com.key', keyPath);
  // The proxy connects from its own address, so the logs can tell it from the client.
  replace('proxy_pass http://127.0.0.1:8001;', `proxy_pass http://127.0.0.1:${upstreamPort};\n        proxy_bind ${PROXY_ADDRESS};`);
  assert.match(conf, /proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;/);
  return conf;
}

/**
 * nginx in the foreground with everything (pid, logs, temp files) in `dir`,
 * one TLS server per upstream; the ports it listens on once it accepts
 * connections. A port taken between choosing and binding: try new ones.
 */
async function startNginx(
  t: After,
  nginx: string,
  dir: string,
  upstreams: number[],
  cert: { certPath: string; keyPath: string },
): Promise<number[]> {
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(upstreams.map(() => freePort()));
    const servers = await Promise.all(upstreams.map((up, i) => readmeServerBlock(ports[i], cert.certPath, cert.keyPath, up)));
    const temp = (name: string) => `${name}_temp_path ${join(dir, `${name}-temp`)};`;
    const conf = [
      'daemon off;',
      'master_process on;',
      'worker_processes 1;',
      // As root nginx would run its worker as nobody, who can't enter the mkdtemp dir.
      ...(process.getuid?.() === 0 ? [`user ${userInfo().username};`] : []),
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} info;`,
      'events { worker_connections 64; }',
      'http {',
      `    access_log ${join(dir, 'access.log')};`,
      `    ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}`,
      ...servers,
      '}',
      '',
    ].join('\n');
    const confPath = join(dir, 'nginx.conf');
    await writeFile(confPath, conf);
    const child = spawn(nginx, ['-p', dir, '-c', confPath, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = once(child, 'exit');
    t.after(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGQUIT'); // graceful stop
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    });
    const ready = await Promise.race([
      Promise.all(ports.map((port) => connectable(port, 10_000))).then(() => true),
      exited.then(() => false),
    ]);
    if (ready) return ports;
    const log = `${err}${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`;
    if (!/Address already in use/.test(log) || attempt === 3) throw new Error(`nginx did not start:\n${log}`);
  }
}

/** Resolves once a TCP connection to the port succeeds (retrying), rejects after `ms`. */
async function connectable(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listening on ${port} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Real HTTPS: the certificate checked against the test's own CA, from the client address. */
function httpsRequest(port: number, ca: Buffer, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return request(port, {
    method: body === undefined ? 'GET' : 'POST',
    path: '/salt',
    body,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ca,
    localAddress: CLIENT_ADDRESS,
  });
}

test('behind nginx over TLS: real HTTPS requests; the access log names the client with --trust-proxy, the proxy without', async (t) => {
  const proxy = await nginxOrSkip(t);
  if (!proxy) return;
  const { nginx, dir, cert } = proxy;

  const master: SaltMasterDouble = await startMaster({ users: USERS });
  t.after(() => master.close());
  const trusting = await startCommand(t, ['-c', master.configPath, '--port', '0', '--trust-proxy', '--log-format', 'json']);
  const plain = await startCommand(t, ['-c', master.configPath, '--port', '0']);
  const [viaTrusting, viaPlain] = await startNginx(t, nginx, dir, [trusting.port, plain.port], cert);

  // The client writes its own X-Forwarded-For: nginx appends the address it
  // saw, and only that right-most entry is believed.
  const spoof = { 'x-forwarded-for': '198.51.100.9' };
  const run = [{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['through nginx'], kwarg: { n: 1 } }];
  const expected = '{"return":[{"args":["through nginx"],"kwargs":{"n":1}}]}';

  const ok = await httpsRequest(viaTrusting, cert.cert, run, spoof);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.headers['content-type'], 'application/json');
  assert.equal(ok.text, expected);
  const refused = await httpsRequest(viaTrusting, cert.cert, [{ ...CRED, password: 'wrong', client: 'runner', fun: 'test.arg' }]);
  assert.equal(refused.status, 401);
  assert.equal(refused.text, '{"return":"Authentication failure of type \\"eauth\\" occurred for user saltdev."}');
  const get = await httpsRequest(viaPlain, cert.cert);
  assert.equal(get.status, 200);
  const plainOk = await httpsRequest(viaPlain, cert.cert, run, spoof);
  assert.equal(plainOk.text, expected);
  // Plain HTTP to the TLS port is refused by nginx: nothing reaches the server in clear.
  const clear = await fetch(`http://127.0.0.1:${viaTrusting}/salt`).then((r) => r.status);
  assert.equal(clear, 400);

  // The request id round-trips through nginx, and is on the access and audit lines of that request; a bad one is replaced.
  const tagged = await httpsRequest(viaTrusting, cert.cert, run, { 'x-request-id': 'via-nginx-42' });
  assert.equal(tagged.headers['x-request-id'], 'via-nginx-42');
  const [accessLine] = await trusting.waitFor(/\{[^\n]*"msg":"access"[^\n]*"request_id":"via-nginx-42"[^\n]*\}/);
  assert.equal(JSON.parse(accessLine).client, CLIENT_ADDRESS);
  const [auditLine] = await trusting.waitFor(/\{[^\n]*"msg":"audit"[^\n]*"request_id":"via-nginx-42"[^\n]*\}/);
  assert.equal(JSON.parse(auditLine).address, CLIENT_ADDRESS);
  const badId = 'not ok; id';
  const replaced = await httpsRequest(viaTrusting, cert.cert, run, { 'x-request-id': badId });
  assert.match(String(replaced.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.ok(!trusting.stderr().includes(badId));

  await trusting.waitFor(/"status":401/);
  await plain.waitFor(/access method=POST .* status=200 /);
  assert.equal(await stop(trusting), 0);
  assert.equal(await stop(plain), 0);

  // --log-format json: every line one JSON object; access entries with their fields.
  const entries = trusting
    .stderr()
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const entry of entries) {
    assert.match(String(entry.time), /^\d{4}-\d\d-\d\dT/);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(entry.level as string));
    assert.equal(typeof entry.msg, 'string');
  }
  const access = entries.filter((e) => e.msg === 'access');
  assert.deepEqual(
    access.map(({ method, path, status, client }) => ({ method, path, status, client })),
    [
      { method: 'POST', path: '/salt', status: 200, client: CLIENT_ADDRESS },
      { method: 'POST', path: '/salt', status: 401, client: CLIENT_ADDRESS },
      // The two with X-Request-Id headers.
      { method: 'POST', path: '/salt', status: 200, client: CLIENT_ADDRESS },
      { method: 'POST', path: '/salt', status: 200, client: CLIENT_ADDRESS },
    ],
  );
  assert.equal(access[0].bytes, Buffer.byteLength(expected));
  assert.equal(typeof access[0].duration_ms, 'number');

  // Without --trust-proxy: the address the connection came from, nginx's.
  const plainAccess = plain
    .stderr()
    .split('\n')
    .filter((l) => l.includes(' access '));
  assert.equal(plainAccess.length, 2, plain.stderr());
  for (const line of plainAccess)
    assert.match(line, new RegExp(` client=${PROXY_ADDRESS.replace(/\./g, '\\.')} request_id=[0-9a-f-]{36}$`));

  // nginx's own log saw the same client.
  assert.match(await readFile(join(dir, 'access.log'), 'utf8'), new RegExp(`^${CLIENT_ADDRESS.replace(/\./g, '\\.')} `, 'm'));
  for (const log of [trusting.stderr(), plain.stderr()]) {
    assert.ok(!log.includes(PASSWORD) && !log.includes('198.51.100.9'), log);
  }
});

test('behind nginx: the lines of a streamed answer arrive as they are written, heartbeats too', async (t) => {
  const proxy = await nginxOrSkip(t);
  if (!proxy) return;
  const { nginx, dir, cert } = proxy;
  // Returns spread over 1.6 s; between them, 400 ms of quiet: a heartbeat each (every 250 ms).
  const delays = [0, 400, 800, 1200, 1600];
  const ids = delays.map((_, i) => `spread${i}`);
  const master = await startMaster({ users: USERS, minions: delays.map((delayMs, i) => ({ id: ids[i], delayMs })) });
  t.after(() => master.close());
  const handler = createHandler({ config: master.configPath, ndjsonHeartbeatMs: 250 });
  t.after(() => handler.close());
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const direct = (server.address() as net.AddressInfo).port;
  const [viaNginx] = await startNginx(t, nginx, dir, [direct], cert);

  const body = [{ ...CRED, client: 'local', tgt: 'spread*', fun: 'test.ping' }];
  const timed = async (read: () => Promise<Streamed>) => {
    const start = performance.timeOrigin + performance.now();
    return { start, streamed: await read() };
  };
  // The same request both ways at once: two jobs on the same minions, returning at the same times.
  const [straight, proxied] = await Promise.all([
    timed(() => streamPost(direct, { body })),
    timed(() => streamPost(viaNginx, { body, ca: cert.cert, localAddress: CLIENT_ADDRESS })),
  ]);
  assert.equal(proxied.streamed.status, 200, proxied.streamed.text);
  assert.equal(proxied.streamed.headers['content-type'], 'application/x-ndjson');
  const arrival = ({ start, streamed }: { start: number; streamed: Streamed }, id: string) => {
    const line = streamed.lines.find((l) => l.value.minion === id);
    assert.ok(line, `${id}'s line: ${streamed.text}`);
    return line.at - start;
  };
  for (const [i, id] of ids.entries()) {
    const [there, here] = [arrival(proxied, id), arrival(straight, id)];
    t.diagnostic(`${id} (returns after ${delays[i]} ms): through nginx at ${there.toFixed(0)} ms, directly at ${here.toFixed(0)} ms`);
    assert.ok(Math.abs(there - here) < 500, `${id}: ${there.toFixed(0)} ms through nginx, ${here.toFixed(0)} ms directly`);
    assert.ok(there < delays[i] + 500, `${id}: ${there.toFixed(0)} ms through nginx, its return after ${delays[i]} ms`);
  }
  // Not all at the end: the first return's line came well before the last return.
  const spread = arrival(proxied, ids.at(-1)!) - arrival(proxied, ids[0]);
  assert.ok(spread > 1000, `the lines through nginx came within ${spread.toFixed(0)} ms of each other`);
  const lines = proxied.streamed.lines;
  const beats = lines.filter((l) => l.value.heartbeat === true);
  t.diagnostic(`${beats.length} heartbeats through nginx`);
  const lastMinion = lines.findIndex((l) => l.value.minion === ids.at(-1));
  assert.ok(
    beats.some((beat) => lines.indexOf(beat) < lastMinion),
    'a heartbeat arrived through nginx between the returns',
  );
  assert.equal(lines.at(-1)!.value.done, true);
});

test('the command refuses a bad --log-format or rest_wsgi: trust_proxy with one line, exit 2', async (t) => {
  // Not `yes`: the master config is YAML 1.1, as Salt reads it, where yes is true.
  const master = await startMaster({ users: USERS, config: { rest_wsgi: { port: 0, trust_proxy: 'sometimes' } } });
  t.after(() => master.close());
  const runs = await Promise.all(
    [
      ['-c', master.configPath, '--log-format', 'xml', '--port', '0'],
      ['-c', master.configPath],
    ].map(async (args) => {
      const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
      // Should it start serving after all, the test fails instead of waiting.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const [code] = await once(child, 'close');
      clearTimeout(timer);
      return { code, err };
    }),
  );
  assert.deepEqual(runs[0], { code: 2, err: 'salt-rest-wsgi: invalid --log-format "xml": one of text, json\n' });
  assert.deepEqual(runs[1], {
    code: 2,
    err: `salt-rest-wsgi: invalid rest_wsgi: trust_proxy "sometimes" in ${master.configPath}: true or false\n`,
  });
});

test('JSON log lines: level filter, one line whatever the message holds, access fields without the query', () => {
  const written: string[] = [];
  const logger = createLogger({
    level: 'info',
    format: 'json',
    stream: { write: (line: string) => written.push(line) },
    timestamps: false,
  });
  logger.debug('dropped');
  logger.warn('two\nlines \u2028 and "quotes"');
  logger.access({ method: 'POST', url: '/salt?token=abc', status: 200, bytes: 56, durationMs: 1.26, client: '127.0.0.3' });
  assert.equal(written.length, 2);
  for (const line of written) {
    assert.ok(line.endsWith('\n'));
    assert.equal(line.slice(0, -1).split(/[\n\r\u2028\u2029]/).length, 1, line);
  }
  assert.deepEqual(JSON.parse(written[0]), { level: 'warn', msg: 'two\nlines \u2028 and "quotes"' });
  assert.deepEqual(JSON.parse(written[1]), {
    level: 'info',
    msg: 'access',
    method: 'POST',
    path: '/salt',
    status: 200,
    bytes: 56,
    duration_ms: 1.3,
    client: '127.0.0.3',
  });
});
