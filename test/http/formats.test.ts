/**
 * Salt's formats on the one route (README: Formats): form-encoded and YAML
 * bodies, YAML answers by Accept, the X-Auth-Token header. Real HTTP to the
 * handler, backed by the master double set up as the real master of
 * test/real-master.test.ts is, whose recorded cases (test/support/format-cases.ts)
 * the double must give too. YAML answers are read back by Python's PyYAML
 * (a YAML 1.1 reader, Debian's python3-yaml) when it is there.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { createHandler, type RestWsgiHandler } from '../../lib/http/handler.js';
import { parseJson } from '../../lib/json.js';
import { NOT_ACCEPTABLE_MESSAGE } from '../../lib/http/answer-formats.js';
import { request, recordingLogger, serve, type LogLine, type Reply } from '../support/http.js';
import { FORMAT_CASES, formBody, normalize } from '../support/format-cases.js';
import { assertSameData } from '../support/pyyaml.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const YAML = { 'content-type': 'application/x-yaml' };
const WANT_YAML = { accept: 'application/x-yaml' };
const SALTDEV = { eauth: 'auto', username: 'saltdev', password: 'x' };

interface Setup {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  port: number;
  lines: LogLine[];
  close(): Promise<void>;
}

async function setup(): Promise<Setup> {
  const master = await startMaster({
    users: { saltdev: { password: 'x', permissions: ['.*', '@runner', '@wheel', '@jobs'] } },
    minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }],
    config: {
      netapi_enable_clients: ['local', 'local_async', 'local_batch', 'local_subset', 'runner', 'runner_async', 'wheel', 'wheel_async'],
    },
  });
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, masterTimeoutMs: 2000 });
  const server = await serve(handler);
  return {
    master,
    handler,
    port: server.port,
    lines,
    async close() {
      await server.close();
      handler.close();
      await master.close();
    },
  };
}

function outcome(reply: Reply): { status: number; data: unknown } {
  const body = parseJson(reply.text) as { return: unknown };
  return { status: reply.status, data: reply.status === 200 ? normalize(body.return) : body.return };
}

describe("the recorded cases of rest_cherrypy's /run, on the double", () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(() => s.close());

  for (const c of FORMAT_CASES) {
    for (const [format, headers, body] of [
      ['form', FORM, formBody(c.form)],
      ['YAML', YAML, c.yaml],
    ] as const) {
      test(`${format}: ${c.name}; its YAML answer is the same data`, async () => {
        const json = await request(s.port, { body, headers });
        assert.deepEqual(outcome(json), { status: c.status, data: c.expect });
        const yaml = await request(s.port, { body, headers: { ...headers, ...WANT_YAML } });
        assert.equal(yaml.status, c.status);
        assert.equal(yaml.headers['content-type'], 'application/x-yaml');
        assertSameData(yaml.text, json.text);
      });
    }
  }
});

describe('answers by Accept', () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(() => s.close());
  const ping = [{ client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV }];

  test('JSON for no Accept, */*, application/*, and JSON preferred; YAML when it weighs more', async () => {
    for (const accept of [undefined, '*/*', 'application/*', 'text/html, */*;q=0.8', 'application/x-yaml;q=0.5, application/json']) {
      const reply = await request(s.port, { body: ping, headers: { 'content-type': 'application/json', ...(accept ? { accept } : {}) } });
      assert.equal(reply.headers['content-type'], 'application/json', String(accept));
      assert.equal(reply.text, '{"return":[{"minion1":true}]}');
    }
    for (const accept of ['application/x-yaml', 'application/json;q=0.1, application/x-yaml', 'APPLICATION/X-YAML; charset=utf-8']) {
      const reply = await request(s.port, { body: ping, headers: { 'content-type': 'application/json', accept } });
      assert.equal(reply.headers['content-type'], 'application/x-yaml', accept);
      assert.equal(reply.text, 'return:\n- minion1: true\n');
      assert.equal(Number(reply.headers['content-length']), Buffer.byteLength(reply.text));
    }
  });

  test('406 naming both when Accept allows neither; nothing runs', async () => {
    const before = s.master.requests.length;
    for (const accept of [
      'text/html',
      'application/json;q=0, application/x-yaml;q=0',
      'application/json;q=0, application/x-yaml;q=0, application/x-ndjson;q=0',
    ]) {
      const reply = await request(s.port, { body: ping, headers: { 'content-type': 'application/json', accept } });
      assert.equal(reply.status, 406, accept);
      assert.deepEqual(reply.json, { return: NOT_ACCEPTABLE_MESSAGE });
    }
    assert.match(NOT_ACCEPTABLE_MESSAGE, /application\/json, application\/x-yaml or application\/x-ndjson/);
    assert.equal(s.master.requests.length, before);
  });

  test('refusals and GET are answered in YAML too', async () => {
    const refused = await request(s.port, { body: [{ client: 'local', tgt: '*', fun: 'test.ping' }], headers: { ...YAML, ...WANT_YAML } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['content-type'], 'application/x-yaml');
    assert.equal(refused.text, 'return: No authentication credentials given\n');
    const get = await request(s.port, { method: 'GET', headers: WANT_YAML });
    assert.equal(get.headers['content-type'], 'application/x-yaml');
    assertSameData(get.text, (await request(s.port, { method: 'GET' })).text);
  });

  test('a large YAML answer streams (no Content-Length, chunked) and is the same data as the JSON one', async () => {
    const big = {
      client: 'runner',
      fun: 'test.arg',
      arg: ['yes', '010', 12345678901234567890n.toString()],
      kwarg: { blob: 'x: y\n'.repeat(60_000) },
      ...SALTDEV,
    };
    const body = JSON.stringify([big, big]);
    const json = await request(s.port, { body, headers: { 'content-type': 'application/json' } });
    const yaml = await request(s.port, { body, headers: { 'content-type': 'application/json', ...WANT_YAML } });
    assert.equal(yaml.status, 200);
    assert.equal(yaml.headers['content-length'], undefined);
    assert.equal(yaml.headers['transfer-encoding'], 'chunked');
    assertSameData(yaml.text, json.text);
  });
});

describe('bad bodies in every format: a 4xx saying what is wrong, nothing run', () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(() => s.close());

  const cases: Array<[string, Record<string, string>, string | Buffer, number, RegExp]> = [
    ['form: truncated', FORM, 'client=local&tgt=*&eauth=auto&username=saltdev&password=x&fu', 400, /^Missing 'fun'$/],
    ['form: a repeated key that takes one value', FORM, 'client=local&client=runner&fun=test.ping', 400, /'client' given 2 times/],
    [
      'form: repeated credentials',
      FORM,
      'client=local&tgt=*&fun=test.ping&username=a&username=b&eauth=auto',
      400,
      /'username' given 2 times/,
    ],
    ['form: arg[]', FORM, 'client=local&tgt=*&fun=test.arg&arg[]=1&arg[]=2&eauth=auto', 400, /'arg\[\]'.*JSON or YAML/],
    ['form: wrong type (fun twice is a list)', FORM, 'client=local&tgt=*&fun=a&fun=b&eauth=auto', 400, /'fun' given 2 times/],
    ['form: invalid UTF-8', FORM, Buffer.from([0x63, 0x3d, 0xff]), 400, /not valid UTF-8/],
    ['form: percent-encoded invalid UTF-8', FORM, 'client=%ff&fun=x', 400, /not valid UTF-8 once decoded/],
    ['form: no fields', FORM, 'client=', 400, /no fields/],
    ['YAML: truncated', YAML, '- client: local\n  tgt: [minion1, ', 400, /^400: Invalid YAML: /],
    ['YAML: wrong types', YAML, '- 5\n', 400, /^Lowstate item 0 must be an object$/],
    ['YAML: a scalar', YAML, 'hello', 400, /^Lowstates must be a list$/],
    ['YAML: a repeated key', YAML, 'client: local\nclient: runner\nfun: test.ping\n', 400, /^400: Invalid YAML: duplicate key/],
    ['YAML: 100,000 nested sequences (flow)', YAML, `${'['.repeat(100_000)}${']'.repeat(100_000)}`, 400, /nested deeper than 512/],
    ['YAML: 100,000 nested sequences (block)', YAML, `${'- '.repeat(100_000)}x`, 400, /nested deeper than 512/],
    ['YAML: an alias bomb', YAML, billionLaughs(), 400, /too many aliases/],
    ['YAML: a Python tag', YAML, '- !!python/object/apply:os.system ["true"]\n', 400, /a tag Salt does not read/],
    ['YAML: invalid UTF-8', YAML, Buffer.from([0x2d, 0x20, 0xc3, 0x28]), 400, /not valid UTF-8/],
    ['YAML: two documents', YAML, '- {client: local}\n---\n- {client: local}\n', 400, /^400: Invalid YAML: /],
    ['text/plain: not JSON', { 'content-type': 'text/plain' }, '[{"client": "local"', 400, /read as JSON/],
    ['text/plain: invalid UTF-8', { 'content-type': 'text/plain' }, Buffer.from([0x5b, 0xff, 0x5d]), 400, /not valid UTF-8/],
    [
      'another type',
      { 'content-type': 'application/xml' },
      '<x/>',
      415,
      /^415: Content-Type must be one of application\/json, application\/x-www-form-urlencoded, application\/x-yaml/,
    ],
  ];
  for (const [name, headers, body, status, message] of cases) {
    test(name, async () => {
      const start = performance.now();
      const reply = await request(s.port, { body, headers });
      assert.equal(reply.status, status, reply.text);
      assert.match((reply.json as { return: string }).return, message);
      assert.ok(performance.now() - start < 2000, `${Math.round(performance.now() - start)} ms`);
      assert.equal(s.master.itemRequests.length, 0, 'nothing was sent to the master');
    });
  }

  test('the body limit holds for every format (413)', async () => {
    for (const headers of [FORM, YAML]) {
      const reply = await request(s.port, { body: Buffer.alloc((1 << 20) + 1, 0x61), headers });
      assert.equal(reply.status, 413);
    }
  });
});

/** Nine levels of nine aliases each: 9^9 strings if expanded. */
function billionLaughs(): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) {
    const name = String.fromCharCode(97 + i);
    const prev = `*${String.fromCharCode(96 + i)}`;
    lines.push(`${name}: &${name} [${Array(9).fill(prev).join(',')}]`);
  }
  return `${lines.join('\n')}\n`;
}

describe('X-Auth-Token', () => {
  let s: Setup;
  let token: string;
  before(async () => {
    s = await setup();
    // The README's way: the runner auth.mk_token, the credentials in kwarg.
    const made = await request(s.port, { body: [{ client: 'runner', fun: 'auth.mk_token', ...SALTDEV, kwarg: SALTDEV }] });
    token = (made.json as { return: Array<{ token: string }> }).return[0].token;
    assert.match(token, /^[0-9a-f]{32,}$/);
  });
  after(async () => {
    await s.close();
    for (const line of s.lines) assert.ok(!line.msg.includes(token), `the token in a log line: ${line.msg}`);
  });
  const ping = { client: 'local', tgt: 'minion1', fun: 'test.ping' };

  test('serves every item without credentials, in every body format', async () => {
    for (const [headers, body] of [
      [{ 'content-type': 'application/json' }, JSON.stringify([ping, { client: 'runner', fun: 'test.arg', arg: [1] }])],
      [FORM, 'client=local&tgt=minion1&fun=test.ping'],
      [YAML, '- {client: local, tgt: minion1, fun: test.ping}\n'],
    ] as const) {
      const reply = await request(s.port, { body, headers: { ...headers, 'x-auth-token': token } });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual((reply.json as { return: unknown[] }).return[0], { minion1: true });
      assert.ok(!reply.text.includes(token));
    }
    assert.ok(s.master.itemRequests.some((r) => (r.load as Record<string, unknown>).token === token));
  });

  test("an item's own credentials win; a bad token is a 401 that does not echo it", async () => {
    const own = await request(s.port, {
      body: [{ ...ping, ...SALTDEV }],
      headers: { 'content-type': 'application/json', 'x-auth-token': 'deadbeef' },
    });
    assert.equal(own.status, 200, own.text);
    const bad = await request(s.port, { body: [ping], headers: { 'content-type': 'application/json', 'x-auth-token': 'deadbeef' } });
    assert.deepEqual([bad.status, bad.json], [401, { return: 'Authentication error occurred.' }]);
    const notHex = await request(s.port, { body: [ping], headers: { 'content-type': 'application/json', 'x-auth-token': 'sekrit-token' } });
    assert.deepEqual([notHex.status, notHex.json], [401, { return: 'Invalid token' }]);
    assert.ok(!notHex.text.includes('sekrit'));
    // A refused token is no failed login (only passwords count: lib/http/throttle.ts).
    assert.equal(s.handler.stats().failedLoginAddresses, 0, 'refused tokens are not counted by the throttle');
  });
});
