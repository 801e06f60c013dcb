/**
 * The transcoder (lib/salt/msgpack-json.ts) against what it replaces: for
 * captured and random msgpack, its text is toJson(decode(bytes)) byte for
 * byte, or it says NotTranscodable (and the caller decodes). The random
 * msgpack is written here byte by byte, with every encoding an item may
 * have (a short string as str 8, a small integer as uint 64...), not only
 * the ones our codec writes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toJson } from '../../lib/json.js';
import { decode, encode } from '../../lib/salt/codec.js';
import { NotTranscodable, msgpackToJson } from '../../lib/salt/msgpack-json.js';
import { capturedEvents, noCapture, reqserver } from '../support/wire.js';

/** What today's path gives: the JSON text, or 'throws' when the codec refuses the bytes. */
function today(bytes: Buffer): string {
  try {
    return toJson(decode(bytes));
  } catch {
    return 'throws';
  }
}

/** The transcoder's text, or 'not transcodable'. */
function transcoded(bytes: Buffer): string {
  try {
    return msgpackToJson(bytes, 0, bytes.length);
  } catch (err) {
    if (err instanceof NotTranscodable) return 'not transcodable';
    throw err;
  }
}

function assertSame(bytes: Buffer, what: string): void {
  const text = transcoded(bytes);
  const expected = today(bytes);
  if (text === 'not transcodable') return;
  assert.equal(text, expected, `${what}: ${bytes.toString('hex')}`);
}

// -- a msgpack writer with every encoding -------------------------------------

/** A seeded generator: the same cases on every run (xorshift32). */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const u8 = (...bytes: number[]) => Buffer.from(bytes);
function be(size: number, value: number | bigint, signed = false): Buffer {
  const b = Buffer.alloc(size);
  if (size === 8) signed ? b.writeBigInt64BE(BigInt(value)) : b.writeBigUInt64BE(BigInt(value));
  else if (signed) b.writeIntBE(Number(value), 0, size);
  else b.writeUIntBE(Number(value), 0, size);
  return b;
}

function strItem(bytes: Buffer, pick: () => number): Buffer {
  const n = bytes.length;
  const r = pick();
  if (n < 32 && r < 0.6) return Buffer.concat([u8(0xa0 | n), bytes]);
  if (n < 256 && r < 0.8) return Buffer.concat([u8(0xd9, n), bytes]);
  if (r < 0.9) return Buffer.concat([u8(0xda), be(2, n), bytes]);
  return Buffer.concat([u8(0xdb), be(4, n), bytes]);
}

const PIECES = [
  'a',
  'key',
  ' ',
  '"',
  '\\',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  'ü',
  '€',
  '\u2028',
  '😀',
  'x'.repeat(40),
  '\ufffd',
];
const KEYS = [
  'a',
  'b',
  'id',
  'return',
  '0',
  '1',
  '7',
  '10',
  '01',
  '-1',
  '4294967294',
  '4294967295',
  '__proto__',
  '__proto_',
  'constructor',
  '',
];

function text(pick: () => number): string {
  let s = '';
  const n = Math.floor(pick() * 5);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(pick() * PIECES.length)];
  return s;
}

function intItem(pick: () => number): Buffer {
  const r = Math.floor(pick() * 12);
  const small = Math.floor(pick() * 200) - 100;
  switch (r) {
    case 0:
      return u8(Math.floor(pick() * 128));
    case 1:
      return u8(0xe0 | Math.floor(pick() * 32));
    case 2:
      return Buffer.concat([u8(0xcc), be(1, Math.floor(pick() * 256))]);
    case 3:
      return Buffer.concat([u8(0xcd), be(2, Math.floor(pick() * 65536))]);
    case 4:
      return Buffer.concat([u8(0xce), be(4, Math.floor(pick() * 2 ** 32))]);
    case 5: {
      const big = [0n, 7n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n][Math.floor(pick() * 6)];
      return Buffer.concat([u8(0xcf), be(8, big)]);
    }
    case 6:
      return Buffer.concat([u8(0xd0), be(1, small, true)]);
    case 7:
      return Buffer.concat([u8(0xd1), be(2, small * 300, true)]);
    case 8:
      return Buffer.concat([u8(0xd2), be(4, small * 20_000_000, true)]);
    case 9: {
      const big = [-1n, 5n, -(2n ** 53n), -(2n ** 53n) - 1n, -(2n ** 63n), 2n ** 63n - 1n][Math.floor(pick() * 6)];
      return Buffer.concat([u8(0xd3), be(8, big, true)]);
    }
    case 10: {
      const f = [0.1, -0, 1.5, 1e21, 1e-7, Number.NaN, Number.POSITIVE_INFINITY, 3.4e38, 123.456][Math.floor(pick() * 9)];
      const b = Buffer.alloc(5);
      b[0] = 0xca;
      b.writeFloatBE(f, 1);
      return b;
    }
    default: {
      const f = [0.1, -0, 1.5, 1e21, 5e-324, Number.NaN, Number.NEGATIVE_INFINITY, 2 ** 60, -123.456e-10][Math.floor(pick() * 9)];
      const b = Buffer.alloc(9);
      b[0] = 0xcb;
      b.writeDoubleBE(f, 1);
      return b;
    }
  }
}

function keyItem(pick: () => number): Buffer {
  const r = pick();
  if (r < 0.7) return strItem(Buffer.from(KEYS[Math.floor(pick() * KEYS.length)]), pick);
  if (r < 0.85) return intItem(pick);
  if (r < 0.9) return u8([0xc0, 0xc2, 0xc3][Math.floor(pick() * 3)]);
  if (r < 0.95) return strItem(Buffer.from(text(pick)), pick);
  return value(pick, 3); // a container or bin key: the codec refuses it
}

function ext(type: number, data: Buffer): Buffer {
  if ([1, 2, 4, 8, 16].includes(data.length)) return Buffer.concat([u8(0xd4 + Math.log2(data.length), type & 0xff), data]);
  return Buffer.concat([u8(0xc7, data.length, type & 0xff), data]);
}

function value(pick: () => number, depth: number): Buffer {
  const r = Math.floor(pick() * (depth > 3 ? 8 : 11));
  switch (r) {
    case 0:
      return u8([0xc0, 0xc2, 0xc3][Math.floor(pick() * 3)]);
    case 1:
    case 2:
      return intItem(pick);
    case 3:
    case 4:
      return strItem(Buffer.from(text(pick)), pick);
    case 5: {
      // bin: UTF-8 or not
      const bytes = pick() < 0.5 ? Buffer.from(text(pick)) : Buffer.from([0xff, 0xfe, Math.floor(pick() * 256)]);
      return Buffer.concat([u8(0xc4, bytes.length), bytes]);
    }
    case 6: {
      const r2 = pick();
      if (r2 < 0.4) return ext(78, Buffer.from('20261122T18:00:58.327795'));
      if (r2 < 0.7) return ext(79, encode(['NAME', Math.floor(pick() * 100)]));
      if (r2 < 0.8) return strItem(Buffer.from([0x61, 0xff, 0x62]), pick); // not UTF-8
      if (r2 < 0.9) return strItem(Buffer.from([0xed, 0xa0, 0x80]), pick); // an encoded lone surrogate
      return ext([1, 0, -1, 0x73][Math.floor(pick() * 4)], Buffer.from([1, 2, 3, 4])); // msgpackr's own types, or unknown
    }
    case 7:
    case 8: {
      const n = Math.floor(pick() * 5);
      const items = Array.from({ length: n }, () => value(pick, depth + 1));
      const head = pick() < 0.7 ? u8(0x90 | n) : pick() < 0.5 ? Buffer.concat([u8(0xdc), be(2, n)]) : Buffer.concat([u8(0xdd), be(4, n)]);
      return Buffer.concat([head, ...items]);
    }
    default: {
      const n = Math.floor(pick() * 6);
      const items = Array.from({ length: n }, () => Buffer.concat([keyItem(pick), value(pick, depth + 1)]));
      const head = pick() < 0.7 ? u8(0x80 | n) : pick() < 0.5 ? Buffer.concat([u8(0xde), be(2, n)]) : Buffer.concat([u8(0xdf), be(4, n)]);
      return Buffer.concat([head, ...items]);
    }
  }
}

describe('msgpack → JSON, against toJson(decode())', () => {
  it('gives the same text for 20,000 random values in every encoding, or says it cannot', () => {
    const pick = random(0x5eed);
    let same = 0;
    let declined = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = value(pick, 0);
      const text = transcoded(bytes);
      const expected = today(bytes);
      if (text === 'not transcodable') {
        declined++;
        continue;
      }
      assert.equal(text, expected, `case ${i}: ${bytes.toString('hex')}`);
      same++;
    }
    // Declining is for the rare bytes (not UTF-8, foreign extensions, container keys): most are transcoded.
    assert.ok(same > 15_000, `${same} transcoded, ${declined} declined`);
  });

  it('declines whatever the codec refuses: it never makes text for it', () => {
    const pick = random(42);
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = value(pick, 0);
      if (today(bytes) !== 'throws') continue;
      refused++;
      assert.equal(transcoded(bytes), 'not transcodable', bytes.toString('hex'));
    }
    assert.ok(refused > 100, `${refused} refused values seen`);
  });

  it('transcodes everything that is UTF-8 and has no foreign extension or container key', () => {
    const values: unknown[] = [
      { a: 1, b: [true, null, 'x'], c: { d: 1.5, e: -0.25 } },
      [2n ** 64n - 1n, -(2n ** 63n), 2 ** 53, 0.1],
      new Map<unknown, unknown>([
        [1, 'one'],
        [true, 't'],
        [null, 'n'],
        [1.5, 'f'],
        ['z', 'last'],
      ]),
      { b: 1, 2: 'two', a: 3, 1: 'one', 4294967295: 'not an index', 4294967294: 'an index' },
      Object.defineProperty({}, '__proto__', { value: 'own', enumerable: true }),
      Buffer.from('héllo'),
      [Buffer.from([0xff, 0x00]), 'é😀\u2028\u0000"\\'],
      { nested: { deeper: { deepest: [[[[]]]] } }, empty: {} },
    ];
    for (const v of values) {
      const bytes = encode(v);
      assert.equal(transcoded(bytes), today(bytes), bytes.toString('hex'));
    }
  });

  it('keeps a key that comes twice at its first place, with its last value', () => {
    // {"a": 1, "b": 2, "a": 3}
    const bytes = u8(0x83, 0xa1, 0x61, 1, 0xa1, 0x62, 2, 0xa1, 0x61, 3);
    assert.equal(transcoded(bytes), '{"a":3,"b":2}');
    assert.equal(transcoded(bytes), today(bytes));
  });

  it("writes Salt's ext 78 and 79 as the codec decodes them", () => {
    const stamp = ext(78, Buffer.from('20261122T18:00:58.327795'));
    const constant = ext(79, encode(['SOME_CONSTANT', [1, 'a']]));
    const bytes = Buffer.concat([u8(0x92), stamp, constant]);
    assert.equal(transcoded(bytes), '["2026-11-22T18:00:58.327795",[1,"a"]]');
  });

  it('a deep value: the same text', () => {
    let bytes = encode('leaf');
    for (let i = 0; i < 500; i++) bytes = Buffer.concat([u8(0x91), bytes]);
    assertSame(bytes, 'deep');
  });
});

describe('msgpack → JSON of the captured Salt traffic', { skip: noCapture }, () => {
  it("every captured event's data, and its return, give today's text", () => {
    let returns = 0;
    for (const captured of capturedEvents) {
      const frame = decode(Buffer.from(captured.frame_msgpack_b64, 'base64')) as { body: Buffer };
      const sep = frame.body.indexOf('\n\n');
      const data = frame.body.subarray(sep + 2);
      assert.equal(transcoded(data), today(data), captured.tag);
      const value = decode(data) as Record<string, unknown>;
      if (value && typeof value === 'object' && 'return' in value) {
        returns++;
        const bytes = encode(value.return);
        assert.equal(transcoded(bytes), today(bytes), `${captured.tag} return`);
      }
    }
    assert.ok(returns > 0);
  });

  it("every captured reply gives today's text", () => {
    for (const [name, c] of Object.entries(reqserver)) {
      const bytes = Buffer.from(c.reply_msgpack_b64, 'base64');
      assert.equal(transcoded(bytes), today(bytes), name);
    }
  });
});
