import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSelfConnected } from '../../lib/salt/channel.js';
import { applyMasterDefaults } from '../../lib/salt/config.js';
import { EventBus, eventBusOptions } from '../../lib/salt/event-bus.js';
import { ChannelClosedError, ConnectionLostError, RequestTimeoutError } from '../../lib/salt/errors.js';
import { ZmqRequestChannel, requestAddress } from '../../lib/salt/zmq-channel.js';
import { startEventPublisher, startReqServerPeer, startRouterPeer, type RoutedRequest } from '../support/peers.js';
import { noCapture, reqserver } from '../support/wire.js';
import { waitFor } from '../support/event-bus.js';

function channel(t: TestContext, address: string, timeoutMs = 500): ZmqRequestChannel {
  const ch = new ZmqRequestChannel({ address, timeoutMs });
  t.after(() => ch.close());
  return ch;
}

describe('requestAddress', () => {
  it('connects to loopback when the master binds every interface', () => {
    assert.equal(requestAddress(applyMasterDefaults({})), 'tcp://127.0.0.1:4506');
    assert.equal(requestAddress(applyMasterDefaults({ interface: '::', ret_port: 14506 })), 'tcp://[::1]:14506');
  });
  it('uses the interface the master binds', () => {
    assert.equal(requestAddress(applyMasterDefaults({ interface: '10.1.2.3', ret_port: 4510 })), 'tcp://10.1.2.3:4510');
    assert.equal(requestAddress(applyMasterDefaults({ interface: 'fe80::1' })), 'tcp://[fe80::1]:4506');
  });
});

describe('RequestChannel', () => {
  it('sends the captured request bytes with a correlation envelope and returns the decoded reply', { skip: noCapture }, async (t) => {
    const byLoad = new Map(Object.values(reqserver).map((c) => [c.request_msgpack_b64, c]));
    const peer = await startRouterPeer(async (r) => {
      // [routing id, correlation id, '', payload], as the master's ROUTER sees a DEALER's request
      assert.equal(r.frames.length, 4);
      assert.equal(r.frames[2].length, 0);
      const c = byLoad.get(r.frames[3].toString('base64'));
      assert.ok(c, 'the payload is byte for byte a captured request');
      await r.replyRaw(Buffer.from(c.reply_msgpack_b64, 'base64'));
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address);
    for (const [name, c] of Object.entries(reqserver)) {
      assert.deepEqual(await ch.send(c.request), c.reply, name);
    }
    assert.equal(peer.received.length, Object.keys(reqserver).length);
    assert.equal(ch.pending, 0);
  });

  it('carries 200 requests at once, answered out of order, each to its own caller', async (t) => {
    const held: RoutedRequest[] = [];
    let releaseAll!: () => void;
    const allIn = new Promise<void>((resolve) => (releaseAll = resolve));
    const peer = await startRouterPeer((r) => {
      held.push(r);
      if (held.length === 200) releaseAll();
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address, 5000);
    const replies = Array.from({ length: 200 }, (_, i) => ch.send({ cmd: 'ping', n: i }));
    await allIn;
    assert.equal(ch.pending, 200);
    // One connection: every request came from the same ZeroMQ peer.
    assert.equal(new Set(held.map((r) => r.frames[0].toString('hex'))).size, 1);
    // Answer in a shuffled order.
    const order = held.map((_, i) => i).sort(() => Math.random() - 0.5);
    for (const i of order) await held[i].reply({ n: held[i].payload.load.n, squared: held[i].payload.load.n ** 2 });
    const results = await Promise.all(replies);
    results.forEach((reply, i) => assert.deepEqual(reply, { n: i, squared: i * i }));
    assert.equal(ch.pending, 0);
  });

  it("works through the master's ROUTER → DEALER → REP worker front", async (t) => {
    const peer = await startReqServerPeer(async (load) => {
      await sleep(Math.random() * 20); // workers finish in any order
      return { cmd: load.cmd, got: load.n };
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address, 5000);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => ch.send({ cmd: 'wheel', n: i })));
    results.forEach((reply, i) => assert.deepEqual(reply, { cmd: 'wheel', got: i }));
  });

  it('times a request out, drops its late reply, and goes on working', async (t) => {
    const held: RoutedRequest[] = [];
    const peer = await startRouterPeer(async (r) => {
      if (r.payload.load.cmd === 'slow') held.push(r);
      else await r.reply({ answer: r.payload.load.cmd });
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address);
    await assert.rejects(ch.send({ cmd: 'slow' }, 100), (err: Error) => {
      assert.ok(err instanceof RequestTimeoutError);
      assert.match(err.message, /within 100 ms/);
      return true;
    });
    assert.equal(ch.pending, 0);
    await held[0].reply({ answer: 'too late' }); // must not be taken as the next reply
    assert.deepEqual(await ch.send({ cmd: 'next' }), { answer: 'next' });
    assert.equal(ch.pending, 0);
  });

  it('uses the per-request timeout over the default', async (t) => {
    const peer = await startRouterPeer(async (r) => {
      await sleep(150);
      await r.reply({ ok: true });
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address, 50);
    await assert.rejects(ch.send({ cmd: 'x' }), RequestTimeoutError);
    assert.deepEqual(await ch.send({ cmd: 'x' }, 2000), { ok: true });
  });

  it('times out, rather than hangs, when nothing listens at the address', async (t) => {
    // A socket path nobody binds: a closed libzmq peer's TCP port goes on
    // accepting for a moment (its I/O thread closes it later) and may then
    // drop what was written to it, and a free port may be taken by another test.
    const dir = mkdtempSync(path.join(tmpdir(), 'salt-nothing-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const address = `ipc://${path.join(dir, 'workers.ipc')}`;
    const ch = channel(t, address);
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => ch.send({ cmd: 'ping' }, 150)));
    for (const o of outcomes) assert.ok(o.status === 'rejected' && o.reason instanceof RequestTimeoutError);
    assert.equal(ch.pending, 0);
  });

  it('rejects an undecodable reply and ignores frames that are not a reply', async (t) => {
    const peer = await startRouterPeer(async (r) => {
      if (r.payload.load.cmd === 'garbage')
        await r.replyRaw(Buffer.from([0x82, 0xa1])); // truncated map
      else if (r.payload.load.cmd === 'stray') {
        // a reply for an id never sent, then one without the delimiter: both ignored
        const [routing] = r.frames;
        await r.sendFrames([routing, Buffer.from([0, 0, 0, 99]), Buffer.alloc(0), Buffer.from([0x81, 0xa1, 0x78, 0x01])]);
        await r.sendFrames([routing, Buffer.from([0x81, 0xa1, 0x78, 0x02])]);
        await r.reply({});
      } else await r.reply({ fine: true });
    });
    t.after(() => peer.close());
    const ch = channel(t, peer.address);
    await assert.rejects(ch.send({ cmd: 'garbage' }), /Undecodable reply/);
    assert.deepEqual(await ch.send({ cmd: 'stray' }), {});
    assert.deepEqual(await ch.send({ cmd: 'ok' }), { fine: true });
  });

  it('close() rejects everything pending, and later sends, with ChannelClosedError', async (t) => {
    const peer = await startRouterPeer(() => {});
    t.after(() => peer.close());
    const ch = new ZmqRequestChannel({ address: peer.address, timeoutMs: 5000 });
    const inFlight = [ch.send({ cmd: 'a' }), ch.send({ cmd: 'b' })];
    assert.equal(ch.pending, 2);
    ch.close();
    for (const p of inFlight) await assert.rejects(p, ChannelClosedError);
    assert.equal(ch.pending, 0);
    await assert.rejects(ch.send({ cmd: 'c' }), ChannelClosedError);
    ch.close(); // twice is fine
  });

  it('refuses a load it cannot encode without sending anything', async (t) => {
    const peer = await startRouterPeer();
    t.after(() => peer.close());
    const ch = channel(t, peer.address);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(ch.send(circular));
    assert.equal(ch.pending, 0);
    assert.deepEqual(await ch.send({ cmd: 'ok' }), { echo: { cmd: 'ok' } });
  });

  it('rejects a malformed address', () => {
    assert.throws(() => new ZmqRequestChannel({ address: '127.0.0.1:4506' }), TypeError);
  });
});

describe('master restart', () => {
  it('the channel and the bus both recover by themselves when the master comes back on the same port and path', async (t) => {
    const sockDir = mkdtempSync(path.join(tmpdir(), 'salt-sock-'));
    t.after(() => rmSync(sockDir, { recursive: true, force: true }));
    const opts = applyMasterDefaults({ sock_dir: sockDir });
    const busOptions = eventBusOptions(opts);
    assert.equal(busOptions.path, path.join(sockDir, 'master_event_pub.ipc'));

    let publisher = await startEventPublisher({ path: busOptions.path! });
    let peer = await startRouterPeer((r) => r.reply({ up: r.payload.load.n }));
    const address = peer.address;
    t.after(async () => {
      peer.close();
      await publisher.close();
    });

    const bus = new EventBus({ ...busOptions, reconnectMs: 50 });
    t.after(() => bus.close());
    const states: string[] = [];
    bus.on('connect', () => states.push('connect'));
    bus.on('disconnect', () => states.push('disconnect'));
    bus.start();
    await bus.ready(2000);
    const ch = new ZmqRequestChannel({ address, timeoutMs: 300, reconnectMs: 50 });
    t.after(() => ch.close());
    assert.deepEqual(await ch.send({ n: 1 }), { up: 1 });

    // The master goes away.
    const disconnected = new Promise((resolve) => bus.once('disconnect', resolve));
    peer.close();
    await publisher.close();
    await disconnected;
    assert.equal(bus.connected, false);
    // Sent before the channel has seen its socket close, the request would
    // fail as written to a lost connection instead: wait until it has.
    for (const until = performance.now() + 2000; ch.connected && performance.now() < until; ) await sleep(10);
    await assert.rejects(ch.send({ n: 2 }, 200), RequestTimeoutError);

    // ...and comes back on the same port and socket path.
    const seen: number[] = [];
    peer = await startRouterPeer((r) => {
      seen.push(r.payload.load.n);
      return r.reply({ up: r.payload.load.n });
    }, address);
    publisher = await startEventPublisher({ path: busOptions.path! });
    await bus.ready(2000);
    assert.equal(bus.connected, true);
    assert.deepEqual(await ch.send({ n: 3 }, 2000), { up: 3 });
    assert.deepEqual(seen, [3], 'the request sent while the master was down was not delivered late');
    assert.deepEqual(states, ['connect', 'disconnect', 'connect']);

    // The bus delivers again.
    await publisher.waitForClients(1);
    const event = waitFor(bus, 'salt/job/1/ret/m', 1000);
    await publisher.publish('salt/job/1/ret/m', { back: true });
    assert.deepEqual((await event).data, { back: true });
  });
});

describe('connection lost with requests written', () => {
  it('fails them at once with ConnectionLostError instead of waiting out their timeout, then works on the new connection', async (t) => {
    let got!: () => void;
    const received = new Promise<void>((resolve) => (got = resolve));
    let peer = await startRouterPeer(() => got()); // takes the request, never answers
    const address = peer.address;
    t.after(() => peer.close());
    const ch = new ZmqRequestChannel({ address, timeoutMs: 10_000, reconnectMs: 50 });
    t.after(() => ch.close());

    const started = performance.now();
    const lost = ch.send({ n: 1 });
    await received;
    assert.equal(ch.pending, 1);
    peer.close(); // the master dies holding the request
    await assert.rejects(lost, ConnectionLostError);
    assert.ok(performance.now() - started < 5_000, 'rejected long before the 10 s timeout');
    assert.equal(ch.pending, 0);

    peer = await startRouterPeer((r) => r.reply({ up: r.payload.load.n }), address);
    assert.deepEqual(await ch.send({ n: 2 }, 3000), { up: 2 });
  });
});

describe('a connection that meets itself', () => {
  it('is told apart from one that reached a listener (a channel drops it and connects again)', async (t) => {
    // Bind the source port to the destination port: a simultaneous open with ourselves, which a
    // connect to a free loopback port can also meet by chance.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const self = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1', localPort: port });
    t.after(() => self.destroy());
    await new Promise<void>((resolve, reject) => self.once('connect', resolve).once('error', reject));
    assert.equal(isSelfConnected(self), true);

    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const other = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
    t.after(() => other.destroy());
    await new Promise<void>((resolve) => other.once('connect', resolve));
    assert.equal(isSelfConnected(other), false);
  });
});
