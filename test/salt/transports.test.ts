/**
 * Choosing the transport from the master config: the channel for
 * `transport`, the TLS options read from `ssl`, the socket that says the
 * master runs; then every client through the dispatcher on a tcp and a ws
 * master double, as they run on zeromq.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetapiClient } from '../../lib/clients/netapi.js';
import { applyMasterDefaults, loadMasterConfig } from '../../lib/salt/config.js';
import { ConfigError } from '../../lib/salt/errors.js';
import { ZmqRequestChannel } from '../../lib/salt/zmq-channel.js';
import { TcpRequestChannel } from '../../lib/salt/tcp-channel.js';
import { tlsConnectOptions } from '../../lib/salt/tls-options.js';
import { openRequestChannel } from '../../lib/salt/transports.js';
import { WsRequestChannel } from '../../lib/salt/ws-channel.js';
import { ServiceUnavailableError } from '../../lib/errors.js';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { selfSignedCert, type SelfSigned } from '../support/tls.js';

let certDir: string;
let cert: SelfSigned;
before(() => {
  certDir = mkdtempSync(path.join(tmpdir(), 'salt-tls-'));
  cert = selfSignedCert(certDir);
});
after(() => rmSync(certDir, { recursive: true, force: true }));

describe('the transport from the master config', () => {
  it('opens the channel of its transport, zeromq by default', () => {
    for (const [transport, kind] of [
      [undefined, ZmqRequestChannel],
      ['zeromq', ZmqRequestChannel],
      ['tcp', TcpRequestChannel],
      ['ws', WsRequestChannel],
    ] as const) {
      const ch = openRequestChannel(applyMasterDefaults({ ret_port: 1, ...(transport ? { transport } : {}) }), { timeoutMs: 100 });
      try {
        assert.ok(ch instanceof kind, String(transport));
      } finally {
        ch.close();
      }
    }
  });

  it('refuses a transport Salt does not have, and an ssl file it cannot read, naming them', () => {
    assert.throws(
      () => openRequestChannel(applyMasterDefaults({ transport: 'rabbitmq' }), { timeoutMs: 100 }),
      (err: Error) => err instanceof ConfigError && /"rabbitmq".*zeromq, tcp, ws/.test(err.message),
    );
    assert.throws(
      () => openRequestChannel(applyMasterDefaults({ transport: 'tcp', ssl: { ca_certs: '/nonexistent/ca.pem' } }), { timeoutMs: 100 }),
      (err: Error) => err instanceof ConfigError && /ssl ca_certs \/nonexistent\/ca\.pem: no such file/.test(err.message),
    );
  });
});

describe("TLS options from the master config's ssl", () => {
  it('no ssl (or false, null): plain TCP; true or {}: TLS checked against the system CAs', () => {
    for (const ssl of [undefined, null, false]) assert.equal(tlsConnectOptions(ssl, '127.0.0.1'), undefined);
    assert.deepEqual(tlsConnectOptions(true, '127.0.0.1'), { host: '127.0.0.1' });
    assert.deepEqual(tlsConnectOptions({}, 'salt.example'), { host: 'salt.example', servername: 'salt.example' });
  });

  it('reads certfile, keyfile (certfile when absent), ca_certs and verify_locations', () => {
    const o = tlsConnectOptions({ certfile: cert.certPath, keyfile: cert.keyPath, ca_certs: cert.certPath }, '127.0.0.1')!;
    assert.deepEqual([o.cert, o.key], [cert.cert, cert.key]);
    assert.ok(Array.isArray(o.ca) && o.ca.includes(cert.cert.toString('latin1')), 'ca_certs added');
    assert.ok((o.ca as string[]).length > 1, 'to the system CAs, as Python adds to its defaults');
    assert.deepEqual(tlsConnectOptions({ certfile: cert.certPath }, '127.0.0.1')!.key, cert.cert);
    const v = tlsConnectOptions({ verify_locations: [cert.certPath, { cadata: 'PEM' }, { capath: certDir }] }, '127.0.0.1')!;
    assert.equal((v.ca as string[]).filter((c) => c === cert.cert.toString('latin1')).length, 2, 'the file, and again from its directory');
    assert.ok((v.ca as string[]).includes('PEM'));
  });

  it('cert_reqs CERT_NONE (or 0) turns checking off; ssl_version pins the version; ciphers pass through', () => {
    for (const reqs of ['CERT_NONE', 'cert_none', 0]) {
      const o = tlsConnectOptions({ cert_reqs: reqs }, '127.0.0.1')!;
      assert.equal(o.rejectUnauthorized, false);
      assert.equal(o.checkServerIdentity!('x', {} as never), undefined);
    }
    assert.equal(tlsConnectOptions({ cert_reqs: 'CERT_REQUIRED' }, '127.0.0.1')!.rejectUnauthorized, undefined);
    assert.throws(() => tlsConnectOptions({ cert_reqs: 'MAYBE' }, 'h'), ConfigError);
    const v = tlsConnectOptions({ ssl_version: 'PROTOCOL_TLSv1_2', ciphers: 'ECDHE+AESGCM' }, 'h')!;
    assert.deepEqual([v.minVersion, v.maxVersion, v.ciphers], ['TLSv1.2', 'TLSv1.2', 'ECDHE+AESGCM']);
  });
});

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };

for (const transport of ['tcp', 'ws'] as const) {
  describe(`every client over ${transport}`, () => {
    let master: SaltMasterDouble;
    let netapi: NetapiClient;
    before(async () => {
      master = await startMaster({ transport, minions: [{ id: 'minion1' }, { id: 'minion2' }] });
      netapi = new NetapiClient(loadMasterConfig(master.configPath), { requestTimeoutMs: 3000 });
      await master.waitForBusClients(1);
    });
    after(async () => {
      netapi.close();
      await master.close();
    });

    test('local, local_async, local_subset, local_batch', async () => {
      assert.deepEqual(await netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED }), { minion1: true, minion2: true });
      const async = (await netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED })) as {
        jid: string;
        minions: string[];
      };
      assert.match(async.jid, /^\d{20}$/);
      assert.deepEqual(async.minions, ['minion1']);
      const subset = (await netapi.run({ client: 'local_subset', tgt: '*', fun: 'test.ping', subset: 1, ...CRED })) as Record<
        string,
        unknown
      >;
      assert.equal(Object.keys(subset).length, 1);
      const batch = (await netapi.run({ client: 'local_batch', tgt: '*', fun: 'test.ping', batch: '1', ...CRED })) as object[];
      assert.deepEqual(Object.assign({}, ...batch), { minion1: true, minion2: true });
    });

    test('runner, runner_async, wheel, wheel_async', async () => {
      assert.deepEqual(await netapi.run({ client: 'runner', fun: 'test.arg', arg: [1], kwarg: { a: 1 }, ...CRED }), {
        args: [1],
        kwargs: { a: 1 },
      });
      assert.match(((await netapi.run({ client: 'runner_async', fun: 'test.arg', ...CRED })) as { jid: string }).jid, /^\d{20}$/);
      const wheel = (await netapi.run({ client: 'wheel', fun: 'key.list_all', ...CRED })) as { data: { return: { minions: string[] } } };
      assert.deepEqual(wheel.data.return.minions, ['minion1', 'minion2']);
      assert.match(((await netapi.run({ client: 'wheel_async', fun: 'key.list_all', ...CRED })) as { jid: string }).jid, /^\d{20}$/);
    });

    test("the master's refusals come through as on zeromq", async () => {
      await assert.rejects(netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED, password: 'wrong' }), { status: 401 });
    });

    test('master down: publish_pull.ipc gone, 503 at once; back up on the same port: answers again', async () => {
      await master.stop();
      await sleep(1100); // the last "running" answer is reused for a second
      await assert.rejects(netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED }), ServiceUnavailableError);
      await master.start();
      await master.waitForBusClients(1, 3000);
      assert.deepEqual(await netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }), { minion1: true });
    });
  });

  test(`${transport} with TLS end to end: the master's ssl, the dispatcher's request over it`, async (t) => {
    const master = await startMaster({ transport, tls: { key: cert.key, cert: cert.cert }, config: { ssl: { ca_certs: cert.certPath } } });
    const netapi = new NetapiClient(loadMasterConfig(master.configPath), { requestTimeoutMs: 3000 });
    t.after(async () => {
      netapi.close();
      await master.close();
    });
    await master.waitForBusClients(1);
    assert.deepEqual(await netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }), { minion1: true });
  });
}

test("a master that can't be reached: 503, and the log says why", async (t) => {
  const master = await startMaster({ transport: 'tcp' });
  const opts = loadMasterConfig(master.configPath);
  await master.stop();
  const { writeFile } = await import('node:fs/promises');
  await writeFile(master.workersIpcPath, ''); // a crashed master leaves its socket file
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
  const netapi = new NetapiClient(opts, { requestTimeoutMs: 300, logger });
  t.after(async () => {
    netapi.close();
    await master.close();
  });
  await assert.rejects(netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED }), ServiceUnavailableError);
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0],
    /^could not publish the job: No reply from the Salt master at tcp:\/\/127\.0\.0\.1:\d+ within 300 ms \(not connected: ECONNREFUSED/,
  );
});

test('ipc_mode: tcp has no socket file: a connection to the master says it runs', async (t) => {
  const master = await startMaster({ transport: 'tcp', ipcMode: 'tcp' });
  const netapi = new NetapiClient(loadMasterConfig(master.configPath), { requestTimeoutMs: 2000 });
  t.after(async () => {
    netapi.close();
    await master.close();
  });
  while (!netapi.stats().busConnected) await sleep(10);
  assert.deepEqual(await netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }), { minion1: true });
  await master.stop();
  await sleep(1100);
  await assert.rejects(netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }), ServiceUnavailableError);
});
