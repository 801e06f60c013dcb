/**
 * Hostile input, over real HTTP to the handler backed by the master double:
 * random bytes, invalid UTF-8, 100,000-deep nesting, 1,000,000-item arrays
 * near the body limit, huge strings, duplicate keys, and `__proto__`,
 * `constructor` and `prototype` keys at every level of a lowstate, plus a
 * few seconds of random lowstates built from all of these.
 *
 * No body carries working credentials (the one user's password is never
 * generated), so every answer must be a 4xx with a JSON body; the server
 * must stay up; and no object prototype may be changed.
 *
 * Random cases come from a seeded generator: FUZZ_SEED=<n> replays a run
 * (the seed is in every failure message).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ALL_NETAPI_CLIENTS, startMaster } from './support/master.js';
import { createHandler } from '../lib/http/handler.js';
import { recordingLogger, request, serve, type Reply } from './support/http.js';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const FUZZ_MS = 3000;
const MAX_BODY = 2_200_000; // room for a 1,000,000-item array
const SECRET_PASSWORD = randomBytes(16).toString('hex');
/** Every client the config enables, and two it can't. */
const CLIENTS = [...ALL_NETAPI_CLIENTS, 'bogus', ''];
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype'];

/** mulberry32: small, seedable, good enough to pick cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the prototypes look like: compared before and after. */
function prototypeSnapshot(): string {
  const describe = (obj: object) =>
    Reflect.ownKeys(obj)
      .map((key) => {
        const d = Object.getOwnPropertyDescriptor(obj, key)!;
        const v =
          'value' in d
            ? typeof d.value === 'function'
              ? `fn:${d.value.name}`
              : typeof d.value === 'object'
                ? 'object'
                : String(d.value)
            : 'accessor';
        return `${String(key)}=${v}`;
      })
      .sort()
      .join(',');
  return [Object.prototype, Array.prototype, Function.prototype, String.prototype, Number.prototype, Boolean.prototype]
    .map(describe)
    .join('\n');
}

function assertUnpolluted(snapshot: string, context: string): void {
  const probe: Record<string, unknown> = {};
  for (const key of ['polluted', 'client', 'eauth', 'username', 'password', 'token', 'fun', 'tgt', 'arg', 'kwarg', 'isAdmin']) {
    assert.equal(probe[key], undefined, `Object.prototype.${key} was set (${context})`);
  }
  assert.equal(([] as unknown as Record<string, unknown>).polluted, undefined, context);
  assert.equal(Object.getPrototypeOf(probe), Object.prototype, context);
  assert.equal(prototypeSnapshot(), snapshot, `a prototype changed (${context})`);
}

function assertClientError(reply: Reply, context: string): void {
  assert.ok(reply.status >= 400 && reply.status < 500, `${context}: status ${reply.status}: ${reply.text.slice(0, 300)}`);
  assert.equal(reply.headers['content-type'], 'application/json', context);
  assert.equal(Number(reply.headers['content-length']), Buffer.byteLength(reply.text), context);
  const body = JSON.parse(reply.text) as { return?: unknown };
  assert.deepEqual(Object.keys(body), ['return'], context);
  assert.equal(typeof body.return, 'string', context);
}

// ---------------------------------------------------------------- generators

/** A JSON string literal of random text: escapes, control characters, astral and lone surrogates. */
function stringLiteral(rand: () => number, maxLength = 12): string {
  const n = Math.floor(rand() * maxLength);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.6) s += String.fromCharCode(0x20 + Math.floor(rand() * 95));
    else if (r < 0.7) s += String.fromCharCode(0xa0 + Math.floor(rand() * 0x3000));
    else if (r < 0.75) s += '\u{1F600}';
    else if (r < 0.8)
      s += String.fromCharCode(0xd800 + Math.floor(rand() * 0x800)); // lone surrogate
    else if (r < 0.9) s += String.fromCharCode(Math.floor(rand() * 0x20));
    else s += ['"', '\\', '/', '\u2028'][Math.floor(rand() * 4)];
  }
  return JSON.stringify(s);
}

const pick = <T>(rand: () => number, items: readonly T[]): T => items[Math.floor(rand() * items.length)];

function numberLiteral(rand: () => number): string {
  return pick(rand, [
    '0',
    '-0',
    '1',
    '-1',
    '1.5',
    '1e400',
    '-1e-400',
    '9007199254740993',
    '18446744073709551616',
    '-123456789012345678901234567890',
    '0.1e1',
    String(Math.floor(rand() * 1e6)),
  ]);
}

/** Keys an attacker would try, and the ones the dispatcher reads. */
const KEYS = [
  ...PROTO_KEYS,
  'client',
  'eauth',
  'username',
  'password',
  'token',
  'fun',
  'tgt',
  'tgt_type',
  'arg',
  'kwarg',
  'timeout',
  'full_return',
  'batch',
  'subset',
  'raw_shell',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'polluted',
  'isAdmin',
  'x',
];

/** A random JSON value as text; objects may repeat keys and always may carry prototype keys. */
function valueText(rand: () => number, depth: number): string {
  const r = rand();
  if (depth <= 0 || r < 0.35) {
    const s = rand();
    if (s < 0.3) return stringLiteral(rand);
    if (s < 0.6) return numberLiteral(rand);
    return pick(rand, ['null', 'true', 'false', '"*"', '"test.ping"', '"pam"', '"auto"', '"saltdev"', '"x"', '"00ff"']);
  }
  if (r < 0.6) {
    const n = Math.floor(rand() * 5);
    return `[${Array.from({ length: n }, () => valueText(rand, depth - 1)).join(',')}]`;
  }
  return objectText(rand, depth);
}

function objectText(rand: () => number, depth: number, base: string[] = []): string {
  const members = [...base];
  const n = Math.floor(rand() * 6);
  for (let i = 0; i < n; i++) members.push(`${JSON.stringify(pick(rand, KEYS))}:${valueText(rand, depth - 1)}`);
  // Prototype keys at this level, holding objects that would pollute if merged.
  if (rand() < 0.7) members.push(`"__proto__":{"polluted":true,"client":"runner","eauth":"pam","isAdmin":true}`);
  if (rand() < 0.5) members.push(`"constructor":{"prototype":{"polluted":true,"password":"x"}}`);
  if (rand() < 0.3) members.push(`"prototype":${valueText(rand, depth - 1)}`);
  // Duplicate keys: JSON allows them, the last one wins.
  if (rand() < 0.3 && members.length > 0) members.push(pick(rand, members));
  for (let i = members.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [members[i], members[j]] = [members[j], members[i]];
  }
  return `{${members.join(',')}}`;
}

/** A lowstate item that looks real: a client, credentials that never work, the client's keys, junk. */
function lowstateText(rand: () => number): string {
  const base = [
    `"client":${JSON.stringify(pick(rand, CLIENTS))}`,
    `"fun":${pick(rand, ['"test.ping"', '"test.arg"', '"key.list_all"', '"cmd.run"', valueText(rand, 2)])}`,
  ];
  const cred = rand();
  if (cred < 0.4)
    base.push(
      '"eauth":"pam"',
      '"username":"saltdev"',
      `"password":${pick(rand, ['"x"', '"wrong"', stringLiteral(rand), valueText(rand, 2)])}`,
    );
  else if (cred < 0.6) base.push(`"token":${pick(rand, ['"00ff00ff"', '"not hex"', '""', valueText(rand, 2)])}`);
  else if (cred < 0.7) base.push(`"eauth":${valueText(rand, 2)}`);
  if (rand() < 0.7) base.push(`"tgt":${pick(rand, ['"*"', '"minion1"', '["minion1"]', valueText(rand, 2)])}`);
  if (rand() < 0.5) base.push(`"arg":[${valueText(rand, 3)},${objectText(rand, 3)}]`);
  if (rand() < 0.5) base.push(`"kwarg":${objectText(rand, 3)}`);
  return objectText(rand, 3, base);
}

function invalidUtf8(rand: () => number): Buffer {
  const text = Buffer.from(`[{"client":"local","tgt":"*","fun":"test.ping","arg":["${'a'.repeat(Math.floor(rand() * 20))}`);
  const bad = pick(rand, [
    [0xff],
    [0xc3, 0x28],
    [0xe2, 0x28, 0xa1],
    [0xf0, 0x28, 0x8c, 0x28],
    [0xc0, 0xaf],
    [0xed, 0xa0, 0x80],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
    [0x80],
  ]);
  return Buffer.concat([text, Buffer.from(bad), Buffer.from('"]}]')]);
}

// ---------------------------------------------------------------- the server

async function setup(t: { after(fn: () => unknown): void }) {
  const master = await startMaster({
    users: { saltdev: { password: SECRET_PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } },
    eauthBackends: ['pam'],
  });
  const { logger, lines } = recordingLogger();
  // Thousands of 401s from one address: the failed-login throttle (test/http/throttle.test.ts) stays out of it.
  const handler = createHandler({ config: master.configPath, masterTimeoutMs: 2000, maxBodyBytes: MAX_BODY, logger, authFailureLimit: 0 });
  const s = await serve(handler);
  t.after(async () => {
    await s.close();
    handler.close();
    await master.close();
  });
  const post = (body: string | Buffer, headers?: Record<string, string>) => request(s.port, { body, headers });
  // A 500's detail is logged, never answered: show it in the failure.
  const lastError = () =>
    lines
      .filter((l) => l.level === 'error')
      .at(-1)
      ?.msg.slice(0, 2000) ?? 'no error logged';
  return { master, handler, port: s.port, post, lastError };
}

test(`hostile bodies, each a 4xx with a JSON body; nothing polluted; the server stays up (seed ${SEED})`, async (t) => {
  const env = await setup(t);
  const snapshot = prototypeSnapshot();
  const deep = 100_000;
  const million = Array(1_000_000).fill('0').join(',');
  const huge = 'A'.repeat(MAX_BODY - 200);
  const cases: Array<[string, string | Buffer, number?]> = [
    ['100,000-deep arrays', `${'['.repeat(deep)}${']'.repeat(deep)}`, 400],
    [
      '100,000-deep arrays around a long integer (the exact-integer reader)',
      `${'['.repeat(deep)}12345678901234567890${']'.repeat(deep)}`,
      400,
    ],
    ['100,000-deep objects', `${'{"a":'.repeat(deep)}1${'}'.repeat(deep)}`, 400],
    [
      '100,000-deep kwarg in a lowstate',
      `[{"client":"runner","fun":"test.arg","eauth":"pam","username":"saltdev","password":"x","kwarg":${'{"a":'.repeat(deep)}1${'}'.repeat(deep)}}]`,
      400,
    ],
    ['1,000,000-item array as the body', `[${million}]`, 400],
    ['1,000,000-item arg, no credentials', `[{"client":"local","tgt":"*","fun":"test.ping","arg":[${million}]}]`, 401],
    [
      '1,000,000-item arg, wrong password (goes to the master)',
      `[{"client":"runner","fun":"test.arg","eauth":"pam","username":"saltdev","password":"x","arg":[${million}]}]`,
      401,
    ],
    ['1,000,000-item array of long integers, over the limit', `[${Array(1_000_000).fill('12345678901234567890').join(',')}]`, 413],
    ['a huge string as fun, no credentials', `[{"client":"local","tgt":"*","fun":"${huge}"}]`, 401],
    [
      'a huge string as fun, wrong password',
      `[{"client":"local","tgt":"*","fun":"${huge}","eauth":"pam","username":"saltdev","password":"x"}]`,
      401,
    ],
    ['a huge key', `[{"${huge}":1,"client":"local"}]`, 401],
    ['a huge string as client', `[{"client":"${huge}","fun":"x"}]`, 400],
    [
      'duplicate keys: client changes to a bad one',
      '[{"client":"runner","fun":"test.arg","eauth":"pam","username":"saltdev","password":"x","client":"bogus"}]',
      400,
    ],
    [
      'duplicate keys: the password that counts is wrong',
      `[{"client":"runner","fun":"test.arg","eauth":"pam","username":"saltdev","password":"${SECRET_PASSWORD}","password":"x"}]`,
      401,
    ],
    ['a client that is an object with a long integer', '[{"client":{"a":12345678901234567890},"fun":"x"}]', 400],
    ['a client that is a long integer', '[{"client":12345678901234567890,"fun":"x"}]', 400],
    [
      '__proto__ holding a client, no credentials of its own',
      '[{"__proto__":{"client":"runner","eauth":"pam","username":"saltdev","password":"x"},"fun":"test.arg"}]',
      400,
    ],
    [
      '__proto__ credentials only',
      '[{"client":"runner","fun":"test.arg","__proto__":{"eauth":"pam","username":"saltdev","password":"x"}}]',
      401,
    ],
    [
      '__proto__ with a long integer (exact-integer reader)',
      '[{"client":"runner","fun":"test.arg","__proto__":{"eauth":"pam","n":12345678901234567890}}]',
      401,
    ],
    ['constructor.prototype', '[{"client":"local","constructor":{"prototype":{"eauth":"pam"}},"fun":"test.ping","tgt":"*"}]', 401],
    ['a single object body with __proto__', '{"__proto__":{"client":"local"},"fun":"test.ping"}', 400],
    ['an empty body', '', 400],
    ['a bare string', '"[]"', 400],
    ['only a BOM', '\ufeff', 400],
    ['NUL bytes', Buffer.from([0, 0, 0, 0]), 400],
    ['JSON with a trailing NUL', Buffer.concat([Buffer.from('[]'), Buffer.from([0])]), 400],
  ];
  for (const [name, body, status] of cases) {
    const reply = await env.post(body);
    assertClientError(reply, reply.status === 500 ? `${name}; logged: ${env.lastError()}` : name);
    if (status) assert.equal(reply.status, status, `${name}: ${reply.text.slice(0, 200)}`);
    assertUnpolluted(snapshot, name);
  }
  assert.equal(env.handler.stats().inFlight, 0);
  assert.equal((await request(env.port, { method: 'GET' })).status, 200);
});

test(`prototype keys at every level of each client's lowstate: 4xx, and nothing reaches a prototype (seed ${SEED})`, async (t) => {
  const env = await setup(t);
  const snapshot = prototypeSnapshot();
  const poison = '{"polluted":true,"client":"runner","eauth":"pam","username":"saltdev","password":"x","arg":["p"],"kwarg":{"p":1}}';
  const everyLevel = (client: string, cred: string) =>
    `[{"__proto__":${poison},"constructor":{"prototype":${poison}},"prototype":${poison},"client":"${client}",${cred}` +
    `"tgt":"*","fun":"test.arg","arg":[{"__proto__":${poison},"__kwarg__":true,"constructor":{"prototype":${poison}}},"__proto__=1","constructor={\\"prototype\\": {\\"polluted\\": 1}}"],` +
    `"kwarg":{"__proto__":${poison},"constructor":{"prototype":${poison}},"prototype":${poison},"arg":{"__proto__":${poison}}},"batch":"1","subset":1}]`;
  for (const client of CLIENTS.filter(Boolean)) {
    for (const cred of [
      '',
      '"eauth":"pam","username":"saltdev","password":"x",',
      '"token":"0123abcd",',
      '"token":{"__proto__":{"length":1}},',
    ]) {
      const reply = await env.post(everyLevel(client, cred));
      assertClientError(reply, `${client} ${cred}`);
      assertUnpolluted(snapshot, `${client} ${cred}`);
    }
  }
  // A single object (taken as a list of one) with them too.
  assertClientError(await env.post(`{"__proto__":${poison},"client":"runner","fun":"test.arg"}`), 'single object');
  assertUnpolluted(snapshot, 'single object');
});

test(`random bytes, invalid UTF-8, wrong methods and types, random lowstates for ${FUZZ_MS} ms (seed ${SEED})`, async (t) => {
  const env = await setup(t);
  const snapshot = prototypeSnapshot();
  const rand = prng(SEED);
  const statuses = new Map<number, number>();
  const end = performance.now() + FUZZ_MS;
  let n = 0;
  while (performance.now() < end) {
    n++;
    const kind = rand();
    let reply: Reply;
    let what: string;
    if (kind < 0.15) {
      what = 'random bytes';
      const bytes = Buffer.alloc(Math.floor(rand() * 2048));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
      reply = await env.post(bytes);
    } else if (kind < 0.25) {
      what = 'invalid UTF-8';
      reply = await env.post(invalidUtf8(rand));
    } else if (kind < 0.3) {
      what = 'not JSON content';
      reply = await request(env.port, {
        body: lowstateText(rand),
        headers: { 'content-type': pick(rand, ['application/xml', 'text/html', 'application/jsonx', '']) },
      });
    } else if (kind < 0.33) {
      what = 'another method';
      reply = await request(env.port, {
        method: pick(rand, ['PUT', 'DELETE', 'PATCH', 'OPTIONS']),
        body: lowstateText(rand),
        headers: { 'content-type': 'application/json' },
      });
    } else if (kind < 0.4) {
      what = 'random JSON';
      let text = valueText(rand, 6);
      while (text === '[]') text = valueText(rand, 6); // an empty list is a valid request (200)
      reply = await env.post(text);
    } else {
      what = 'random lowstates';
      const items = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => lowstateText(rand));
      reply = await env.post(rand() < 0.1 ? items[0] : `[${items.join(',')}]`);
    }
    assertClientError(reply, `case ${n} (${what}), seed ${SEED}${reply.status === 500 ? `; logged: ${env.lastError()}` : ''}`);
    statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
    if (n % 50 === 0) assertUnpolluted(snapshot, `after case ${n}, seed ${SEED}`);
  }
  assertUnpolluted(snapshot, `after ${n} cases, seed ${SEED}`);
  // The mix did reach past our own checks: the master refused some (401 from it).
  assert.ok(n > 100, `only ${n} cases`);
  assert.ok((statuses.get(400) ?? 0) > 0 && (statuses.get(401) ?? 0) > 0, JSON.stringify([...statuses]));
  assert.ok(
    (env.master.counts.publish ?? 0) + (env.master.counts.runner ?? 0) + (env.master.counts.wheel ?? 0) > 0,
    'some reached the master',
  );
  assert.equal(env.master.executed.length, 0, 'nothing ran');
  // Still up, and still working for a real user.
  assert.equal((await request(env.port, { method: 'GET' })).status, 200);
  const ok = await env.post(
    JSON.stringify([
      { client: 'runner', fun: 'test.arg', arg: ['still up'], eauth: 'pam', username: 'saltdev', password: SECRET_PASSWORD },
    ]),
  );
  assert.equal(ok.status, 200, ok.text);
  assert.equal(env.handler.stats().inFlight, 0);
});

test('prototype keys are data: a working request carrying them runs as if they were ordinary keys, the master gets them as keys', async (t) => {
  const env = await setup(t);
  const snapshot = prototypeSnapshot();
  const cred = `"eauth":"pam","username":"saltdev","password":"${SECRET_PASSWORD}"`;
  // kwarg's __proto__ names arg and kwarg: merged by assignment it would turn the load into {"arg", "kwarg"} form.
  const reply = await env.post(`[{"client":"runner","fun":"test.arg",${cred},"kwarg":{"__proto__":{"arg":[1],"kwarg":{"z":1}},"b":2}}]`);
  assert.equal(reply.status, 200, reply.text);
  // The item's keywords, bound to test.arg's signature (it takes **kwargs): the load's kwarg.kwarg.
  const load = {
    kwarg: (env.master.requests.find((r) => r.cmd === 'runner' && r.load.fun === 'test.arg')!.load.kwarg as { kwarg: unknown }).kwarg,
  };
  // msgpackr reads a `__proto__` key back as `__proto_` (its own guard): what we sent was the key, as data.
  assert.deepEqual(Object.keys(load.kwarg as object).sort(), ['__proto_', 'b']);
  assert.deepEqual((load.kwarg as Record<string, unknown>).__proto_, { arg: [1], kwarg: { z: 1 } });
  assertUnpolluted(snapshot, 'runner');
});
