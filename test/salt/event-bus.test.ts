import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { encode } from '../../lib/salt/codec.js';
import { applyMasterDefaults } from '../../lib/salt/config.js';
import { EventBus, eventBusOptions, type EventBusOptions, type SaltEvent } from '../../lib/salt/event-bus.js';
import { EventBusClosedError, FrameStreamError, EventBusTimeoutError as TimeoutError } from '../../lib/salt/errors.js';
import { FrameScanner, frameBody } from '../../lib/salt/frame-scanner.js';
import { AbortError, waitFor } from '../support/event-bus.js';
import { eventFrame, startEventPublisher, type EventPublisherPeer } from '../support/peers.js';
import { capturedEvents, eventFrames, noCapture } from '../support/wire.js';

const expectedEvents = capturedEvents.map((e) => ({ tag: e.tag, data: e.data }));

function socketPath(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'salt-bus-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'master_event_pub.ipc');
}

/** A publisher on a fresh unix socket and a bus connected to it. */
async function connectedBus(
  t: TestContext,
  options: Partial<EventBusOptions> = {},
): Promise<{ bus: EventBus; publisher: EventPublisherPeer }> {
  const where = socketPath(t);
  const publisher = await startEventPublisher({ path: where });
  t.after(() => publisher.close());
  const bus = new EventBus({ path: where, reconnectMs: 20, ...options });
  t.after(() => bus.close());
  await bus.ready(2000);
  await publisher.waitForClients(1);
  return { bus, publisher };
}

/** Collect every event of the captured flows (tag and data), in arrival order. */
function collectCaptured(bus: EventBus): SaltEvent[] {
  const got: SaltEvent[] = [];
  const keep = ({ tag, data }: SaltEvent) => got.push({ tag, data });
  bus.subscribe('salt/', keep);
  // The legacy `<jid>` tags have no '/': subscribe to each exactly.
  for (const e of capturedEvents) if (!e.tag.includes('/')) bus.subscribe(e.tag, keep);
  return got;
}

async function until(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

/** Split `bytes` at `count - 1` random points. */
function randomChunks(bytes: Buffer, count: number): Buffer[] {
  const cuts = new Set<number>();
  while (cuts.size < Math.min(count - 1, bytes.length - 1)) cuts.add(1 + Math.floor(Math.random() * (bytes.length - 1)));
  const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end));
}

describe('FrameScanner', () => {
  const all = Buffer.concat(eventFrames);

  function scan(chunks: Uint8Array[]): Buffer[] {
    const scanner = new FrameScanner();
    const frames: Buffer[] = [];
    for (const chunk of chunks) scanner.push(chunk, (buf, start, end) => frames.push(Buffer.from(buf.subarray(start, end))));
    assert.equal(scanner.buffered, 0);
    return frames;
  }

  it('cuts the captured stream into the captured frames, one byte at a time', { skip: noCapture }, () => {
    const bytes = [...all].map((b) => Uint8Array.of(b));
    assert.deepEqual(scan(bytes), eventFrames);
  });

  it('cuts it at every split point of every pair of neighbouring frames', { skip: noCapture }, () => {
    for (let i = 0; i + 1 < eventFrames.length; i++) {
      const pair = Buffer.concat([eventFrames[i], eventFrames[i + 1]]);
      for (let cut = 0; cut <= pair.length; cut++) {
        assert.deepEqual(scan([pair.subarray(0, cut), pair.subarray(cut)]), [eventFrames[i], eventFrames[i + 1]]);
      }
    }
  });

  it('cuts a large frame that trickles in', { skip: noCapture }, () => {
    const big = eventFrame('salt/job/1/ret/m', {
      return: Buffer.alloc(3 * 1024 * 1024, 7),
      list: Array.from({ length: 5000 }, (_, i) => ({ i })),
    });
    const stream = Buffer.concat([eventFrames[0], big, eventFrames[1]]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 1000) chunks.push(stream.subarray(at, at + 1000));
    assert.deepEqual(scan(chunks), [eventFrames[0], big, eventFrames[1]]);
  });

  it('cuts a long burst read 64 KiB at a time, frames split across reads', () => {
    // A fleet's returns as the bus reads them: whole reads of its buffer, each
    // ending inside a frame, so that what is left of one frame meets a full read.
    const frames = Array.from({ length: 3000 }, (_, i) =>
      encode({ head: {}, body: Buffer.from(`salt/job/1/ret/m${i}\n\n${'x'.repeat(i % 500)}`) }),
    );
    const stream = Buffer.concat(frames);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 64 * 1024) chunks.push(stream.subarray(at, at + 64 * 1024));
    assert.ok(chunks.length > 10);
    assert.deepEqual(scan(chunks), frames);
  });

  it('walks every msgpack type', () => {
    const value = {
      nil: null,
      t: true,
      f: false,
      pos: 5,
      neg: -5,
      u8: 200,
      u16: 60000,
      u32: 4000000000,
      u64: 2n ** 63n,
      i8: -100,
      i16: -30000,
      i32: -2000000000,
      i64: -(2n ** 62n),
      float: 1.5,
      str8: 'x'.repeat(40),
      str16: 'y'.repeat(300),
      str32: 'z'.repeat(70000),
      bin: Buffer.alloc(300),
      arr16: Array(20).fill(1),
      map16: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
      nested: [[[{}]], []],
    };
    const ext = (type: number, data: number[]) => Buffer.from([0xc7, data.length, type, ...data]);
    const fixext = [0xd4, 0xd5, 0xd6, 0xd7, 0xd8].map((b, i) => Buffer.from([b, 78, ...Array(2 ** i).fill(0x30)]));
    const frames = [
      encode(value),
      ext(78, [0x31, 0x32]),
      ...fixext,
      Buffer.from([0xc8, 0, 1, 5, 9]),
      Buffer.from([0xc9, 0, 0, 0, 1, 5, 9]),
    ];
    const stream = Buffer.concat(frames);
    assert.deepEqual(scan([...stream].map((b) => Uint8Array.of(b))), frames);
  });

  it('refuses a stream that is not msgpack', () => {
    assert.throws(() => new FrameScanner().push(Uint8Array.of(0xc1), () => {}), FrameStreamError);
  });

  it('refuses a frame past the size limit', () => {
    const scanner = new FrameScanner(1000);
    const claimsMore = Buffer.concat([Buffer.from([0xc6, 0, 1, 0, 0]), Buffer.alloc(2000)]); // bin32 of 65536 bytes
    assert.throws(() => scanner.push(claimsMore, () => {}), FrameStreamError);
  });
});

describe('frameBody', () => {
  /** The body of a whole frame, as a view (frameBody writes its place). */
  function bodyOf(frame: Buffer): Buffer | undefined {
    const body = { start: 0, end: 0 };
    return frameBody(frame, 0, frame.length, body) ? frame.subarray(body.start, body.end) : undefined;
  }
  it('finds the body of every captured frame without decoding the rest', { skip: noCapture }, () => {
    capturedEvents.forEach((e, i) => {
      const body = bodyOf(eventFrames[i])!;
      assert.equal(body.subarray(0, body.indexOf('\n\n')).toString(), e.tag);
    });
  });
  it('finds it after other keys, and in map16 frames', () => {
    const inner = Buffer.from('a/b\n\n\xc0', 'latin1');
    const frame = encode({ head: { x: [1, { y: 2 }] }, other: 'z', body: inner });
    assert.deepEqual(bodyOf(frame), inner);
    const map16 = Buffer.from([0xde, 0x00, 0x01, 0xa4, ...Buffer.from('body'), 0xc4, inner.length, ...inner]);
    assert.deepEqual(bodyOf(map16), inner);
  });
  it('gives nothing for frames without a body', () => {
    assert.equal(bodyOf(encode({ head: {} })), undefined);
    assert.equal(bodyOf(encode([1, 2])), undefined);
    assert.equal(bodyOf(encode({ body: 5 })), undefined);
  });
  it('reads a frame where it lies among others, and nothing past its end', () => {
    const first = encode({ head: {}, body: Buffer.from('a/1\n\n\xc0', 'latin1') });
    const second = encode({ head: {}, body: Buffer.from('b/2\n\n\xc3', 'latin1') });
    const buf = Buffer.concat([first, second]);
    const body = { start: 0, end: 0 };
    assert.ok(frameBody(buf, first.length, buf.length, body));
    assert.equal(buf.toString('latin1', body.start, body.end), 'b/2\n\n\xc3');
    // The first frame cut short of its body's last byte: no body, though the bytes after it are there.
    assert.equal(frameBody(buf, 0, first.length - 1, body), false);
    assert.equal(frameBody(encode({ other: 1, body: 'x' }).subarray(0, 8), 0, 8, body), false);
  });
});

describe('EventBus over a unix socket', () => {
  it('parses the captured frames written one byte at a time', { skip: noCapture }, async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const got = collectCaptured(bus);
    for (const byte of Buffer.concat(eventFrames)) {
      await publisher.write(Uint8Array.of(byte));
      await nextTurn();
    }
    await until(() => got.length === expectedEvents.length);
    assert.deepEqual(got, expectedEvents);
  });

  it('parses the captured frames joined and split at random points', { skip: noCapture }, async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const got = collectCaptured(bus);
    const all = Buffer.concat([...eventFrames, ...eventFrames, ...eventFrames]);
    for (const chunk of randomChunks(all, 7)) await publisher.write(chunk);
    await publisher.write(all); // and all of it in one write
    await until(() => got.length === 6 * expectedEvents.length);
    assert.deepEqual(got, Array(6).fill(expectedEvents).flat());
  });

  it('resolves 1,000 concurrent waiters on distinct jids, each with its own return', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const jids = Array.from({ length: 1000 }, (_, i) => `2026112218${String(i).padStart(10, '0')}`);
    const waits = jids.map((jid) => waitFor(bus, `salt/job/${jid}/ret/`, 10000));
    assert.equal(bus.subscriptionCount, 1000);
    const frames = jids.map((jid) => eventFrame(`salt/job/${jid}/ret/minion1`, { jid, id: 'minion1', return: true }));
    // shuffled, mixed with unrelated traffic and other jobs' events
    frames.sort(() => Math.random() - 0.5);
    const noise = [
      eventFrame('minion/refresh/minion1', { Minion: 'minion1' }),
      eventFrame('salt/job/1/ret/x', {}),
      eventFrame('salt/job/', {}),
    ];
    const stream = Buffer.concat(frames.flatMap((f, i) => (i % 10 === 0 ? [f, ...noise] : [f])));
    for (const chunk of randomChunks(stream, 50)) await publisher.write(chunk);
    const events = await Promise.all(waits);
    events.forEach((event, i) => {
      assert.equal(event.tag, `salt/job/${jids[i]}/ret/minion1`);
      assert.equal(event.data.jid, jids[i]);
    });
    assert.equal(bus.subscriptionCount, 0);
  });

  it('matches exact tags, and prefixes only when they end with /', async (t) => {
    const { bus, publisher } = await connectedBus(t, { retainMs: 0 });
    const got: Record<string, string[]> = { exact: [], prefix: [], noSlash: [] };
    bus.subscribe('salt/run/5/ret', (e) => got.exact.push(e.tag));
    bus.subscribe('salt/run/5/', (e) => got.prefix.push(e.tag));
    bus.subscribe('salt/run/5', (e) => got.noSlash.push(e.tag));
    for (const tag of ['salt/run/5/new', 'salt/run/5/ret', 'salt/run/50/ret', 'salt/run/5/', 'salt/run/5'])
      await publisher.publish(tag, {});
    await until(() => got.noSlash.length === 1);
    assert.deepEqual(got, {
      exact: ['salt/run/5/ret'],
      prefix: ['salt/run/5/new', 'salt/run/5/ret', 'salt/run/5/'],
      noSlash: ['salt/run/5'],
    });
  });

  it('reads a body sent as str as its raw bytes', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const body = Buffer.concat([Buffer.from('salt/run/7/ret\n\n'), encode({ return: Buffer.from([0xff, 0x00]), success: true })]);
    const header = Buffer.from([0xdb, 0, 0, 0, 0]);
    header.writeUInt32BE(body.length, 1);
    const frame = Buffer.concat([Buffer.from([0x82, 0xa4, ...Buffer.from('head'), 0x80, 0xa4, ...Buffer.from('body')]), header, body]);
    const wait = waitFor(bus, 'salt/run/7/ret', 2000);
    await publisher.write(frame);
    const event = await wait;
    assert.deepEqual(event.data, { return: Buffer.from([0xff, 0x00]), success: true });
    // What holding it costs, as max_result_bytes counts it: its packed data.
    assert.equal(event.packedBytes, body.length - 'salt/run/7/ret\n\n'.length);
  });

  it('skips frames it cannot make sense of and carries on', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const wait = waitFor(bus, 'salt/run/8/ret', 2000);
    await publisher.write(encode({ head: {}, body: Buffer.from('no separator') }));
    await publisher.write(encode({ head: {}, body: Buffer.from('salt/run/8/ret\n\n\x82') })); // truncated data
    await publisher.write(encode({ head: {}, nobody: 1 }));
    await publisher.write(encode(['not', 'a', 'map']));
    await publisher.publish('salt/run/8/ret', { ok: 1 });
    assert.deepEqual((await wait).data, { ok: 1 });
  });

  it('never lets a throwing listener break the parser or other listeners', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const errors: unknown[] = [];
    bus.on('listenerError', (err) => errors.push(err));
    const seen: string[] = [];
    bus.subscribe('salt/job/', () => {
      throw new Error('listener bug');
    });
    bus.subscribe('salt/job/', (e) => seen.push(e.tag));
    bus.on('connect', () => {
      throw new Error('connect handler bug');
    });
    await publisher.write(Buffer.concat([eventFrame('salt/job/1/new', {}), eventFrame('salt/job/1/ret/m', {})]));
    await until(() => seen.length === 2);
    assert.deepEqual(seen, ['salt/job/1/new', 'salt/job/1/ret/m']);
    assert.equal(errors.length, 2);
  });

  it('drops a stream that is not msgpack and reconnects', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const states: string[] = [];
    bus.on('disconnect', () => states.push('disconnect'));
    bus.on('connect', () => states.push('connect'));
    await publisher.write(Uint8Array.of(0xc1));
    await until(() => states.length === 2);
    assert.deepEqual(states, ['disconnect', 'connect']);
    await until(() => publisher.clients.size === 1);
    const wait = waitFor(bus, 'salt/wheel/9/ret', 2000);
    await publisher.publish('salt/wheel/9/ret', { fine: true });
    assert.deepEqual((await wait).data, { fine: true });
  });
});

describe('retention', () => {
  it('replays job events that arrived before the subscription, then live ones, each once', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    bus.hold();
    await publisher.write(
      Buffer.concat([
        eventFrame('salt/job/42/new', { n: 1 }),
        eventFrame('salt/job/42/ret/a', { n: 2 }),
        eventFrame('minion/refresh/a', {}),
      ]),
    );
    await until(() => bus.retainedCount === 2);
    const got: number[] = [];
    bus.subscribe('salt/job/42/', (e) => got.push(e.data.n));
    await publisher.publish('salt/job/42/ret/b', { n: 3 });
    await until(() => got.length === 3);
    assert.deepEqual(got, [1, 2, 3]);
    // Unrelated traffic is not kept.
    assert.equal(bus.retainedCount, 3);
    await assert.rejects(waitFor(bus, 'minion/refresh/a', 50), TimeoutError);
  });

  it('replays in order when a subscription is made while events are being dispatched', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    bus.hold();
    const got: string[] = [];
    bus.subscribe('salt/run/1/new', () => {
      bus.subscribe('salt/run/1/', (e) => got.push(e.tag));
    });
    // One write: the next frames are dispatched in the same turn as the first.
    await publisher.write(Buffer.concat(['salt/run/1/new', 'salt/run/1/progress', 'salt/run/1/ret'].map((tag) => eventFrame(tag, {}))));
    await until(() => got.length === 3);
    await sleep(20);
    assert.deepEqual(got, ['salt/run/1/new', 'salt/run/1/progress', 'salt/run/1/ret']);
  });

  it('a waitFor made after the return arrived still gets it', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    bus.hold();
    await publisher.publish('salt/run/77/ret', { return: 'early' });
    await until(() => bus.retainedCount === 1);
    assert.deepEqual((await waitFor(bus, 'salt/run/77/ret', 500)).data, { return: 'early' });
    assert.equal(bus.subscriptionCount, 0);
  });

  it('forgets job events after retainMs', async (t) => {
    const { bus, publisher } = await connectedBus(t, { retainMs: 50 });
    bus.hold();
    await publisher.publish('salt/wheel/3/ret', {});
    await until(() => bus.retainedCount === 1);
    await sleep(80);
    await assert.rejects(waitFor(bus, 'salt/wheel/3/ret', 50), TimeoutError);
    assert.equal(bus.retainedCount, 0);
  });

  it('keeps at most retainMax job events, the newest', async (t) => {
    const { bus, publisher } = await connectedBus(t, { retainMax: 3 });
    bus.hold();
    await publisher.write(Buffer.concat([1, 2, 3, 4, 5].map((n) => eventFrame(`salt/job/7/ret/m${n}`, { n }))));
    await until(() => bus.retainedCount === 3);
    await sleep(20);
    assert.equal(bus.retainedCount, 3);
    const got: number[] = [];
    bus.subscribe('salt/job/7/ret/', (e) => got.push(e.data.n));
    await sleep(20);
    assert.deepEqual(got, [3, 4, 5]);
  });

  it('keeps nothing with retainMs 0', async (t) => {
    const { bus, publisher } = await connectedBus(t, { retainMs: 0 });
    bus.hold();
    await publisher.publish('salt/job/8/ret/m', {});
    await sleep(30);
    assert.equal(bus.retainedCount, 0);
  });

  it('keeps nothing while nobody holds the bus, and forgets all once the last holder lets go', async (t) => {
    const { bus, publisher } = await connectedBus(t, { idleReadMs: 0 });
    await publisher.publish('salt/job/1/ret/m', {});
    await sleep(30);
    assert.equal(bus.retainedCount, 0);
    const releaseA = bus.hold();
    const releaseB = bus.hold();
    await publisher.publish('salt/job/2/ret/m', {});
    await until(() => bus.retainedCount === 1);
    releaseA();
    releaseA(); // a second call does nothing
    assert.equal(bus.retainedCount, 1);
    releaseB();
    assert.equal(bus.retainedCount, 0);
    await assert.rejects(waitFor(bus, 'salt/job/2/ret/m', 50), TimeoutError);
  });
});

describe('reading while nobody listens', () => {
  it('pauses between batches, and a new subscriber gets what is still unread', async (t) => {
    // A long interval: after the first read the bus stays paused for the test.
    const { bus, publisher } = await connectedBus(t, { idleReadMs: 60_000 });
    await publisher.publish('salt/job/1/ret/m', { n: 1 });
    await sleep(30); // read, and dropped: nobody subscribed, nobody holding
    await publisher.publish('salt/job/2/ret/m', { n: 2 });
    await sleep(30); // not read: the bus is paused
    const got = await waitFor(bus, 'salt/job/2/ret/m', 1000);
    assert.deepEqual(got.data, { n: 2 });
    await assert.rejects(waitFor(bus, 'salt/job/1/ret/m', 50), TimeoutError);
  });

  it('reads again after idleReadMs, and a master that went away is noticed then', async (t) => {
    const { bus, publisher } = await connectedBus(t, { idleReadMs: 100 });
    await publisher.publish('salt/job/1/ret/m', {});
    await sleep(30);
    const disconnected = new Promise<number>((resolve) => bus.once('disconnect', () => resolve(performance.now())));
    const closedAt = performance.now();
    await publisher.close();
    const at = await disconnected;
    assert.ok(at - closedAt < 1000, `noticed after ${Math.round(at - closedAt)} ms`);
  });
});

describe('reading a burst', () => {
  /** `count` events on job 1, each its own write, `gapMs` apart. */
  async function burst(publisher: EventPublisherPeer, count: number, gapMs: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      await publisher.publish(`salt/job/1/ret/m${i}`, { i });
      await sleep(gapMs);
    }
  }

  it('reads a lone event at once, and a burst once per busyReadMs, losing nothing', async (t) => {
    // Long pauses, so that a busy test machine can't pass for one.
    const { bus, publisher } = await connectedBus(t, { busyReadMs: 600 });
    const got: number[] = [];
    bus.subscribe('salt/job/1/', (e) => got.push(e.data.i));
    await publisher.publish('salt/job/1/ret/lone', { i: -2 });
    await until(() => got.length === 1);
    // The read of a lone event is not followed by a pause: the next one, 100 ms on, comes at once.
    await sleep(100);
    const sentAt = performance.now();
    await publisher.publish('salt/job/1/ret/next', { i: -1 });
    await until(() => got.length === 2);
    assert.ok(performance.now() - sentAt < 300, 'the read after a lone event waited for a pause');
    await sleep(800); // quiet (the second read, within 600 ms of the first, began a pause)
    const readsBefore = bus.readCount;
    await burst(publisher, 40, 2);
    await until(() => got.length === 42);
    assert.deepEqual(got, [-2, -1, ...Array.from({ length: 40 }, (_, i) => i)]);
    // 40 writes over ~80 ms or more: a read, then one per 600 ms.
    const reads = bus.readCount - readsBefore;
    assert.ok(reads <= 6, `${reads} reads for a burst of 40`);
  });

  it('reads a long burst once per busyReadMs, not again just after each pause', async (t) => {
    const { bus, publisher } = await connectedBus(t, { busyReadMs: 50 });
    let count = 0;
    bus.subscribe('salt/job/1/', () => count++);
    await publisher.publish('salt/job/1/ret/lone', { i: -1 });
    await until(() => count === 1);
    await sleep(200);
    const readsBefore = bus.readCount;
    const startedAt = performance.now();
    await burst(publisher, 150, 2);
    await until(() => count === 151);
    // A read at the start, one per pause, and one for what came after the last: a read just
    // after each pause, of what came since it ended, would make it twice as many.
    const pauses = Math.ceil((performance.now() - startedAt) / 50);
    const reads = bus.readCount - readsBefore;
    assert.ok(reads <= pauses + 2, `${reads} reads for a burst of ${pauses} pauses`);
  });

  it('reads every event as it comes with busyReadMs 0', async (t) => {
    const { bus, publisher } = await connectedBus(t, { busyReadMs: 0 });
    let count = 0;
    bus.subscribe('salt/job/1/', () => count++);
    const readsBefore = bus.readCount;
    await burst(publisher, 20, 5);
    await until(() => count === 20);
    assert.ok(bus.readCount - readsBefore >= 10, `${bus.readCount - readsBefore} reads for 20 writes 5 ms apart`);
  });

  it('settle() reads what a pause in a burst left unread', async (t) => {
    // A pause of a minute once a burst starts: only settle() can read on.
    const { bus, publisher } = await connectedBus(t, { busyReadMs: 60_000 });
    const got: number[] = [];
    bus.subscribe('salt/job/1/', (e) => got.push(e.data.i));
    await burst(publisher, 2, 5);
    await until(() => got.length === 2);
    await publisher.publish('salt/job/1/ret/late', { i: 2 });
    await sleep(30);
    assert.deepEqual(got, [0, 1], 'read during the pause');
    await bus.settle();
    assert.deepEqual(got, [0, 1, 2]);
  });
});

describe('subscriptions at several depths', () => {
  it('delivers under every prefix and exact tag while others come and go', async (t) => {
    const { bus, publisher } = await connectedBus(t, { busyReadMs: 0 });
    const got: Record<string, number> = {};
    const count = (key: string) => () => {
      got[key] = (got[key] ?? 0) + 1;
    };
    const offSalt = bus.subscribe('salt/', count('salt/'));
    const offJob = bus.subscribe('salt/job/7/', count('salt/job/7/'));
    bus.subscribe('salt/job/7/ret/m', count('exact'));
    offSalt();
    await publisher.publish('salt/job/7/ret/m', {});
    await until(() => got.exact === 1);
    offJob();
    bus.subscribe('salt/job/', count('salt/job/'));
    bus.subscribe('salt/job/7/ret/', count('salt/job/7/ret/'));
    await publisher.publish('salt/job/7/ret/m', {});
    await until(() => got.exact === 2);
    await sleep(20);
    assert.deepEqual(got, { 'salt/job/7/': 1, exact: 2, 'salt/job/': 1, 'salt/job/7/ret/': 1 });
  });
});

describe('waitFor', () => {
  it('times out and unsubscribes', async (t) => {
    const { bus } = await connectedBus(t);
    await assert.rejects(
      waitFor(bus, 'salt/job/none/ret/', 50),
      (err: Error) => err instanceof TimeoutError && /within 50 ms/.test(err.message),
    );
    assert.equal(bus.subscriptionCount, 0);
  });

  it('aborts and unsubscribes', async (t) => {
    const { bus } = await connectedBus(t);
    const controller = new AbortController();
    const wait = waitFor(bus, 'salt/job/none/ret/', 5000, controller.signal);
    assert.equal(bus.subscriptionCount, 1);
    controller.abort(new Error('client went away'));
    await assert.rejects(wait, (err: Error) => err instanceof AbortError && (err.cause as Error).message === 'client went away');
    assert.equal(bus.subscriptionCount, 0);
    // an already aborted signal rejects at once, subscribing nothing
    await assert.rejects(waitFor(bus, 'x', 5000, controller.signal), AbortError);
    assert.equal(bus.subscriptionCount, 0);
  });

  it('unsubscribes once it has its event, however many arrive', async (t) => {
    const { bus, publisher } = await connectedBus(t);
    const wait = waitFor(bus, 'salt/job/5/ret/', 2000);
    await publisher.write(Buffer.concat([eventFrame('salt/job/5/ret/a', { a: 1 }), eventFrame('salt/job/5/ret/b', {})]));
    assert.deepEqual((await wait).data, { a: 1 });
    assert.equal(bus.subscriptionCount, 0);
  });

  it('rejects on close(), as does ready()', async (t) => {
    const where = socketPath(t);
    const bus = new EventBus({ path: where, reconnectMs: 20 });
    bus.start();
    const wait = waitFor(bus, 'salt/job/1/ret/', 5000);
    const ready = bus.ready(5000);
    bus.close();
    await assert.rejects(wait, EventBusClosedError);
    await assert.rejects(ready, EventBusClosedError);
    assert.equal(bus.subscriptionCount, 0);
    await assert.rejects(waitFor(bus, 'a/', 10), EventBusClosedError);
  });
});

describe('connection', () => {
  it('waits for a socket that is not there yet, and reports connect and disconnect', async (t) => {
    const where = socketPath(t);
    const bus = new EventBus({ path: where, reconnectMs: 20 });
    t.after(() => bus.close());
    const states: string[] = [];
    bus.on('connect', () => states.push('connect'));
    bus.on('disconnect', () => states.push('disconnect'));
    bus.start();
    bus.start(); // idempotent
    await assert.rejects(bus.ready(60), TimeoutError);
    assert.equal(bus.connected, false);
    let publisher = await startEventPublisher({ path: where });
    await bus.ready(2000);
    assert.equal(bus.connected, true);
    await publisher.close();
    await until(() => !bus.connected);
    publisher = await startEventPublisher({ path: where });
    t.after(() => publisher.close());
    await bus.ready(2000);
    assert.deepEqual(states, ['connect', 'disconnect', 'connect']);
    // one connection at a time
    await publisher.waitForClients(1);
    await sleep(60);
    assert.equal(publisher.clients.size, 1);
  });

  it('speaks TCP with ipc_mode: tcp', async (t) => {
    const port = await freePort();
    const opts = eventBusOptions(applyMasterDefaults({ ipc_mode: 'tcp', tcp_master_pub_port: port }));
    assert.deepEqual(opts, { host: '127.0.0.1', port });
    const publisher = await startEventPublisher({ port });
    t.after(() => publisher.close());
    const bus = new EventBus(opts);
    t.after(() => bus.close());
    await bus.ready(2000);
    await publisher.waitForClients(1);
    const wait = waitFor(bus, 'salt/run/1/ret', 2000);
    await publisher.publish('salt/run/1/ret', { over: 'tcp' });
    assert.deepEqual((await wait).data, { over: 'tcp' });
  });

  it('takes the ipc socket from sock_dir', () => {
    assert.deepEqual(eventBusOptions(applyMasterDefaults({})), { path: '/var/run/salt/master/master_event_pub.ipc' });
    assert.deepEqual(eventBusOptions(applyMasterDefaults({ root_dir: '/srv/r' })), {
      path: '/srv/r/var/run/salt/master/master_event_pub.ipc',
    });
  });

  it('needs somewhere to connect', () => {
    assert.throws(() => new EventBus({}), TypeError);
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
