/**
 * The answer written in pieces (lib/http/response.ts): the same text as toJson
 * for every kind of value the codec gives, Content-Length for small answers,
 * chunked for large ones, backpressure honoured, and a client that goes away
 * mid-answer stops the writing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { toJson, parseJson } from '../../lib/json.js';
import { jsonPieces, writeJsonAnswer, PIECE_BYTES } from '../../lib/http/response.js';
import { AnswerAbortedError, SendTimeoutError } from '../../lib/errors.js';

function tricky(): Record<string, unknown> {
  const nested: Record<string, unknown> = { deeper: { still: [1, { x: 2n ** 70n }] } };
  return {
    big: 2n ** 64n + 1n,
    negative: -(2n ** 63n) - 5n,
    utf8: Buffer.from('héllo ✓'),
    binary: Buffer.from([0xff, 0x00, 0xfe]),
    typed: new Uint8Array([104, 105]),
    map: new Map<unknown, unknown>([
      [1, 'one'],
      [true, 'yes'],
      [null, 'none'],
      [Buffer.from('k'), 'bytes key'],
      ['gone', undefined],
    ]),
    set: new Set([1, 'two', undefined]),
    gone: undefined,
    fn: () => 1,
    sym: Symbol('s'),
    list: [undefined, () => 1, Symbol('t'), null, NaN, Infinity, -0, 1.5],
    date: new Date(Date.UTC(2026, 10, 30, 4, 5, 6, 7)),
    badDate: new Date(NaN),
    withToJson: { toJSON: () => ({ made: 'by toJSON' }) },
    toJsonUndefined: { toJSON: () => undefined },
    nullProto: Object.assign(Object.create(null), { a: 1, '2': 'two', b: [2n] }),
    numericKeys: { '10': 'ten', '2': 'two', z: 'zed', '1': 'one' },
    nested,
    escapes: 'quote " backslash \\ newline \n tab \t nul \u0000 \u2028 emoji 😀',
    long: 'y'.repeat(3 * PIECE_BYTES + 7),
    emptyObject: {},
    emptyList: [],
  };
}

describe('pieces of the answer', () => {
  test('joined, they are toJson of the same value, whatever it holds', () => {
    const values: unknown[] = [
      { return: [tricky()] },
      { return: [{ m1: tricky(), m2: [tricky(), tricky()], m3: false }, 'text', 5n] },
      { return: [new Map([['fleet-1', { ret: 2n ** 80n }]])] },
      undefined,
      null,
      'just a string',
      [undefined, { a: undefined }],
      { return: [[{ m1: { deep: { deeper: { deepest: [1n, Buffer.from([0xc3])] } } } }]] },
      // Past 1 MiB: walked member by member, down to the members of a minion's return.
      {
        return: [
          {
            m1: { ...tricky(), long: 'y'.repeat(1_200_000) },
            m2: tricky(),
            m3: [tricky(), { ...tricky(), long: 'z'.repeat(1_100_000) }, undefined],
          },
        ],
      },
      {
        return: [
          new Map<unknown, unknown>([
            ['a', 'x'.repeat(1_200_000)],
            [1, tricky()],
            ['u', undefined],
            [Buffer.from('k'), new Set([tricky(), 'w'.repeat(1_100_000)])],
          ]),
          'after',
        ],
      },
    ];
    for (const value of values) assert.equal([...jsonPieces(value)].join(''), toJson(value));
    // The big ones come in several pieces, none much past PIECE_BYTES but a member's own text.
    assert.ok([...jsonPieces(values[values.length - 1])].length > 3);
  });

  test('a member that contains its ancestor is refused as toJson refuses it', () => {
    const a: Record<string, unknown> = { x: 1 };
    const b = { a };
    a.b = b;
    assert.throws(() => [...jsonPieces({ return: [b] })], TypeError);
  });
});

function serve(body: () => unknown, sendTimeoutMs?: number): Promise<{ port: number; close(): Promise<void>; errors: unknown[] }> {
  const errors: unknown[] = [];
  const server = http.createServer((_req, res) => {
    writeJsonAnswer(res, 200, body(), { 'X-Test': 'yes' }, sendTimeoutMs).catch((err) => {
      errors.push(err);
      res.destroy();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        errors,
        close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
      }),
    ),
  );
}

function get(port: number): Promise<{ headers: http.IncomingHttpHeaders; text: string; status: number }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ headers: res.headers, status: res.statusCode!, text: Buffer.concat(chunks).toString('utf8') }));
      })
      .on('error', reject);
  });
}

describe('writeJsonAnswer over HTTP', () => {
  test('a small answer has its Content-Length; its headers are set before it', async (t) => {
    const value = { return: [{ m1: true, big: 2n ** 70n }] };
    const server = await serve(() => value);
    t.after(() => server.close());
    const answer = await get(server.port);
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-length'], String(Buffer.byteLength(toJson(value))));
    assert.equal(answer.headers['x-test'], 'yes');
    assert.equal(answer.headers['content-type'], 'application/json');
    assert.equal(answer.text, toJson(value));
  });

  test('a large answer is chunked, without Content-Length, and is the same text', async (t) => {
    const result: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) result[`m${i}`] = { ret: 'é'.repeat(20_000), n: 2n ** 65n + BigInt(i), bin: Buffer.from([0xff, i]) };
    const value = { return: [result] };
    const server = await serve(() => value);
    t.after(() => server.close());
    const answer = await get(server.port);
    assert.equal(answer.headers['content-length'], undefined);
    assert.equal(answer.headers['transfer-encoding'], 'chunked');
    assert.equal(answer.text, toJson(value));
    assert.equal((parseJson(answer.text) as { return: Array<Record<string, { n: bigint }>> }).return[0].m39.n, 2n ** 65n + 39n);
  });

  test('a client that stops reading holds the writer back; one that goes away ends it', async (t) => {
    const result: Record<string, string> = {};
    for (let i = 0; i < 400; i++) result[`m${i}`] = 'z'.repeat(PIECE_BYTES);
    const server = await serve(() => ({ return: [result] }));
    t.after(() => server.close());
    // A raw client that reads nothing: the server must wait on 'drain', not queue 25 MiB.
    const socket = net.connect(server.port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.pause();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.errors.length, 0);
    socket.destroy();
    for (let i = 0; i < 50 && server.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.errors.length, 1);
    assert.ok(server.errors[0] instanceof AnswerAbortedError);
  });

  test('a client that takes nothing for sendTimeoutMs is disconnected; the wait ends with SendTimeoutError', async (t) => {
    // 25 MiB: the writer waits on 'drain' long before the end.
    const result: Record<string, string> = {};
    for (let i = 0; i < 400; i++) result[`m${i}`] = 'z'.repeat(PIECE_BYTES);
    const server = await serve(() => ({ return: [result] }), 300);
    t.after(() => server.close());
    const socket = net.connect(server.port, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.pause();
    const t0 = performance.now();
    for (let i = 0; i < 150 && server.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const after = performance.now() - t0;
    t.diagnostic(`the writer gave up after ${after.toFixed(0)} ms (send timeout 300 ms)`);
    assert.equal(server.errors.length, 1);
    assert.ok(server.errors[0] instanceof SendTimeoutError, String(server.errors[0]));
    assert.match((server.errors[0] as Error).message, /took nothing of the answer for 0.3 s \(send_timeout\)/);
    assert.ok(after >= 250, `gave up after ${after.toFixed(0)} ms`);
  });
});
