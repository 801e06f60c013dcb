/**
 * The HTTP contract, row by row (README "Requests" and "Status codes"): real HTTP requests
 * to a node:http server on port 0 running createHandler(), backed by the
 * master double over real ZeroMQ and the event bus socket.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startMaster, type SaltMasterDouble, type MasterDoubleOptions } from '../support/master.js';
import { createHandler, GET_MESSAGE, type HandlerOptions, type RestWsgiHandler } from '../../lib/http/handler.js';
import type { Logger } from '../../lib/log.js';
import { request, type Reply } from '../support/http.js';
import { UNSUPPORTED_TYPE_MESSAGE } from '../../lib/http/body-formats.js';

const PASSWORD = 'hunter2-not-in-logs';
const USERS = {
  saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] },
  limited: { password: PASSWORD, permissions: ['test.*'] },
};
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const JSON_HEADERS = { 'content-type': 'application/json' };

/** Status, JSON content type, byte-exact Content-Length, and the body. */
function assertReply(reply: Reply, status: number, body: unknown): void {
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.equal(Number(reply.headers['content-length']), Buffer.byteLength(reply.text));
  assert.deepEqual(reply.json, body);
}

interface LogLine {
  level: keyof Logger;
  msg: string;
}

function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: keyof Logger) => (msg: string) => void lines.push({ level, msg });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

interface Setup {
  master: SaltMasterDouble;
  handler: RestWsgiHandler;
  server: http.Server;
  port: number;
  lines: LogLine[];
  post(body: unknown, headers?: Record<string, string | number>): Promise<Reply>;
  close(): Promise<void>;
}

async function serve(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function setup(
  options: { master?: MasterDoubleOptions; handler?: Partial<HandlerOptions>; wrap?: (h: RestWsgiHandler) => http.RequestListener } = {},
): Promise<Setup> {
  const master = await startMaster({ users: USERS, minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }], ...options.master });
  const { logger, lines } = recordingLogger();
  const handler = createHandler({ config: master.configPath, logger, masterTimeoutMs: 500, ...options.handler });
  const { server, port } = await serve(options.wrap ? options.wrap(handler) : handler);
  return {
    master,
    handler,
    server,
    port,
    lines,
    post: (body, headers) => request(port, { body, headers: headers ?? JSON_HEADERS }),
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      handler.close();
      await master.close();
      // Whatever happened, no log line may carry a password.
      for (const line of lines) assert.ok(!line.msg.includes(PASSWORD), `password in a log line: ${line.msg}`);
    },
  };
}

describe('the contract rows against one running master', () => {
  let s: Setup;
  before(async () => {
    s = await setup();
  });
  after(() => s.close());

  test('GET any path: 200 with the message; HEAD the same without a body', async () => {
    for (const path of ['/', '/run', '/any/path?x=1']) {
      assertReply(await request(s.port, { method: 'GET', path }), 200, { return: GET_MESSAGE });
    }
    const get = await request(s.port, { method: 'GET' });
    const head = await request(s.port, { method: 'HEAD', path: '/x' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(head.headers['content-type'], 'application/json');
    assert.equal(head.headers['content-length'], get.headers['content-length']);
  });

  test('PUT, DELETE, PATCH, OPTIONS: 405 with Allow', async () => {
    for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const reply = await request(s.port, { method, body: '[]', headers: JSON_HEADERS });
      assertReply(reply, 405, { return: '405: Method Not Allowed' });
      assert.equal(reply.headers.allow, 'GET, HEAD, POST');
    }
    assert.equal(s.master.requests.length, 0);
  });

  test('POST of a Content-Type no body format reads: 415 naming them; parameters and case are accepted', async () => {
    const noType: Record<string, string> = {};
    for (const headers of [noType, { 'content-type': 'application/xml' }, { 'content-type': 'application/jsonx' }]) {
      assertReply(await request(s.port, { body: '[]', headers }), 415, { return: UNSUPPORTED_TYPE_MESSAGE });
    }
    for (const type of ['application/json; charset=utf-8', 'Application/JSON', 'APPLICATION/JSON ; charset="UTF-8"']) {
      assertReply(await request(s.port, { body: '[]', headers: { 'content-type': type } }), 200, { return: [] });
    }
  });

  test('a body that is not JSON: 400 with a one-line parser message that does not echo the body', async () => {
    for (const body of ['bogus', '[{"password": "hunter2-secret" oops}]', '[1,', '', '{"a": 1}}']) {
      const reply = await s.post(body);
      assert.equal(reply.status, 400, body);
      assert.equal(reply.headers['content-type'], 'application/json');
      const message = (reply.json as { return: string }).return;
      assert.match(message, /^400: \S.*$/);
      assert.ok(!message.includes('\n'));
      assert.ok(!message.includes('hunter2') && !message.includes('bogus'), message);
    }
    const invalidUtf8 = await s.post(Buffer.from([0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]));
    assertReply(invalidUtf8, 400, { return: '400: Request body is not valid UTF-8' });
    assert.equal(s.master.requests.length, 0);
  });

  test('a body that is a number, a string, null or a boolean: 400 Lowstates must be a list', async () => {
    for (const body of ['42', '"local"', 'null', 'true']) {
      assertReply(await s.post(body), 400, { return: 'Lowstates must be a list' });
    }
  });

  test('a single object is taken as a list of one', async () => {
    const reply = await s.post({ ...CRED, client: 'runner', fun: 'test.arg', arg: [1, 2], kwarg: { a: 1 } });
    assertReply(reply, 200, { return: [{ args: [1, 2], kwargs: { a: 1 } }] });
  });

  test('a list item that is not an object: 400 naming its index, nothing runs', async () => {
    assertReply(await s.post([1]), 400, { return: 'Lowstate item 0 must be an object' });
    s.master.clearLog();
    const reply = await s.post([{ ...CRED, client: 'runner', fun: 'test.arg' }, 'local']);
    assertReply(reply, 400, { return: 'Lowstate item 1 must be an object' });
    assert.equal(s.master.requests.length, 0);
  });

  test('[]: 200 with an empty list', async () => {
    const reply = await s.post([]);
    assertReply(reply, 200, { return: [] });
    assert.equal(reply.text, '{"return":[]}');
  });

  test('no eauth and no token: 401', async () => {
    assertReply(await s.post([{ client: 'local', tgt: '*', fun: 'test.ping', username: 'saltdev', password: PASSWORD }]), 401, {
      return: 'No authentication credentials given',
    });
  });

  test('client missing or unknown: 400', async () => {
    assertReply(await s.post([{ ...CRED, client: 'bogus', fun: 'test.ping' }]), 400, { return: "Invalid client specified: 'bogus'" });
    assertReply(await s.post([{ ...CRED, fun: 'test.ping' }]), 400, { return: "Invalid client specified: 'None'" });
  });

  test('raw_shell without netapi_allow_raw_shell: 401', async () => {
    assertReply(await s.post([{ ...CRED, client: 'local', tgt: '*', fun: 'cmd.run', arg: ['id'], raw_shell: true }]), 401, {
      return: 'Raw shell option not allowed.',
    });
  });

  test('a token that is not hexadecimal: 401 Invalid token', async () => {
    assertReply(await s.post([{ client: 'runner', fun: 'test.arg', token: 'not-a-token!' }]), 401, { return: 'Invalid token' });
  });

  test("fun missing: 400 Missing 'fun'", async () => {
    assertReply(await s.post([{ ...CRED, client: 'local', tgt: '*' }]), 400, { return: "Missing 'fun'" });
  });

  test('the ssh client: 400 saying this server does not support it', async () => {
    const reply = await s.post([{ ...CRED, client: 'ssh', tgt: '*', fun: 'test.ping' }]);
    assert.equal(reply.status, 400);
    assert.match((reply.json as { return: string }).return, /'ssh' client is not supported/);
  });

  test("authentication fails at the master (runner, wheel): 401 with the master's message", async () => {
    const bad = { eauth: 'pam', username: 'nobody', password: 'wrong' };
    for (const client of ['runner', 'wheel']) {
      assertReply(await s.post([{ ...bad, client, fun: client === 'runner' ? 'test.arg' : 'key.list_all' }]), 401, {
        return: 'Authentication failure of type "eauth" occurred for user nobody.',
      });
    }
  });

  test("a user not permitted (local): 401 with the master's message", async () => {
    const limited = { eauth: 'pam', username: 'limited', password: PASSWORD };
    assertReply(await s.post([{ ...limited, client: 'local', tgt: '*', fun: 'cmd.run', arg: ['id'] }]), 401, {
      return: 'Authorization error occurred.',
    });
  });

  test('the runner result did not come in time: 504', async () => {
    const reply = await s.post([{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600, timeout: 0.2 }]);
    assert.equal(reply.status, 504);
    assert.match((reply.json as { return: string }).return, /^Job \d{20} did not finish within 0.2 s/);
  });

  test('every item is checked before any runs', async () => {
    s.master.clearLog();
    const reply = await s.post([
      { ...CRED, client: 'runner', fun: 'test.arg', arg: ['first'] },
      { ...CRED, client: 'bogus', fun: 'test.ping' },
    ]);
    assertReply(reply, 400, { return: "Invalid client specified: 'bogus'" });
    assert.deepEqual(s.master.requests, []);
    assert.deepEqual(s.master.executed, []);
  });

  test('several items run in order and come back in that order', async () => {
    s.master.clearLog();
    const reply = await s.post([
      { ...CRED, client: 'runner', fun: 'test.arg', arg: ['one'] },
      { ...CRED, client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['two'] },
      { ...CRED, client: 'runner', fun: 'test.arg', a: 3 },
    ]);
    assertReply(reply, 200, { return: [{ args: ['one'], kwargs: {} }, { minion1: 'two' }, { args: [], kwargs: { a: 3 } }] });
    assert.deepEqual(
      s.master.requests.map((r) => r.cmd),
      ['runner', 'publish', 'runner'],
    );
  });

  test('a failure while running item N aborts the request (items before it ran)', async () => {
    s.master.clearLog();
    const reply = await s.post([
      { ...CRED, client: 'runner', fun: 'test.arg', arg: ['ran'] },
      { eauth: 'pam', username: 'nobody', password: 'wrong', client: 'runner', fun: 'test.arg' },
      { ...CRED, client: 'runner', fun: 'test.arg', arg: ['never'] },
    ]);
    assertReply(reply, 401, { return: 'Authentication failure of type "eauth" occurred for user nobody.' });
    assert.deepEqual(
      s.master.executed.map((e) => e.fun),
      ['test.arg'],
    );
    assert.equal(s.master.requests.length, 2);
  });

  test('clients: local (a silent minion maps to false), local_async, runner, wheel', async () => {
    assertReply(await s.post([{ ...CRED, client: 'local', tgt: '*', fun: 'test.ping' }]), 200, {
      return: [{ minion1: true, ghost1: false }],
    });
    assertReply(await s.post([{ ...CRED, client: 'local', tgt: 'nosuch', fun: 'test.ping' }]), 200, { return: [{}] });

    const async = await s.post([{ ...CRED, client: 'local_async', tgt: 'minion1', fun: 'test.ping' }]);
    assert.equal(async.status, 200);
    const [job] = (async.json as { return: [{ jid: string; minions: string[] }] }).return;
    assert.match(job.jid, /^\d{20}$/);
    assert.deepEqual(job, { jid: job.jid, minions: ['minion1'] });

    const wheel = await s.post([{ ...CRED, client: 'wheel', fun: 'key.list_all' }]);
    assert.equal(wheel.status, 200);
    const [result] = (wheel.json as { return: [{ tag: string; data: Record<string, unknown> }] }).return;
    assert.match(result.tag, /^salt\/wheel\/\d{20}$/);
    assert.equal(result.data.fun, 'wheel.key.list_all');
    assert.equal(result.data.success, true);
    assert.deepEqual((result.data.return as { minions: string[] }).minions, ['ghost1', 'minion1']);
    assert.match(String(result.data._stamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
  });

  test('Content-Length counts bytes, and integers past 2^53 keep every digit both ways', async () => {
    const text = `[{"eauth": "pam", "username": "saltdev", "password": "${PASSWORD}", "client": "runner", "fun": "test.arg", "arg": ["héllo ✓ 😀", 18446744073709551615, 1.5]}]`;
    const reply = await s.post(text);
    assertReply(reply, 200, { return: [{ args: ['héllo ✓ 😀', 18446744073709551615, 1.5], kwargs: {} }] });
    assert.ok(reply.text.includes('18446744073709551615,1.5'), reply.text);
    assert.ok(Number(reply.headers['content-length']) > reply.text.length);

    // Through `local`, a 20-digit integer reaches the minion as a string (condition_input).
    const local = await s.post(
      `[{"eauth": "pam", "username": "saltdev", "password": "${PASSWORD}", "client": "local", "tgt": "minion1", "fun": "test.arg", "arg": ["héllo", 18446744073709551615, 1.5]}]`,
    );
    assert.equal(local.status, 200);
    const ret = (local.json as { return: [{ minion1: { args: unknown[]; kwargs: Record<string, unknown> } }] }).return[0].minion1;
    assert.deepEqual(ret.args, ['héllo', '18446744073709551615', 1.5]);
    assert.equal(ret.kwargs.__pub_fun, 'test.arg');
  });

  test('a client that hangs up mid-job stops the wait, logs no error, and the server goes on', async () => {
    s.lines.length = 0;
    await new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: s.port, method: 'POST', headers: JSON_HEADERS, agent: false });
      req.on('error', () => resolve());
      req.end(JSON.stringify([{ ...CRED, client: 'runner', fun: 'test.sleep', s_time: 600 }]));
      s.master.nextRequest('runner').then(() => {
        req.destroy();
        resolve();
      }, resolve);
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      s.lines.filter((l) => l.level === 'error'),
      [],
    );
    assertReply(await s.post([]), 200, { return: [] });
  });
});

describe('rows that need their own master or options', () => {
  test('a client not in netapi_enable_clients: 400 with Salt message', async (t) => {
    const s = await setup({ master: { config: { netapi_enable_clients: ['local'] } } });
    t.after(() => s.close());
    assertReply(await s.post([{ ...CRED, client: 'runner', fun: 'test.arg' }]), 400, {
      return: "Client disabled: 'runner'. Add to 'netapi_enable_clients' master config option to enable.",
    });
    assert.equal(s.master.requests.length, 0);
  });

  test('body over the limit: 413, refused from Content-Length before reading', async (t) => {
    const s = await setup({ handler: { maxBodyBytes: 1024 } });
    t.after(() => s.close());
    // Headers only: the server must answer without waiting for the declared body.
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: s.port, method: 'POST', headers: { ...JSON_HEADERS, 'content-length': 1025 }, agent: false },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => {
            req.destroy();
            resolve({ status: res.statusCode!, headers: res.headers, text, json: JSON.parse(text) });
          });
        },
      );
      req.on('error', reject);
      req.flushHeaders();
    });
    assertReply(reply, 413, { return: '413: Request body too large' });
    assert.equal(reply.headers.connection, 'close');
    // Exactly at the limit is fine.
    assertReply(await s.post('[' + ' '.repeat(1022) + ']'), 200, { return: [] });
    assert.equal(s.master.requests.length, 0);
  });

  test('body over the limit: 413 as soon as a streamed body passes it, not buffered to the end', async (t) => {
    const s = await setup({ handler: { maxBodyBytes: 1024 } });
    t.after(() => s.close());
    const reply = await new Promise<Reply & { requestOpen: boolean }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: s.port, method: 'POST', headers: JSON_HEADERS, agent: false }, // chunked: no Content-Length
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => {
            const requestOpen = !req.writableEnded; // we never ended it: the answer came mid-upload
            req.destroy();
            resolve({ status: res.statusCode!, headers: res.headers, text, json: JSON.parse(text), requestOpen });
          });
        },
      );
      req.on('error', () => {});
      req.write('[' + ' '.repeat(600));
      setTimeout(() => req.write(' '.repeat(600)), 20);
      setTimeout(() => reject(new Error('no 413 while the upload was still open')), 3000).unref();
    });
    assertReply(reply, 413, { return: '413: Request body too large' });
    assert.equal(reply.requestOpen, true);
  });

  test('the default limit is 1 MiB', async (t) => {
    const s = await setup();
    t.after(() => s.close());
    const reply = await s.post(Buffer.alloc(1024 * 1024 + 1, 0x20));
    assertReply(reply, 413, { return: '413: Request body too large' });
    const atLimit = Buffer.alloc(1024 * 1024, 0x20);
    atLimit.write('[]', 0);
    assertReply(await s.post(atLimit), 200, { return: [] });
  });

  test('acceptSingleObject: false refuses an object body', async (t) => {
    const s = await setup({ handler: { acceptSingleObject: false } });
    t.after(() => s.close());
    assertReply(await s.post({ ...CRED, client: 'runner', fun: 'test.arg' }), 400, { return: 'Lowstates must be a list' });
  });

  test('master not running (no workers.ipc): 503; [] still answers 200', async (t) => {
    const master = await startMaster({ users: USERS });
    await master.stop();
    const handler = createHandler({ config: master.configPath, requestTimeoutMs: 300 });
    const { server, port } = await serve(handler);
    t.after(async () => {
      await new Promise((resolve) => server.close(resolve));
      handler.close();
      await master.close();
    });
    for (const client of ['local', 'runner', 'wheel']) {
      assertReply(await request(port, { body: [{ ...CRED, client, tgt: '*', fun: 'test.ping' }] }), 503, {
        return: 'Salt Master is not available.',
      });
    }
    assertReply(await request(port, { body: [] }), 200, { return: [] });
  });

  test('master running but not answering: 503 within the request timeout, no hang', { timeout: 5000 }, async (t) => {
    const s = await setup({ handler: { masterTimeoutMs: 200 } });
    t.after(() => s.close());
    s.master.answerRequests = false;
    for (const client of ['runner', 'wheel', 'local']) {
      assertReply(await s.post([{ ...CRED, client, tgt: '*', fun: client === 'wheel' ? 'key.list_all' : 'test.arg' }]), 503, {
        return: 'Salt Master is not available.',
      });
    }
  });

  test('any other failure: 500 An unexpected error occurred, the detail in one log line only', async (t) => {
    const s = await setup();
    t.after(() => s.close());
    // The master's request handler crashes, as a real master's does on a bug:
    // its transport replies with a bare string instead of the wheel data.
    (s.master as unknown as { runner: () => Promise<unknown> }).runner = async () => {
      throw new Error('KeyError: boom');
    };
    const reply = await s.post([{ ...CRED, client: 'runner', fun: 'test.arg' }]);
    assertReply(reply, 500, { return: 'An unexpected error occurred' });
    const errors = s.lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1);
    assert.match(errors[0].msg, /unexpected error on POST from 127\.0\.0\.1: .*did not start the runner job/);
    assert.ok(!errors[0].msg.includes(PASSWORD));
  });

  test('a body already parsed by middleware (req.body) is used as is', async (t) => {
    const s = await setup({
      wrap: (handler) => (req, res) => {
        // What express.json() does: read the stream, leave the value on req.body.
        let text = '';
        req.setEncoding('utf8').on('data', (d: string) => (text += d));
        req.on('end', () => {
          (req as http.IncomingMessage & { body?: unknown }).body = JSON.parse(text);
          handler(req, res);
        });
      },
    });
    t.after(() => s.close());
    assertReply(await s.post([{ ...CRED, client: 'runner', fun: 'test.arg', arg: ['parsed'] }]), 200, {
      return: [{ args: ['parsed'], kwargs: {} }],
    });
    assertReply(await request(s.port, { body: '[]', headers: { 'content-type': 'application/xml' } }), 415, {
      return: UNSUPPORTED_TYPE_MESSAGE,
    });
  });
});
