import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONSTANT_EXT, DATETIME_EXT, decode, encode } from '../../lib/salt/codec.js';
import { capturedEvents, eventFrames, noCapture, reqserver } from '../support/wire.js';

/** Split an event body as salt/utils/event.py SaltEvent.unpack does. */
function unpackBody(body: Buffer): { tag: string; data: unknown } {
  const sep = body.indexOf('\n\n');
  assert.ok(sep >= 0, 'body has the tag separator');
  return { tag: body.subarray(0, sep).toString('utf8'), data: decode(body.subarray(sep + 2)) };
}

describe('captured request channel traffic', { skip: noCapture }, () => {
  for (const [name, c] of Object.entries(reqserver)) {
    it(`${name}: the request encodes to the captured bytes`, () => {
      const bytes = encode({ enc: 'clear', load: c.request, version: 2 });
      assert.equal(bytes.toString('base64'), c.request_msgpack_b64);
    });
    it(`${name}: the reply decodes to the captured value`, () => {
      assert.deepEqual(decode(Buffer.from(c.reply_msgpack_b64, 'base64')), c.reply);
    });
  }

  it('the captured requests decode back to what was sent', () => {
    for (const c of Object.values(reqserver)) {
      assert.deepEqual(decode(Buffer.from(c.request_msgpack_b64, 'base64')), { enc: 'clear', load: c.request, version: 2 });
    }
  });
});

describe('captured event bus frames', { skip: noCapture }, () => {
  it('has frames of every kind of flow', () => {
    const tags = capturedEvents.map((e) => e.tag);
    assert.ok(tags.some((t) => /^salt\/job\/\d+\/ret\//.test(t)));
    assert.ok(tags.some((t) => /^salt\/run\/\d+\/ret$/.test(t)));
    assert.ok(tags.some((t) => /^salt\/wheel\/\d+\/ret$/.test(t)));
  });

  capturedEvents.forEach((captured, i) => {
    it(`frame ${i} (${captured.tag}) decodes to the captured head, tag and data`, () => {
      const frame = decode(eventFrames[i]) as { head: unknown; body: unknown };
      assert.deepEqual(Object.keys(frame), ['head', 'body']);
      assert.ok(Buffer.isBuffer(frame.body), 'the body is bin');
      assert.deepEqual(frame.head, captured.head);
      const { tag, data } = unpackBody(frame.body as Buffer);
      assert.equal(tag, captured.tag);
      assert.deepEqual(data, captured.data);
    });
  });
});

/** msgpack ext8 of `type` holding `data`. */
function ext8(type: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xc7, data.length, type]), data]);
}

describe('codec', () => {
  it('decodes ext 78 datetimes to the ISO form of _stamp', () => {
    const bytes = Buffer.concat([Buffer.from([0x81, 0xa1, 0x74]), ext8(DATETIME_EXT, Buffer.from('20261122T18:00:58.327795'))]);
    assert.deepEqual(decode(bytes), { t: '2026-11-22T18:00:58.327795' });
  });

  it('decodes ext 79 constants to their value', () => {
    // Salt packs an immutable constant as ext 79 around msgpack of [name, value].
    const inner = Buffer.from([0x92, 0xa4, ...Buffer.from('NAME'), 0x2a]);
    assert.deepEqual(decode(Buffer.concat([Buffer.from([0x91]), ext8(CONSTANT_EXT, inner)])), [42]);
  });

  it('decodes integers past 2^53 exactly, as BigInt', () => {
    const u64 = Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert.equal(decode(u64), 18446744073709551615n);
    const i64 = Buffer.from([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    assert.equal(decode(i64), -9223372036854775807n);
    const justPast = Buffer.from([0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1]); // 2^53 + 1
    assert.equal(decode(justPast), 9007199254740993n);
    // ...while ordinary 64-bit encodings of small values stay numbers.
    assert.equal(decode(Buffer.from([0xcf, 0, 0, 0, 0, 0, 0, 0, 7])), 7);
  });

  it('keeps bin as bytes', () => {
    const value = decode(Buffer.from([0x81, 0xa1, 0x62, 0xc4, 3, 0, 0xff, 0x0a])) as { b: Buffer };
    assert.ok(value.b instanceof Uint8Array);
    assert.deepEqual([...value.b], [0, 0xff, 0x0a]);
    // and encodes bytes back to bin (Salt's byte strings), not to an array or ext
    assert.deepEqual([...encode(Buffer.from([1, 2]))], [0xc4, 2, 1, 2]);
  });

  it('decodes a value where it lies in a larger buffer, and not past the end given', () => {
    const value = { id: 'minion1', return: [1, 'two', Buffer.from('bin')] };
    const packed = encode(value);
    const buf = Buffer.concat([encode('before'), packed, encode('after')]);
    const start = encode('before').length;
    assert.deepEqual(decode(buf, start, start + packed.length), value);
    // The same buffer again: msgpackr's view of it is reused, the values are right.
    assert.deepEqual(decode(buf, 0, start), 'before');
    assert.throws(() => decode(buf, start, start + packed.length - 1));
  });
  it('decodes maps with integer keys', () => {
    // Python {1: 'a', 2: {3: 'b'}}
    const bytes = Buffer.from([0x82, 0x01, 0xa1, 0x61, 0x02, 0x81, 0x03, 0xa1, 0x62]);
    assert.deepEqual(decode(bytes), { 1: 'a', 2: { 3: 'b' } });
  });

  it('encodes undefined as nil, never as a msgpackr extension', () => {
    assert.deepEqual([...encode(undefined)], [0xc0]);
    assert.deepEqual([...encode({ a: undefined, b: [undefined] })], [0x82, 0xa1, 0x61, 0xc0, 0xa1, 0x62, 0x91, 0xc0]);
  });

  it('never emits records or other msgpackr extensions for repeated object shapes', () => {
    const bytes = encode([
      { k: 1, v: 2 },
      { k: 3, v: 4 },
      { k: 5, v: 6 },
    ]);
    assert.deepEqual(
      [...bytes],
      [0x93, 0x82, 0xa1, 0x6b, 1, 0xa1, 0x76, 2, 0x82, 0xa1, 0x6b, 3, 0xa1, 0x76, 4, 0x82, 0xa1, 0x6b, 5, 0xa1, 0x76, 6],
    );
  });

  it('turns integers too large for msgpack into strings, as Salt does', () => {
    assert.deepEqual(decode(encode({ n: 2n ** 70n })), { n: String(2n ** 70n) });
    assert.deepEqual(decode(encode(2n ** 63n)), 2n ** 63n);
  });
});
