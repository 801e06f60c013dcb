/**
 * Events that stay packed (lib/salt/packed-event.ts): their fields read
 * without decoding are what decoding gives, a return carried as JSON text
 * is the text toJson writes for the decoded return, and a `local` answer
 * made of RawJson returns is, byte for byte, the answer made of values.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NetapiClient } from '../../lib/clients/netapi.js';
import { RawJson, toJson } from '../../lib/json.js';
import { encode } from '../../lib/salt/codec.js';
import { loadMasterConfig } from '../../lib/salt/config.js';
import { decodeEvent } from '../../lib/salt/event-retention.js';
import { type JobField, PackedEvent, fieldsOf, packable } from '../../lib/salt/packed-event.js';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { capturedEvents, noCapture } from '../support/wire.js';

const FIELDS: JobField[] = ['minions', 'missing', 'id', 'return', 'out', 'retcode', 'jid'];

/** Every field, read packed, against the same event decoded. */
function assertFieldsAsDecoded(bytes: Buffer, what: string): void {
  const event = decodeEvent('salt/job/1/ret/m', bytes);
  assert.ok(event instanceof PackedEvent, `${what} stays packed`);
  const reference = decodeEvent('salt/job/1/ret/m', Buffer.from(bytes))!.data as Record<string, unknown>;
  const fields = fieldsOf(event)!;
  for (const field of FIELDS) {
    assert.equal(fields.has(field), field in reference, `${what}: has ${field}`);
    if (field === 'return' && fields.has(field)) {
      const answer = fields.answer(field);
      assert.equal(answer instanceof RawJson ? answer.json : toJson(answer), toJson(reference[field]), `${what}: return`);
    } else if (fields.has(field)) assert.deepEqual(fields.get(field), reference[field], `${what}: ${field}`);
  }
  // Decoding it all still gives what it always did.
  assert.deepEqual(event.data, reference);
}

describe('packed events', () => {
  it('read as decoding reads them: a return, a new event, odd encodings', () => {
    const returns: unknown[] = [
      true,
      'text',
      { a: [1, 2n ** 64n - 1n, -0.5], b: Buffer.from([0xff, 0]), '10': 'index first', __proto__x: null },
      [
        new Map<unknown, unknown>([
          [1, 'one'],
          [null, 'nil'],
        ]),
        'é😀',
      ],
      null,
    ];
    for (const ret of returns) {
      const data = {
        cmd: '_return',
        id: 'minion1',
        success: true,
        return: ret,
        retcode: 0,
        jid: '20261203070000000000',
        fun: 'x',
        fun_args: [],
        _stamp: 's',
      };
      assertFieldsAsDecoded(encode(data), toJson(ret));
    }
    assertFieldsAsDecoded(encode({ minions: ['a', 'b'], missing: [], jid: '1', _stamp: 's' }), 'new');
    // A key that comes twice: the last value, as decoding gives.
    assertFieldsAsDecoded(Buffer.from([0x82, 0xa2, 0x69, 0x64, 0xa1, 0x61, 0xa2, 0x69, 0x64, 0xa1, 0x62]), 'id twice');
    // The field names in str 8, not fixstr.
    assertFieldsAsDecoded(
      Buffer.from([0x82, 0xd9, 2, 0x69, 0x64, 0xa1, 0x61, 0xd9, 6, ...Buffer.from('return'), 0x91, 0xc3]),
      'str 8 keys',
    );
  });

  it("compare a new event's minions where they lie as comparing the decoded list does", () => {
    const fleet = Array.from({ length: 300 }, (_, i) => `fleet-${i}`); // a list 16
    const lists: unknown[][] = [[], ['a', 'b'], fleet, ['é', 'b'], ['a', 1], ['x'.repeat(40)]];
    const against: string[][] = [[], ['a', 'b'], ['a'], ['b', 'a'], fleet, ['é', 'b'], ['x'.repeat(40)]];
    for (const minions of lists) {
      const bytes = encode({ minions, missing: [], jid: '1' });
      const packed = fieldsOf(decodeEvent('salt/job/1/new', bytes)!)!;
      const decoded = (decodeEvent('salt/job/1/new', Buffer.from(bytes))!.data as { minions: unknown[] }).minions;
      for (const ids of against) {
        const same = decoded.length === ids.length && decoded.every((id, i) => id === ids[i]);
        assert.equal(packed.sameStrings('minions', ids), same, `${minions.length} minions against ${ids.length}`);
      }
      assert.deepEqual(packed.get('missing'), []);
      assert.equal(packed.sameStrings('id', ['1']), false, 'not a list');
    }
  });

  it('are decoded at once when decoding could fail or give other than plain values', () => {
    const unknownExt = Buffer.from([0x81, 0xa1, 0x61, 0xd4, 0x01, 0x00]);
    const binKey = Buffer.from([0x81, 0xc4, 0x01, 0x61, 0xc3]);
    const trailing = Buffer.concat([encode({ a: 1 }), Buffer.from([0xc0])]);
    const truncated = encode({ id: 'minion1', return: [1, 2, 3] }).subarray(0, 12);
    for (const bytes of [unknownExt, binKey, trailing, truncated]) {
      assert.equal(packable(bytes, 0, bytes.length), false, bytes.toString('hex'));
      assert.ok(!(decodeEvent('t', bytes) instanceof PackedEvent));
    }
    // What the codec refuses is still dropped, as before.
    assert.equal(decodeEvent('t', binKey), null);
    assert.equal(decodeEvent('t', trailing), null);
  });

  it('every captured event reads as it decodes', { skip: noCapture }, () => {
    for (const captured of capturedEvents) {
      const body = Buffer.from(captured.frame_msgpack_b64, 'base64');
      const frame = decodeEvent('f', body)!.data as { body: Buffer };
      const data = frame.body.subarray(frame.body.indexOf('\n\n') + 2);
      assertFieldsAsDecoded(Buffer.from(data), captured.tag);
    }
  });
});

describe('a local answer of returns carried as JSON text', () => {
  let master: SaltMasterDouble;
  const users = { saltdev: { password: 'pw', permissions: ['.*'] } };
  const odd = (id: string) => ({
    id,
    nested: { list: [1, 2.5, -0, null, true, 'é😀\n"'], empty: {}, big: 2n ** 64n - 1n, negative: -(2n ** 63n) },
    bytes: Buffer.from([0xff, 0xfe]),
    text_bytes: Buffer.from('plain'),
    '7': 'an index key',
    keys: new Map<unknown, unknown>([
      [1, 'int key'],
      [true, 'bool key'],
      [null, 'nil key'],
    ]),
  });
  before(async () => {
    master = await startMaster({
      users,
      minions: ['m1', 'm2', 'm3'].map((id) => ({ id, overrides: { 'test.odd': () => odd(id) } })),
    });
  });
  after(() => master.close());

  it('is byte for byte the answer made of decoded values, plain and full_return', async () => {
    const low = { client: 'local', tgt: '*', fun: 'test.odd', eauth: 'pam', username: 'saltdev', password: 'pw' };
    const raw = new NetapiClient(loadMasterConfig(master.configPath), { rawReturns: true });
    const decoded = new NetapiClient(loadMasterConfig(master.configPath));
    try {
      for (const item of [low, { ...low, full_return: true }] as Array<Record<string, unknown>>) {
        const [a, b] = [(await raw.run(item)) as Record<string, unknown>, (await decoded.run(item)) as Record<string, unknown>];
        assert.ok(
          Object.values(a).every((v) => (item.full_return ? (v as { ret: unknown }).ret : v) instanceof RawJson),
          'carried as text',
        );
        // Arrival order may differ between the two jobs: compare minion by minion, in one order.
        // Each job has its own jid.
        const text = (v: unknown) => toJson(v).replace(/"jid":"\d+"/, '"jid":"…"');
        for (const id of ['m1', 'm2', 'm3']) assert.equal(text(a[id]), text(b[id]), id);
      }
    } finally {
      raw.close();
      decoded.close();
    }
  });
});
