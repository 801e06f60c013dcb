import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toJson, bytesToText, parseJson } from '../lib/json.js';
import { decode, encode } from '../lib/salt/codec.js';

test('plain values match JSON.stringify', () => {
  const values: unknown[] = [
    null,
    true,
    false,
    0,
    -0,
    1.5,
    -12e-7,
    'héllo "quoted" \\ \n\t \u0000 \u2028 😀',
    '\ud800 lone surrogate',
    [],
    {},
    [1, 'a', null, { b: [true, { c: 'd' }] }],
    { 'key with "quotes"': 1, '': 2, nested: { empty: [] } },
  ];
  for (const value of values) assert.equal(toJson(value), JSON.stringify(value), String(value));
});

test('integers past 2^53 keep every digit', () => {
  assert.equal(toJson(18446744073709551615n), '18446744073709551615');
  assert.equal(toJson({ size: -9223372036854775808n, small: 3n }), '{"size":-9223372036854775808,"small":3}');
  // What the codec gives for a uint64 from the master reaches the JSON exactly.
  const decoded = decode(Buffer.from('cfffffffffffffffff', 'hex'));
  assert.equal(toJson({ v: decoded }), '{"v":18446744073709551615}');
});

test('binary becomes UTF-8 text when it decodes, else base64', () => {
  assert.equal(toJson(Buffer.from('héllo', 'utf8')), '"héllo"');
  assert.equal(toJson(new Uint8Array([0xff, 0xfe, 0x00])), JSON.stringify(Buffer.from([0xff, 0xfe, 0x00]).toString('base64')));
  const sub = new Uint8Array([0x00, 0x61, 0x62, 0x00]).subarray(1, 3);
  assert.equal(bytesToText(sub), 'ab');
  // msgpack bin 8 as the master sends it for Python bytes
  const bin = decode(Buffer.concat([Buffer.from([0xc4, 3]), Buffer.from([0x80, 0x81, 0x82])]));
  assert.equal(toJson([bin]), JSON.stringify([Buffer.from([0x80, 0x81, 0x82]).toString('base64')]));
});

test("Salt's datetime and constant extensions come out as their values", () => {
  // ext 78: a datetime as `%Y%m%dT%H:%M:%S.%f`
  const stamp = Buffer.from('20261122T18:00:58.327795');
  const ext78 = Buffer.concat([Buffer.from([0xc7, stamp.length, 78]), stamp]);
  assert.equal(toJson({ _stamp: decode(ext78) }), '{"_stamp":"2026-11-22T18:00:58.327795"}');
  // ext 79: a packed [name, value]
  const pair = encode(['SOME_CONSTANT', 42]);
  const ext79 = Buffer.concat([Buffer.from([0xc7, pair.length, 79]), pair]);
  assert.equal(toJson([decode(ext79)]), '[42]');
});

test('Map, Date, Set, undefined', () => {
  const map = new Map<unknown, unknown>([
    ['a', 1],
    [2, 'two'],
    [true, null],
    [null, 0],
    [Buffer.from('k'), 'bytes key'],
  ]);
  assert.equal(toJson(map), '{"a":1,"2":"two","true":null,"null":0,"k":"bytes key"}');
  assert.equal(toJson(new Date('2026-01-02T03:04:05.678Z')), '"2026-01-02T03:04:05.678Z"');
  assert.equal(toJson(new Date(NaN)), 'null');
  assert.equal(toJson(new Set([1, 'x'])), '[1,"x"]');
  assert.equal(toJson([undefined, () => 1, Symbol('s')]), '[null,null,null]');
  assert.equal(toJson({ a: undefined, b: 1, c: undefined }), '{"b":1}');
  assert.equal(toJson({ a: undefined }), '{}');
  assert.equal(toJson([NaN, Infinity, -Infinity]), '[null,null,null]');
});

test('an own __proto__ key is written as data', () => {
  const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
  assert.equal(toJson(parsed), '{"__proto__":{"polluted":true},"a":1}');
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a shared (not circular) object is written twice; a circular one throws', () => {
  const shared = { x: 1 };
  assert.equal(toJson([shared, shared]), '[{"x":1},{"x":1}]');
  const loop: Record<string, unknown> = {};
  loop.self = loop;
  assert.throws(() => toJson(loop), TypeError);
});

test('the output parses back to the same data', () => {
  const value = { return: [{ minion1: { ret: 'ok', retcode: 0, jid: '20261122180058327795' }, ghost1: false }] };
  assert.deepEqual(JSON.parse(toJson(value)), value);
});

test('parseJson: integers past 2^53 stay exact, the rest as JSON.parse', () => {
  assert.deepEqual(parseJson('[18446744073709551615, -9223372036854775809, 9007199254740991, 9007199254740992]'), [
    18446744073709551615n,
    -9223372036854775809n,
    9007199254740991,
    9007199254740992n,
  ]);
  // Python reads these as floats.
  assert.deepEqual(
    parseJson('[1e20, 18446744073709551615.0, 12345678901234567890e0]'),
    [1e20, 18446744073709551615.0, 12345678901234567890],
  );
  // Long digit runs inside strings, escapes, nesting, whitespace.
  const text =
    ' { "jid" : "20261122180058327795", "s": "a\\"b\\\\c\\u00e9\\n", "n": [ {}, [], null, true, false, -0.5e-3 ], "big": {"v": 123456789012345678901234567890} } ';
  const parsed = parseJson(text) as Record<string, unknown>;
  assert.equal(parsed.jid, '20261122180058327795');
  assert.equal(parsed.s, 'a"b\\cé\n');
  assert.deepEqual(parsed.n, [{}, [], null, true, false, -0.5e-3]);
  assert.deepEqual(parsed.big, { v: 123456789012345678901234567890n });
  // Round trip through toJson keeps every digit.
  assert.equal(toJson(parseJson('{"a":[18446744073709551615,1.5,"x"]}')), '{"a":[18446744073709551615,1.5,"x"]}');
});

test('parseJson: __proto__ is an own key, on both paths', () => {
  for (const text of ['{"__proto__": {"polluted": 1}}', '{"__proto__": {"polluted": 18446744073709551615}}']) {
    const parsed = parseJson(text) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.ok(Object.hasOwn(parsed, '__proto__'));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  }
});

test('parseJson: invalid text throws the SyntaxError of JSON.parse', () => {
  for (const text of ['', '[1,', '{"a" 1}', '[18446744073709551615,]', 'nul']) {
    assert.throws(() => parseJson(text), SyntaxError, text);
  }
});

test('plain data and data with special values nested anywhere give the same text as the slow path would', () => {
  const plain = { a: [1, 'two', null, true, { b: undefined, c: [undefined] }], d: 1.5 };
  assert.equal(toJson(plain), JSON.stringify(plain));
  // A special value deep inside, beside plain siblings.
  const mixed = {
    plain: { x: [1, 2, { y: 'z' }] },
    deep: { list: [{ n: 18446744073709551615n, b: Buffer.from('ok') }, { m: new Map([['k', 1]]) }] },
  };
  assert.equal(toJson(mixed), '{"plain":{"x":[1,2,{"y":"z"}]},"deep":{"list":[{"n":18446744073709551615,"b":"ok"},{"m":{"k":1}}]}}');
  // Deeper than the fast check looks: still right.
  let nested: unknown = 18446744073709551615n;
  for (let i = 0; i < 300; i++) nested = [nested];
  assert.equal(toJson(nested), '['.repeat(300) + '18446744073709551615' + ']'.repeat(300));
  let plainNested: unknown = 'leaf';
  for (let i = 0; i < 300; i++) plainNested = { k: plainNested };
  assert.equal(toJson(plainNested), JSON.stringify(plainNested));
  assert.equal(toJson(undefined), 'null');
  assert.equal(toJson(Object.assign(Object.create(null), { a: 1 })), '{"a":1}');
});
