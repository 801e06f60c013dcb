/**
 * ZMTP 3, the DEALER side spoken by the request channel: framing against
 * bytes written out by hand from the spec (rfc.zeromq.org/spec/23), and the
 * channel against peers that are not libzmq's well-behaved ROUTER (the
 * ordinary cases, against libzmq itself, are in salt/zmq-channel.test.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RequestTimeoutError, ZmtpError } from '../../lib/salt/errors.js';
import { ZmqRequestChannel } from '../../lib/salt/zmq-channel.js';
import { FrameReader, checkGreeting, encodeMessage, greeting, readyCommand } from '../../lib/salt/zmtp.js';
import { encode } from '../../lib/salt/codec.js';
import { startRouterPeer } from '../support/peers.js';

/** Frames and commands a FrameReader found. */
function collect(): { reader: FrameReader; messages: string[][]; commands: string[] } {
  const messages: string[][] = [];
  const commands: string[] = [];
  const reader = new FrameReader({
    message: (frames) => messages.push(frames.map((f) => f.toString('latin1'))),
    command: (body) => commands.push(body.toString('latin1')),
  });
  return { reader, messages, commands };
}

describe('ZMTP framing', () => {
  it('writes the greeting and READY of the spec', () => {
    const g = greeting();
    assert.equal(g.length, 64);
    assert.deepEqual([...g.subarray(0, 12)], [0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0]);
    assert.equal(g.toString('latin1', 12, 32), 'NULL' + '\0'.repeat(16));
    assert.ok(g.subarray(32).every((b) => b === 0)); // as-server 0, filler
    // command flag, size 28, "\x05READY", "\x0bSocket-Type", 4-byte value size 6, "DEALER"
    const expected = Buffer.concat([
      Buffer.from([0x04, 28, 5]),
      Buffer.from('READY'),
      Buffer.from([11]),
      Buffer.from('Socket-Type'),
      Buffer.from([0, 0, 0, 6]),
      Buffer.from('DEALER'),
    ]);
    assert.deepEqual(readyCommand('DEALER'), expected);
  });

  it('refuses a peer that is not ZMTP 3 with NULL', () => {
    assert.doesNotThrow(() => checkGreeting(greeting()));
    const http = Buffer.alloc(64);
    http.write('HTTP/1.1 400 Bad Request\r\n');
    assert.throws(() => checkGreeting(http), ZmtpError);
    const zmtp2 = greeting();
    zmtp2[10] = 2;
    assert.throws(() => checkGreeting(zmtp2), /ZMTP 2/);
    const curve = greeting();
    curve.write('CURVE', 12, 'latin1');
    assert.throws(() => checkGreeting(curve), /CURVE/);
  });

  it('encodes a message as short and long frames with MORE on all but the last', () => {
    const long = Buffer.alloc(300, 0x61);
    const bytes = encodeMessage([Buffer.from([0, 0, 0, 7]), Buffer.alloc(0), long]);
    const header = Buffer.from([0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x2c]); // LONG (last frame: no MORE), size 300
    assert.deepEqual(bytes, Buffer.concat([Buffer.from([0x01, 4, 0, 0, 0, 7, 0x01, 0]), header, long]));
  });

  it('reads the same frames whatever the chunks: whole, byte by byte, random cuts', () => {
    const stream = Buffer.concat([
      encodeMessage([Buffer.from('id01'), Buffer.alloc(0), Buffer.from('short reply')]),
      Buffer.from([0x04, 5, 4]),
      Buffer.from('PING'),
      encodeMessage([Buffer.from('id02'), Buffer.alloc(0), Buffer.alloc(70_000, 0x62)]),
      encodeMessage([Buffer.from('single')]),
    ]);
    const expected = [['id01', '', 'short reply'], ['id02', '', 'b'.repeat(70_000)], ['single']];
    const cuts: Buffer[][] = [[stream], [...stream].map((b) => Buffer.from([b]))];
    for (let round = 0; round < 20; round++) {
      const chunks: Buffer[] = [];
      for (let pos = 0; pos < stream.length; ) {
        const size = 1 + Math.floor(Math.random() * 400);
        chunks.push(stream.subarray(pos, pos + size));
        pos += size;
      }
      cuts.push(chunks);
    }
    for (const chunks of cuts) {
      const { reader, messages, commands } = collect();
      for (const chunk of chunks) reader.push(Buffer.from(chunk));
      assert.deepEqual(messages, expected);
      assert.deepEqual(commands, ['\x04PING']);
    }
  });

  it('refuses frame flags the spec leaves unused', () => {
    const { reader } = collect();
    assert.throws(() => reader.push(Buffer.from([0x08, 1, 0])), ZmtpError);
  });
});

/** A TCP server whose connections get `onConnection`; counts them. */
async function tcpServer(
  t: TestContext,
  onConnection: (socket: net.Socket) => void,
): Promise<{ address: string; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { address: `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections };
}

describe('RequestChannel over ZMTP', () => {
  it('takes a reply of several megabytes arriving in many reads', async (t) => {
    const big = { data: 'x'.repeat(3 * 1024 * 1024), list: Array.from({ length: 10_000 }, (_, i) => i) };
    const peer = await startRouterPeer((r) => r.reply(big));
    t.after(() => peer.close());
    const ch = new ZmqRequestChannel({ address: peer.address, timeoutMs: 5000 });
    t.after(() => ch.close());
    const replies = await Promise.all([ch.send({ cmd: 'a' }), ch.send({ cmd: 'b' })]);
    for (const reply of replies) assert.deepEqual(reply, big);
  });

  it('does not send to a peer that is not ZeroMQ: requests time out, the channel tries again', async (t) => {
    const received: Buffer[] = [];
    const server = await tcpServer(t, (socket) => {
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'.padEnd(64, ' '));
    });
    const ch = new ZmqRequestChannel({ address: server.address, timeoutMs: 150, reconnectMs: 20 });
    t.after(() => ch.close());
    await assert.rejects(ch.send({ cmd: 'ping', secret: 'not-sent' }), RequestTimeoutError);
    assert.ok(server.connections() >= 2, `reconnected (${server.connections()} connections)`);
    // Only our greeting and READY went out, never the request.
    assert.ok(!Buffer.concat(received).includes('not-sent'));
  });

  it('answers a heartbeat PING with a PONG carrying its context, and goes on', async (t) => {
    let pong: Buffer | undefined;
    const server = await tcpServer(t, (socket) => {
      let greeted = false;
      let buffered = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (!greeted && buffered.length >= 64 + 30) {
          greeted = true;
          buffered = buffered.subarray(64 + 30); // the DEALER's greeting and READY
          // A ROUTER's greeting (ZMTP 3.1) and READY, then PING ttl=10 context "ctx".
          const g = Buffer.alloc(64);
          g[0] = 0xff;
          g[9] = 0x7f;
          g[10] = 3;
          g[11] = 1;
          g.write('NULL', 12);
          const ready = Buffer.concat([
            Buffer.from([0x04, 28, 5]),
            Buffer.from('READY'),
            Buffer.from([11]),
            Buffer.from('Socket-Type'),
            Buffer.from([0, 0, 0, 6]),
            Buffer.from('ROUTER'),
          ]);
          const ping = Buffer.concat([Buffer.from([0x04, 10, 4]), Buffer.from('PING'), Buffer.from([0, 10]), Buffer.from('ctx')]);
          socket.write(Buffer.concat([g, ready, ping]));
          return;
        }
        if (greeted && !pong && buffered.length >= 10) {
          pong = buffered.subarray(0, 10);
          buffered = buffered.subarray(10);
        }
        // A request [id, '', payload]: answer it on the same envelope.
        if (pong && buffered.length > 8) {
          const id = buffered.subarray(2, 6);
          socket.write(Buffer.concat([Buffer.from([0x01, 4]), id, Buffer.from([0x01, 0]), encodeMessage([encode({ answered: true })])]));
          buffered = Buffer.alloc(0);
        }
      });
    });
    const ch = new ZmqRequestChannel({ address: server.address, timeoutMs: 2000 });
    t.after(() => ch.close());
    await sleep(50); // the PING arrives with the handshake
    assert.deepEqual(await ch.send({ cmd: 'x' }), { answered: true });
    assert.deepEqual(pong, Buffer.concat([Buffer.from([0x04, 8, 4]), Buffer.from('PONG'), Buffer.from('ctx')]));
  });
});
