/** lib/objects.ts: which values are plain objects, keys written as data, the strings of a list. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { decode, encode } from '../lib/salt/codec.js';
import { defineKey, isPlainObject, stringsIn } from '../lib/objects.js';

describe('objects', () => {
  it('isPlainObject: the mappings JSON, msgpack and YAML make, and nothing else', () => {
    assert.equal(isPlainObject({}), true);
    assert.equal(isPlainObject(Object.create(null)), true);
    assert.equal(isPlainObject(JSON.parse('{"a":1}')), true);
    assert.equal(isPlainObject(decode(encode({ head: { mid: 1 } }))), true);
    assert.equal(isPlainObject(YAML.parse('a: 1')), true);
    for (const not of [
      null,
      undefined,
      [],
      'x',
      1,
      new Date(),
      Buffer.from('x'),
      new Uint8Array(1),
      new Map(),
      YAML.parse('2026-12-02', { version: '1.1' }),
    ]) {
      assert.equal(isPlainObject(not), false, String(not));
    }
  });

  it('defineKey writes __proto__ as an own key, not the prototype', () => {
    const obj: Record<string, unknown> = {};
    defineKey(obj, '__proto__', 1);
    defineKey(obj, 'a', 2);
    assert.deepEqual(Object.keys(obj), ['__proto__', 'a']);
    assert.equal(Object.getPrototypeOf(obj), Object.prototype);
  });

  it("stringsIn keeps a list's strings, and the list itself when that is all it holds", () => {
    const ids = ['a', 'b'];
    assert.equal(stringsIn(ids), ids);
    assert.deepEqual(stringsIn(['a', 1, null, 'b']), ['a', 'b']);
    assert.deepEqual(stringsIn('a'), []);
    assert.deepEqual(stringsIn(undefined), []);
  });
});
