/**
 * The dispatcher itself: NetapiClient.run's checks in Salt's order, each as
 * the typed error of lib/errors.ts; one channel and one bus for every call;
 * aborts, a bus that is down or drops, a master that does not answer.
 */
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { startMaster, type SaltMasterDouble } from '../support/master.js';
import { startMasterAndNetapi } from '../support/netapi.js';
import { NetapiClient, SSH_NOT_SUPPORTED } from '../../lib/clients/netapi.js';
import { loadMasterConfig, applyMasterDefaults, type MasterOptions } from '../../lib/salt/config.js';
import { AuthenticationError, BadRequestError, GatewayTimeoutError, HttpError, ServiceUnavailableError } from '../../lib/errors.js';
import type { EventBus } from '../../lib/salt/event-bus.js';

const PASSWORD = 'netapi-test-secret';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const TOKEN = 'a'.repeat(64);

function busOf(netapi: NetapiClient): EventBus {
  return (netapi as unknown as { bus: EventBus }).bus;
}

function recordingLogger() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

/** The error `fn` throws (synchronously or not). */
async function errorOf(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail('no error');
}

function assertHttpError(err: unknown, type: new (...args: never[]) => HttpError, status: number, message: string | RegExp): void {
  assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
  assert.equal((err as HttpError).status, status);
  if (typeof message === 'string') assert.equal((err as Error).message, message);
  else assert.match((err as Error).message, message);
}

/** A free TCP port on loopback nobody listens on. */
async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('checks, in the order of NetapiClient.run', () => {
  let master: SaltMasterDouble;
  let netapi: NetapiClient;
  before(async () => {
    ({ master, netapi } = await startMasterAndNetapi({
      users: USERS,
      config: { netapi_enable_clients: ['local', 'local_batch', 'local_subset', 'runner', 'wheel', 'ssh'] },
    }));
  });
  after(async () => {
    netapi.close();
    await master.close();
  });
  beforeEach(() => master.clearLog());

  const cases: Array<[string, unknown, new (...args: never[]) => HttpError, number, string | RegExp]> = [
    ['an item that is not an object names its index', 42, BadRequestError, 400, 'Lowstate item 3 must be an object'],
    ['a list item names its index', [], BadRequestError, 400, 'Lowstate item 3 must be an object'],
    ['unknown client', { client: 'bogus', fun: 'test.ping', ...CRED }, BadRequestError, 400, "Invalid client specified: 'bogus'"],
    ['missing client', { fun: 'test.ping', ...CRED }, BadRequestError, 400, "Invalid client specified: 'None'"],
    [
      'client not in netapi_enable_clients',
      { client: 'wheel_async', fun: 'key.list_all', ...CRED },
      BadRequestError,
      400,
      "Client disabled: 'wheel_async'. Add to 'netapi_enable_clients' master config option to enable.",
    ],
    [
      'no eauth and no token',
      { client: 'local', tgt: '*', fun: 'test.ping', username: 'x', password: 'y' },
      AuthenticationError,
      401,
      'No authentication credentials given',
    ],
    [
      'raw_shell without netapi_allow_raw_shell',
      { client: 'local', tgt: '*', fun: 'test.ping', raw_shell: true, ...CRED },
      AuthenticationError,
      401,
      'Raw shell option not allowed.',
    ],
    [
      'a token that is not hexadecimal',
      { client: 'local', tgt: '*', fun: 'test.ping', token: 'not-hex!' },
      AuthenticationError,
      401,
      'Invalid token',
    ],
    ['an empty token', { client: 'runner', fun: 'test.arg', token: '' }, AuthenticationError, 401, 'Invalid token'],
    ['a token that is not a string', { client: 'runner', fun: 'test.arg', token: 1234 }, AuthenticationError, 401, 'Invalid token'],
    ['ssh, enabled but not supported', { client: 'ssh', tgt: '*', fun: 'test.ping', ...CRED }, BadRequestError, 400, SSH_NOT_SUPPORTED],
    ['fun missing', { client: 'local', tgt: '*', ...CRED }, BadRequestError, 400, "Missing 'fun'"],
    ['fun not a string', { client: 'runner', fun: ['test.arg'], ...CRED }, BadRequestError, 400, "'fun' must be a string"],
    ['tgt missing', { client: 'local', fun: 'test.ping', ...CRED }, BadRequestError, 400, "Missing 'tgt'"],
    [
      'tgt of the wrong type',
      { client: 'local', tgt: 5, fun: 'test.ping', ...CRED },
      BadRequestError,
      400,
      "'tgt' must be a string or a list of strings",
    ],
    [
      'kwarg not an object',
      { client: 'local', tgt: '*', fun: 'test.ping', kwarg: ['a'], ...CRED },
      BadRequestError,
      400,
      "'kwarg' must be an object",
    ],
    [
      'runner kwarg not an object',
      { client: 'runner', fun: 'test.arg', kwarg: 'a=1', ...CRED },
      BadRequestError,
      400,
      "'kwarg' must be an object",
    ],
    [
      'timeout not a duration',
      { client: 'local', tgt: '*', fun: 'test.ping', timeout: 'soon', ...CRED },
      BadRequestError,
      400,
      "'timeout' must be a positive number of seconds",
    ],
    [
      'runner timeout not positive',
      { client: 'runner', fun: 'test.arg', timeout: 0, ...CRED },
      BadRequestError,
      400,
      "'timeout' must be a positive number of seconds",
    ],
    [
      'gather_job_timeout negative',
      { client: 'local', tgt: '*', fun: 'test.ping', gather_job_timeout: -1, ...CRED },
      BadRequestError,
      400,
      /^'gather_job_timeout'/,
    ],
    [
      'subset not a positive integer',
      { client: 'local_subset', tgt: '*', fun: 'test.ping', subset: 0, ...CRED },
      BadRequestError,
      400,
      "'subset' must be a positive integer",
    ],
    [
      'tgt_type not a string',
      { client: 'local', tgt: '*', tgt_type: ['glob'], fun: 'test.ping', ...CRED },
      BadRequestError,
      400,
      "'tgt_type' must be a string",
    ],
    ['ret not a string', { client: 'local', tgt: '*', ret: 1, fun: 'test.ping', ...CRED }, BadRequestError, 400, "'ret' must be a string"],
  ];
  for (const [name, low, type, status, message] of cases) {
    test(`${name}: ${status}, and nothing reaches the master`, async () => {
      assertHttpError(await errorOf(() => netapi.check(low, 3)), type, status, message);
      assertHttpError(
        await errorOf(() => netapi.run(low)),
        type,
        status,
        typeof message === 'string' ? message.replace('Lowstate item 3', 'A lowstate item') : message,
      );
      assert.equal(master.requests.length, 0);
    });
  }

  test("Salt's order: client known, then enabled, then credentials, then raw_shell, then token, then fun", async () => {
    const order: Array<[unknown, string]> = [
      [{ client: 'bogus', raw_shell: true, token: 'zz' }, "Invalid client specified: 'bogus'"],
      [
        { client: 'runner_async', raw_shell: true, token: 'zz' },
        "Client disabled: 'runner_async'. Add to 'netapi_enable_clients' master config option to enable.",
      ],
      [{ client: 'local', raw_shell: true }, 'No authentication credentials given'],
      [{ client: 'local', raw_shell: true, token: 'zz' }, 'Raw shell option not allowed.'],
      [{ client: 'local', token: 'zz' }, 'Invalid token'],
      [{ client: 'local', token: TOKEN }, "Missing 'fun'"],
      [{ client: 'local', token: TOKEN, fun: 'test.ping' }, "Missing 'tgt'"],
    ];
    for (const [low, message] of order) assert.equal(((await errorOf(() => netapi.check(low))) as Error).message, message);
  });

  test('an item that passes every check is not refused', () => {
    netapi.check({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED });
    netapi.check({ client: 'local', tgt: ['a', 'b'], tgt_type: 'list', fun: 'test.ping', arg: 'x', kwarg: {}, timeout: '2', token: TOKEN });
    netapi.check({ client: 'runner', fun: 'test.arg', timeout: 1.5, full_return: true, token: TOKEN.toUpperCase() });
    netapi.check({ client: 'wheel', fun: 'key.list_all', eauth: 'auto' });
  });

  test('raw_shell passes when netapi_allow_raw_shell is set', async () => {
    const opts = { ...loadMasterConfig(master.configPath), netapi_allow_raw_shell: true };
    const other: NetapiClient = new NetapiClient(opts);
    try {
      other.check({ client: 'local', tgt: '*', fun: 'test.ping', raw_shell: true, ...CRED });
    } finally {
      other.close();
    }
  });

  test('refusals never echo a password or a token', async () => {
    const secretLow = { client: 'local', tgt: '*', fun: 123, token: 'f00d', password: 'p4ss' };
    const err = (await errorOf(() => netapi.run(secretLow))) as Error;
    assert.ok(!err.message.includes('f00d') && !err.message.includes('p4ss'));
  });
});

describe('netapi_enable_clients', () => {
  test("Salt's default enables no client at all", async (t) => {
    const master = await startMaster({ users: USERS });
    t.after(() => master.close());
    const opts = loadMasterConfig(master.configPath);
    const { netapi_enable_clients: _omit, ...rest } = opts;
    const netapi = new NetapiClient(applyMasterDefaults(rest as Partial<MasterOptions>));
    t.after(() => netapi.close());
    assert.deepEqual(netapi.opts.netapi_enable_clients, []);
    for (const client of ['local', 'local_async', 'runner', 'wheel', 'ssh']) {
      assertHttpError(
        await errorOf(() => netapi.check({ client, tgt: '*', fun: 'test.ping', ...CRED })),
        BadRequestError,
        400,
        `Client disabled: '${client}'. Add to 'netapi_enable_clients' master config option to enable.`,
      );
    }
  });
});

describe('is the master running (workers.ipc, or publish_pull.ipc with transport: tcp)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'netapi-sock-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function clientFor(extra: Partial<MasterOptions>): Promise<NetapiClient> {
    return new NetapiClient(
      applyMasterDefaults({
        sock_dir: dir,
        interface: '127.0.0.1',
        ret_port: await unusedPort(),
        netapi_enable_clients: ['local'],
        ...extra,
      }),
      { masterTimeoutMs: 200 },
    );
  }

  test('no socket: 503 "Salt Master is not available." before any other check', async (t) => {
    const netapi = await clientFor({});
    t.after(() => netapi.close());
    for (const low of [{ client: 'bogus' }, { client: 'local', tgt: '*', fun: 'test.ping', ...CRED }]) {
      assertHttpError(await errorOf(() => netapi.check(low)), ServiceUnavailableError, 503, 'Salt Master is not available.');
    }
    // ...but an item that is not an object is refused for its shape first.
    assertHttpError(await errorOf(() => netapi.check('x', 0)), BadRequestError, 400, 'Lowstate item 0 must be an object');
  });

  test('zeromq looks for workers.ipc, tcp for publish_pull.ipc; a yes is reused for a second, a no is not', async (t) => {
    const low = { client: 'local', tgt: '*', fun: 'test.ping', ...CRED };
    await writeFile(path.join(dir, 'publish_pull.ipc'), '');
    const tcp: NetapiClient = await clientFor({ transport: 'tcp' });
    const zmq: NetapiClient = await clientFor({});
    t.after(() => {
      tcp.close();
      zmq.close();
    });
    tcp.check(low);
    assertHttpError(await errorOf(() => zmq.check(low)), ServiceUnavailableError, 503, 'Salt Master is not available.');

    // The master coming up is seen by the next request...
    await writeFile(path.join(dir, 'workers.ipc'), '');
    zmq.check(low);
    // ...its going away within a second of the last look is not (a burst of requests costs one stat).
    await rm(path.join(dir, 'workers.ipc'));
    zmq.check(low);
    await new Promise((r) => setTimeout(r, 1100));
    assertHttpError(await errorOf(() => zmq.check(low)), ServiceUnavailableError, 503, 'Salt Master is not available.');
    await rm(path.join(dir, 'publish_pull.ipc'));
  });

  test('workers.ipc there but nobody answers: 503 within the request timeout', async (t) => {
    await writeFile(path.join(dir, 'workers.ipc'), '');
    const netapi = await clientFor({});
    t.after(async () => {
      netapi.close();
      await rm(path.join(dir, 'workers.ipc'), { force: true });
    });
    const start = performance.now();
    assertHttpError(
      await errorOf(() => netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED })),
      ServiceUnavailableError,
      503,
      'Salt Master is not available.',
    );
    assert.ok(performance.now() - start < 2500);
  });
});

describe('one channel and one bus; aborts; the bus going away', () => {
  let master: SaltMasterDouble;
  before(async () => {
    master = await startMaster({
      users: USERS,
      minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }],
      config: { timeout: 5, gather_job_timeout: 5 },
    });
  });
  after(() => master.close());
  beforeEach(() => master.clearLog());

  test('concurrent calls of every kind share one event bus connection', async (t) => {
    const netapi = new NetapiClient(loadMasterConfig(master.configPath));
    t.after(() => netapi.close());
    await master.waitForBusClients(1);
    const before = master.itemRequests.length;
    const results = await Promise.all([
      netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }),
      netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['x'], ...CRED }),
      netapi.run({ client: 'runner', fun: 'test.arg', a: 1, ...CRED }),
      netapi.run({ client: 'wheel', fun: 'key.list_all', ...CRED }),
      netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED }),
    ]);
    assert.deepEqual(results[0], { minion1: true });
    assert.deepEqual(results[1], { minion1: 'x' });
    assert.deepEqual(results[2], { args: [], kwargs: { a: 1 } });
    assert.equal(master.itemRequests.length - before, 5);
    assert.equal(master.busClientCount, 1);
    assert.equal(busOf(netapi).subscriptionCount, 0);
  });

  test('prepare() checks at once, sends nothing, and runs later; it says which items wait for their job', async (t) => {
    const netapi = new NetapiClient(loadMasterConfig(master.configPath));
    t.after(() => netapi.close());
    await master.waitForBusClients(1);
    const before = master.itemRequests.length;
    assertHttpError(
      await errorOf(() => netapi.prepare({ client: 'local', tgt: '*', fun: 'test.ping' }, 1)),
      AuthenticationError,
      401,
      'No authentication credentials given',
    );
    assertHttpError(
      await errorOf(() => netapi.prepare({ client: 'nope', fun: 'x', ...CRED }, 0)),
      BadRequestError,
      400,
      "Invalid client specified: 'nope'",
    );
    const sync = netapi.prepare({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }, 0);
    const async = netapi.prepare({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED }, 1);
    const wheel = netapi.prepare({ client: 'wheel', fun: 'key.list_all', ...CRED }, 2);
    const runner = netapi.prepare({ client: 'runner', fun: 'test.arg', ...CRED }, 3);
    assert.deepEqual(
      [sync, async, wheel, runner].map((item) => item.waitsForJob),
      [true, false, false, true],
    );
    assert.equal(master.itemRequests.length, before);
    assert.deepEqual(await sync.run(new AbortController().signal), { minion1: true });
    const job = (await async.run()) as { jid: string; minions: string[] };
    assert.deepEqual(job.minions, ['minion1']);
    assert.equal(master.itemRequests.length - before, 2);
  });

  test('an abort releases the waiters at once, logs the jid in one line, and the job keeps running', async (t) => {
    const { lines, logger } = recordingLogger();
    const netapi = new NetapiClient(loadMasterConfig(master.configPath), { logger });
    t.after(() => netapi.close());
    await master.waitForBusClients(1);
    const abort = new AbortController();
    const run = netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED }, abort.signal);
    const pub = await master.nextRequest('publish');
    await new Promise((r) => setTimeout(r, 50));
    const start = performance.now();
    abort.abort();
    const err = await errorOf(() => run);
    assert.equal((err as Error).name, 'AbortError');
    assert.ok(performance.now() - start < 100);
    assert.equal(busOf(netapi).subscriptionCount, 0);
    const jid = (pub.reply as { load: { jid: string } }).load.jid;
    const mentions = lines.filter((l) => l.includes(jid));
    assert.equal(mentions.length, 1, lines.join('\n'));
    assert.ok(lines.every((l) => !l.includes(PASSWORD)));

    // A runner wait too.
    const abort2 = new AbortController();
    const runner = netapi.run({ client: 'runner', fun: 'test.sleep', s_time: 100, ...CRED }, abort2.signal);
    await master.nextRequest('runner');
    await new Promise((r) => setTimeout(r, 30));
    abort2.abort();
    assert.equal(((await errorOf(() => runner)) as Error).name, 'AbortError');
    assert.equal(busOf(netapi).subscriptionCount, 0);
    // An already aborted signal: nothing is published.
    master.clearLog();
    const err3 = await errorOf(() => netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED }, AbortSignal.abort()));
    assert.equal((err3 as Error).name, 'AbortError');
    assert.equal(master.requests.length, 0);
  });

  test('the bus dropping during a wait (master restart) ends the call promptly with 504; later calls work again', async (t) => {
    const netapi = new NetapiClient(loadMasterConfig(master.configPath));
    t.after(() => netapi.close());
    await master.waitForBusClients(1);
    const run = netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED });
    await master.nextRequest('publish');
    await new Promise((r) => setTimeout(r, 50));
    const failure = errorOf(() => run);
    const start = performance.now();
    await master.stop();
    const err = await failure;
    assertHttpError(
      err,
      GatewayTimeoutError,
      504,
      /^Lost the connection to the master's event bus while waiting for the returns of job \d{20}/,
    );
    assert.ok(performance.now() - start < 1000);
    assert.equal(busOf(netapi).subscriptionCount, 0);

    await master.start();
    await busOf(netapi).ready(3000);
    assert.deepEqual(await netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED }), { minion1: true });
  });

  test('a bus that is not connected: a sync call waits briefly then 503 without publishing; async calls still work', async (t) => {
    const opts = { ...loadMasterConfig(master.configPath), ipc_mode: 'tcp', tcp_master_pub_port: await unusedPort() };
    const netapi = new NetapiClient(opts, { busReadyTimeoutMs: 150 });
    t.after(() => netapi.close());
    for (const low of [
      { client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED },
      { client: 'local_batch', tgt: 'minion1', fun: 'test.ping', ...CRED },
      { client: 'runner', fun: 'test.arg', ...CRED },
    ]) {
      const start = performance.now();
      assertHttpError(await errorOf(() => netapi.run(low)), ServiceUnavailableError, 503, 'Salt Master is not available.');
      assert.ok(performance.now() - start >= 140);
    }
    assert.equal(master.requests.length, 0);
    const ret = (await netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED })) as { minions: string[] };
    assert.deepEqual(ret.minions, ['minion1']);
  });

  test('after close(), run answers 503 and waits in flight end', async () => {
    const netapi = new NetapiClient(loadMasterConfig(master.configPath));
    await master.waitForBusClients(1);
    const run = netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED });
    await master.nextRequest('publish');
    await new Promise((r) => setTimeout(r, 30));
    const failure = errorOf(() => run);
    netapi.close();
    assert.ok((await failure) instanceof HttpError);
    assertHttpError(
      await errorOf(() => netapi.run({ client: 'wheel', fun: 'key.list_all', ...CRED })),
      ServiceUnavailableError,
      503,
      'Salt Master is not available.',
    );
  });
});
