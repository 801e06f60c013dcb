/**
 * The tcp and ws request channels against the master's request server of
 * that transport (test/support/master-transports.ts), a test per concept:
 * framing, many in flight, timeouts, a dropped connection, reconnects, TLS.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { describe, it, before, after, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestChannel } from '../../lib/salt/channel.js';
import { ChannelClosedError, ConnectionLostError, RequestTimeoutError } from '../../lib/salt/errors.js';
import { TcpRequestChannel } from '../../lib/salt/tcp-channel.js';
import { WsRequestChannel } from '../../lib/salt/ws-channel.js';
import { tlsConnectOptions } from '../../lib/salt/tls-options.js';
import {
  startTcpRequestServer,
  startWsRequestServer,
  type IncomingRequest,
  type RequestHandler,
  type TransportServer,
  type TransportServerOptions,
} from '../support/master-transports.js';
import { selfSignedCert, type SelfSigned } from '../support/tls.js';
import { noCapture, reqserver } from '../support/wire.js';

type Kind = 'tcp' | 'ws';
const echo: RequestHandler = (r) => r.reply({ echo: r.payload.load });

async function server(
  t: TestContext,
  kind: Kind,
  onRequest: RequestHandler = echo,
  options: TransportServerOptions = {},
): Promise<TransportServer> {
  const s = await (kind === 'tcp' ? startTcpRequestServer : startWsRequestServer)(onRequest, options);
  t.after(() => s.close());
  return s;
}

function channel(
  t: TestContext,
  kind: Kind,
  port: number,
  extra: { timeoutMs?: number; reconnectMs?: number; tls?: ReturnType<typeof tlsConnectOptions>; connections?: number } = {},
): RequestChannel {
  const options = { host: '127.0.0.1', port, timeoutMs: 500, reconnectMs: 50, ...extra };
  const ch = kind === 'tcp' ? new TcpRequestChannel(options) : new WsRequestChannel({ connections: 1, ...options });
  t.after(() => ch.close());
  return ch;
}

let certDir: string;
let cert: SelfSigned;
before(() => {
  certDir = mkdtempSync(path.join(tmpdir(), 'salt-tls-'));
  cert = selfSignedCert(certDir);
});
after(() => rmSync(certDir, { recursive: true, force: true }));

describe('tcp framing', () => {
  it("sends each request as {head: {mid}, body: payload} and takes the reply under the request's mid", { skip: noCapture }, async (t) => {
    const byBody = new Map(Object.values(reqserver).map((c) => [c.request_msgpack_b64, c]));
    const s = await server(t, 'tcp', (r) => {
      const c = [...byBody.values()].find((x) => JSON.stringify(x.request) === JSON.stringify(r.payload.load));
      assert.ok(c, 'the body is a captured request');
      assert.deepEqual(Object.keys(r.head as object), ['mid']);
      r.reply(c.reply);
    });
    const ch = channel(t, 'tcp', s.port);
    for (const [name, c] of Object.entries(reqserver)) assert.deepEqual(await ch.send(c.request), c.reply, name);
    const mids = s.received.map((r) => (r.head as { mid: number }).mid);
    assert.deepEqual(
      mids,
      mids.map((_, i) => i + 1),
      'ids 1, 2, 3, ...',
    );
  });

  it('ignores a reply under an id never sent and a message that is not {head, body}', async (t) => {
    const s = await server(t, 'tcp', (r) => {
      r.replyRaw(Buffer.concat([encodeFrame({ mid: 999 }, { stray: 1 }), Buffer.from([0x93, 1, 2, 3])]));
      r.reply({ fine: true });
    });
    const ch = channel(t, 'tcp', s.port);
    assert.deepEqual(await ch.send({ cmd: 'x' }), { fine: true });
  });

  it('drops a connection whose bytes are not msgpack, failing what was written, and reconnects', async (t) => {
    let first = true;
    const s = await server(t, 'tcp', (r) => {
      if (first) r.replyRaw(Buffer.from([0xc1, 0xc1]));
      else r.reply({ again: true });
      first = false;
    });
    const ch = channel(t, 'tcp', s.port, { timeoutMs: 3000 });
    await assert.rejects(ch.send({ cmd: 'a' }), ConnectionLostError);
    assert.deepEqual(await ch.send({ cmd: 'b' }), { again: true });
    assert.equal(s.accepted, 2);
  });
});

describe('tcp connecting', () => {
  it('drops a connection whose TLS handshake never comes, tries again, and says why', async (t) => {
    const accepted: net.Socket[] = [];
    const silent = net.createServer((socket) => void accepted.push(socket)); // takes the connection, says nothing
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const s of accepted) s.destroy();
      silent.close();
    });
    const port = (silent.address() as net.AddressInfo).port;
    const ch = new TcpRequestChannel({
      host: '127.0.0.1',
      port,
      tls: tlsConnectOptions(true, '127.0.0.1'),
      connectTimeoutMs: 100,
      reconnectMs: 20,
    });
    t.after(() => ch.close());
    await assert.rejects(ch.send({ cmd: 'x' }, 400), /not connected: no TLS handshake within 100 ms/);
    assert.ok(accepted.length >= 2, 'connected again after dropping the first');
  });
});

describe('ws framing', () => {
  it('sends each request as one binary message, byte for byte payload.dumps, and reads one back', { skip: noCapture }, async (t) => {
    const byBytes = new Map(Object.values(reqserver).map((c) => [c.request_msgpack_b64, c]));
    const s = await server(t, 'ws', (r) => {
      const c = byBytes.get(r.raw!.toString('base64'));
      assert.ok(c, 'the message is byte for byte a captured request');
      r.replyRaw(Buffer.from(c.reply_msgpack_b64, 'base64'));
    });
    const ch = channel(t, 'ws', s.port);
    for (const [name, c] of Object.entries(reqserver)) assert.deepEqual(await ch.send(c.request), c.reply, name);
  });

  it('matches replies in order: a reply that comes after its request timed out is dropped, the next one gets its own', async (t) => {
    const s = await server(t, 'ws', async (r) => {
      if (r.payload.load.cmd === 'slow') await sleep(300);
      r.reply({ answer: r.payload.load.cmd });
    });
    const ch = channel(t, 'ws', s.port, { timeoutMs: 2000 });
    const slow = ch.send({ cmd: 'slow' }, 100);
    const next = ch.send({ cmd: 'next' }); // queued behind 'slow' on the one connection
    await assert.rejects(slow, RequestTimeoutError);
    assert.deepEqual(await next, { answer: 'next' });
    assert.equal(ch.pending, 0);
  });

  it('rejects an undecodable reply and goes on', async (t) => {
    const s = await server(t, 'ws', (r) => (r.payload.load.cmd === 'garbage' ? r.replyRaw(Buffer.from([0x82, 0xa1])) : r.reply({ ok: 1 })));
    const ch = channel(t, 'ws', s.port);
    await assert.rejects(ch.send({ cmd: 'garbage' }), /Undecodable reply/);
    assert.deepEqual(await ch.send({ cmd: 'ok' }), { ok: 1 });
  });

  it('keeps several connections and sends each request to the one with the fewest unanswered', async (t) => {
    const held: IncomingRequest[] = [];
    const s = await server(t, 'ws', (r) => void held.push(r));
    const ch = channel(t, 'ws', s.port, { connections: 4, timeoutMs: 5000 });
    while (s.open < 4) await sleep(10);
    const replies = Array.from({ length: 4 }, (_, n) => ch.send({ n }));
    while (held.length < 4) await sleep(10);
    assert.deepEqual(new Set(held.map((r) => r.connection)).size, 4, 'one slow request does not hold up the others');
    for (const r of held) r.reply({ n: r.payload.load.n });
    assert.deepEqual(await Promise.all(replies), [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }]);
  });
});

for (const kind of ['tcp', 'ws'] as const) {
  describe(`${kind} channel`, () => {
    it('carries 200 requests at once on one connection, each reply to its own caller', async (t) => {
      const held: IncomingRequest[] = [];
      const s = await server(t, kind, (r) => {
        // tcp answers in any order (here: once all are in, shuffled); ws one at a time, in order.
        if (kind === 'ws') return r.reply({ n: r.payload.load.n, squared: r.payload.load.n ** 2 });
        held.push(r);
        if (held.length < 200) return;
        for (const h of held.sort(() => Math.random() - 0.5)) h.reply({ n: h.payload.load.n, squared: h.payload.load.n ** 2 });
      });
      const ch = channel(t, kind, s.port, { timeoutMs: 5000 });
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ch.send({ cmd: 'ping', n: i })));
      results.forEach((reply, i) => assert.deepEqual(reply, { n: i, squared: i * i }));
      assert.equal(s.accepted, 1, 'one connection');
      assert.equal(ch.pending, 0);
    });

    it('keeps its descriptors flat: 1000 requests in waves, timeouts among them, open no new socket', async (t) => {
      const s = await server(t, kind, async (r) => {
        if (r.payload.load.n % 100 === 0) await sleep(60); // some answered after their timeout
        r.reply({ n: r.payload.load.n });
      });
      const ch = channel(t, kind, s.port, { timeoutMs: 2000 });
      await ch.send({ n: 1 });
      const fds = () => readdirSync('/proc/self/fd').length;
      const before = fds();
      for (let wave = 0; wave < 5; wave++) {
        await Promise.allSettled(Array.from({ length: 200 }, (_, i) => ch.send({ n: wave * 200 + i }, 40)));
      }
      assert.equal(s.accepted, 1, 'still the first connection');
      assert.ok(fds() <= before + 2, `descriptors ${before} -> ${fds()}`);
      assert.equal(ch.pending, 0);
    });

    it('times a request out and goes on working; the per-request timeout wins over the default', async (t) => {
      const s = await server(t, kind, async (r) => {
        if (r.payload.load.cmd === 'slow') await sleep(150);
        r.reply({ answer: r.payload.load.cmd });
      });
      const ch = channel(t, kind, s.port, { timeoutMs: 50 });
      await assert.rejects(
        ch.send({ cmd: 'slow' }),
        (err: Error) => err instanceof RequestTimeoutError && /within 50 ms/.test(err.message),
      );
      assert.deepEqual(await ch.send({ cmd: 'slow' }, 2000), { answer: 'slow' });
      assert.deepEqual(await ch.send({ cmd: 'next' }, 2000), { answer: 'next' });
      assert.equal(ch.pending, 0);
    });

    it('times out, rather than hangs, when nothing listens, and says why', async (t) => {
      const s = await server(t, kind);
      await s.close();
      const ch = channel(t, kind, s.port);
      const outcomes = await Promise.allSettled(Array.from({ length: 3 }, () => ch.send({ cmd: 'ping' }, 200)));
      for (const o of outcomes) {
        assert.ok(o.status === 'rejected' && o.reason instanceof RequestTimeoutError);
        assert.match(o.reason.message, /not connected: ECONNREFUSED/);
      }
      assert.equal(ch.connected, false);
    });

    it('fails the requests written to a connection that drops at once, then works on a new one', async (t) => {
      let drop = true;
      const s = await server(t, kind, (r) => {
        if (drop)
          r.dropConnection(); // the master dies holding the request
        else r.reply({ up: r.payload.load.n });
      });
      const ch = channel(t, kind, s.port, { timeoutMs: 10_000 });
      const started = performance.now();
      await assert.rejects(ch.send({ n: 1 }), ConnectionLostError);
      assert.ok(performance.now() - started < 3000, 'long before the 10 s timeout');
      drop = false;
      assert.deepEqual(await ch.send({ n: 2 }), { up: 2 });
    });

    it('reconnects when the master comes back on the same port; what waited unsent goes out then, what timed out never', async (t) => {
      let s = await server(t, kind, (r) => r.reply({ up: r.payload.load.n }));
      const port = s.port;
      const ch = channel(t, kind, port, { timeoutMs: 2000 });
      assert.deepEqual(await ch.send({ n: 1 }), { up: 1 });
      await s.close();
      while (ch.connected) await sleep(10);
      await assert.rejects(ch.send({ n: 2 }, 100), RequestTimeoutError);
      const waiting = ch.send({ n: 3 });
      s = await server(t, kind, (r) => r.reply({ up: r.payload.load.n }), { port });
      assert.deepEqual(await waiting, { up: 3 });
      assert.deepEqual(
        s.received.map((r) => r.payload.load.n),
        [3],
      );
    });

    it('close() rejects everything pending, and later sends, with ChannelClosedError', async (t) => {
      const s = await server(t, kind, () => {});
      const ch = channel(t, kind, s.port, { timeoutMs: 5000 });
      const inFlight = [ch.send({ cmd: 'a' }), ch.send({ cmd: 'b' })];
      assert.equal(ch.pending, 2);
      ch.close();
      for (const p of inFlight) await assert.rejects(p, ChannelClosedError);
      await assert.rejects(ch.send({ cmd: 'c' }), ChannelClosedError);
      assert.equal(ch.pending, 0);
    });

    it('refuses a load it cannot encode without sending anything', async (t) => {
      const s = await server(t, kind);
      const ch = channel(t, kind, s.port);
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await assert.rejects(ch.send(circular));
      assert.deepEqual(await ch.send({ cmd: 'ok' }), { echo: { cmd: 'ok' } });
      assert.equal(s.received.length, 1);
    });

    it('speaks TLS when the config has ssl: the master checked against ca_certs, or not at all with CERT_NONE', async (t) => {
      const s = await server(t, kind, echo, { tls: { key: cert.key, cert: cert.cert } });
      const ca = channel(t, kind, s.port, { tls: tlsConnectOptions({ ca_certs: cert.certPath }, '127.0.0.1') });
      assert.deepEqual(await ca.send({ cmd: 'ca' }), { echo: { cmd: 'ca' } });
      const none = channel(t, kind, s.port, { tls: tlsConnectOptions({ cert_reqs: 'CERT_NONE' }, '127.0.0.1') });
      assert.deepEqual(await none.send({ cmd: 'none' }), { echo: { cmd: 'none' } });
      // An unknown certificate with checking on: never connected, and the timeout says why.
      const strict = channel(t, kind, s.port, { tls: tlsConnectOptions(true, '127.0.0.1') });
      await assert.rejects(strict.send({ cmd: 'x' }, 300), /not connected: .*(SELF_SIGNED|self[- ]signed)/i);
      // Plain TCP to a TLS master gets nowhere either: a request written is lost with the connection.
      const plain = channel(t, kind, s.port);
      await assert.rejects(
        plain.send({ cmd: 'x' }, 300),
        (err) => err instanceof RequestTimeoutError || err instanceof ConnectionLostError,
      );
    });

    it('presents the client certificate of certfile/keyfile to a master that requires one', async (t) => {
      const s = await server(t, kind, echo, {
        tls: { key: cert.key, cert: cert.cert, ca: cert.cert, requestCert: true, rejectUnauthorized: true },
      });
      const withCert = channel(t, kind, s.port, {
        tls: tlsConnectOptions({ ca_certs: cert.certPath, certfile: cert.certPath, keyfile: cert.keyPath }, '127.0.0.1'),
      });
      assert.deepEqual(await withCert.send({ cmd: 'mine' }), { echo: { cmd: 'mine' } });
      const without = channel(t, kind, s.port, { tls: tlsConnectOptions({ ca_certs: cert.certPath }, '127.0.0.1') });
      await assert.rejects(
        without.send({ cmd: 'x' }, 300),
        (err) => err instanceof RequestTimeoutError || err instanceof ConnectionLostError,
      );
    });
  });
}

/** A tcp frame built by hand (msgpack fixmap {head, body}), not by the code under test. */
function encodeFrame(head: Record<string, number>, body: Record<string, number>): Buffer {
  const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  const map = (m: Record<string, number>) =>
    Buffer.concat([
      Buffer.from([0x80 | Object.keys(m).length]),
      ...Object.entries(m).flatMap(([k, v]) => [str(k), v < 128 ? Buffer.from([v]) : Buffer.from([0xcd, v >> 8, v & 0xff])]),
    ]);
  return Buffer.concat([Buffer.from([0x82]), str('head'), map(head), str('body'), map(body)]);
}
