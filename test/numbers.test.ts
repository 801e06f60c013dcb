/** lib/numbers.ts: the one rule for a positive number and for a whole number written by a person. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nonNegativeInteger, positiveInteger, positiveMs, positiveNumber, positiveOr, secondsToMs } from '../lib/numbers.js';

describe('numbers', () => {
  it('positiveNumber takes a positive finite number or a string holding one', () => {
    assert.equal(positiveNumber(3), 3);
    assert.equal(positiveNumber('1e3'), 1000);
    for (const bad of [0, -2, '0', '', '  ', 'x', Number.NaN, Number.POSITIVE_INFINITY, null, undefined, [], 2n]) {
      assert.equal(positiveNumber(bad), undefined, String(bad));
    }
  });

  it('positiveOr falls back for anything but a positive finite number (strings included)', () => {
    assert.equal(positiveOr(250, 100), 250);
    for (const bad of [undefined, 0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(positiveOr(bad, 100), 100);
    assert.equal(positiveOr('250' as unknown as number, 100), 100);
  });

  it('nonNegativeInteger takes whole numbers and digit strings, blanks around them; positiveInteger 1 or more', () => {
    assert.equal(nonNegativeInteger(0), 0);
    assert.equal(nonNegativeInteger(' 12 '), 12);
    assert.equal(nonNegativeInteger('007'), 7);
    for (const bad of [-1, 1.5, '1.5', '-3', '+3', '1e3', '0x10', '', ' ', 'x', true, null, undefined, 3n, Number.NaN]) {
      assert.equal(nonNegativeInteger(bad), undefined, String(bad));
    }
    assert.equal(positiveInteger(1), 1);
    assert.equal(positiveInteger('3'), 3);
    assert.equal(positiveInteger(0), undefined);
    assert.equal(positiveInteger('0'), undefined);
  });

  it('secondsToMs gives whole ms; positiveMs falls back when absent and names a bad value', () => {
    assert.equal(secondsToMs(1.1), 1100);
    assert.equal(positiveMs(undefined, 5, 'x'), 5);
    assert.equal(positiveMs(7, 5, 'x'), 7);
    assert.throws(() => positiveMs(0, 5, 'bodyTimeoutMs'), /bodyTimeoutMs must be a positive number of ms, got 0/);
  });
});
