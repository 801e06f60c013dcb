/**
 * What users do, on a real Salt master (env SALT_REAL_MASTER_CONFIG, one set
 * up by saltenv.sh: eauth `auto`, users `saltdev` and `limited`, minion1,
 * the silent ghost1; .ci/real-masters runs this on 3007.1 over zeromq, tcp
 * and ws and on 3006.0): every client, several items in one request, refused
 * users and disabled clients (and that nothing ran for them), the silent
 * minion, tokens made through the route, runner and wheel argument styles.
 * Where Python's rest_wsgi answers on the same master (env
 * SALT_REAL_REST_WSGI_URL; not on ws, see test/support/real-master.ts), each
 * answer's `return` is compared with its, jids and times aside. Its status is
 * not: it answers most refusals 500, where this server answers 400 or 401
 * (README, "Differences from Python's rest_wsgi"). Without a real master the
 * cases skip, saying why; test/real-master.test.ts holds the contract cases
 * that also run on the master double.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { createHandler, type RestWsgiHandler } from '../lib/http/handler.js';
import { openRequestChannel } from '../lib/salt/transports.js';
import { request, serve, sleep } from './support/http.js';
import {
  comparable,
  EventWatch,
  LIMITED,
  marker,
  postPython,
  REAL_SKIP,
  realMaster,
  SALTDEV,
  type RealMaster,
} from './support/real-master.js';

/** A real job can take seconds on a busy 2-core machine. */
const SLOW = { timeout: 120_000 };
/** The silent minion's wait, kept short: Salt's timeouts are not the point here. */
const QUICK = { timeout: 1, gather_job_timeout: 1 };
type Item = Record<string, unknown>;

describe('what users do, on a real master', { skip: REAL_SKIP }, () => {
  let real: RealMaster;
  let handler: RestWsgiHandler;
  let port: number;
  let closeServer: () => Promise<void>;
  let watch: EventWatch;

  before(async () => {
    real = realMaster();
    console.log(
      `real master ${real.config}, transport ${real.transport}: ${real.python ? `compared with Python rest_wsgi at ${real.python}` : real.pythonSkip}`,
    );
    // Off: the refusals here are many on purpose (test/http/throttle.test.ts covers the throttle).
    handler = createHandler({ config: real.config, authFailureLimit: 0 });
    ({ port, close: closeServer } = await serve(handler));
    watch = new EventWatch(real.opts);
    await watch.start();
  });
  after(async () => {
    await closeServer?.();
    handler?.close();
    watch?.close();
  });

  /**
   * POST the items to this server (the status expected) and, where it can be
   * compared with, to Python's rest_wsgi: the same `return`, jids and times
   * aside. Resolves with ours.
   */
  async function same(items: Item[], status = 200): Promise<unknown> {
    const ours = await request(port, { body: items });
    assert.equal(ours.status, status, ours.text);
    const ret = (ours.json as { return: unknown }).return;
    if (real.python) {
      const theirs = await postPython(real.python, items);
      assert.deepEqual(
        comparable((theirs.json as { return?: unknown }).return),
        comparable(ret),
        `Python rest_wsgi answered ${theirs.status} ${JSON.stringify(theirs.json)}`,
      );
    }
    return ret;
  }
  /** The one item's answer, 200 expected (and Python's the same). */
  const one = async (item: Item): Promise<unknown> => ((await same([item])) as unknown[])[0];

  test("the master's Salt version and transport", SLOW, async () => {
    const ret = (await one({ client: 'local', tgt: 'minion1', fun: 'test.version', ...SALTDEV })) as { minion1: string };
    console.log(`minion1 runs Salt ${ret.minion1}, the master's transport is ${real.transport}`);
    if (real.expectVersion) assert.equal(ret.minion1, real.expectVersion);
  });

  describe('every client', () => {
    test('local: several items in one request, answered in order', SLOW, async () => {
      const ret = (await same([
        { client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV },
        { client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['hello'], ...SALTDEV },
        { client: 'local', tgt: 'minion1', fun: 'test.ping', full_return: true, ...SALTDEV },
        { client: 'local', tgt: 'minion1', fun: 'test.arg', arg: [1, 'a=b'], kwarg: { c: 3 }, ...SALTDEV },
      ])) as Array<Record<string, unknown>>;
      assert.deepEqual(ret.slice(0, 2), [{ minion1: true }, { minion1: 'hello' }]);
      assert.deepEqual(comparable(ret[2]), { minion1: { ret: true, retcode: 0, jid: 'JID' } });
      const arg = (ret[3] as { minion1: { args: unknown[]; kwargs: Record<string, unknown> } }).minion1;
      assert.deepEqual([arg.args, arg.kwargs.a, arg.kwargs.c], [[1], 'b', 3]);
    });

    test('local to the silent minion ghost1: false after the timeouts, alone or beside minion1', SLOW, async () => {
      const ret = await same([
        { client: 'local', tgt: 'minion1,ghost1', tgt_type: 'list', fun: 'test.ping', ...QUICK, ...SALTDEV },
        { client: 'local', tgt: 'ghost1', fun: 'test.ping', ...QUICK, ...SALTDEV },
      ]);
      assert.deepEqual(ret, [{ minion1: true, ghost1: false }, { ghost1: false }]);
    });

    test('local_async: the jid and every targeted minion, the silent one too', SLOW, async () => {
      const ret = (await one({ client: 'local_async', tgt: '*', fun: 'test.ping', ...SALTDEV })) as { jid: string; minions: string[] };
      assert.deepEqual(comparable(ret), { jid: 'JID', minions: ['ghost1', 'minion1'] });
    });

    // Python's local_subset answers 500 ("argument of type 'bool' is not iterable") when a targeted
    // minion is silent (salt/client/__init__.py cmd_subset), and with ghost1 the subset depends on
    // which minions answered sys.list_functions in time: minion1 alone.
    test('local_subset: a subset of the minions that have the function', SLOW, async () => {
      assert.deepEqual(await one({ client: 'local_subset', tgt: 'minion1', fun: 'test.echo', arg: ['s'], subset: 1, ...SALTDEV }), {
        minion1: 's',
      });
    });

    // Python's rest_wsgi can't serialize local_batch's generator (500): ours only.
    test('local_batch: one list of returns per item', SLOW, async () => {
      const ours = await request(port, {
        body: [{ client: 'local_batch', tgt: 'minion1', fun: 'test.echo', arg: ['b'], batch: '100%', ...SALTDEV }],
      });
      assert.equal(ours.text, '{"return":[[{"minion1":"b"}]]}');
    });

    test('runner and runner_async', SLOW, async () => {
      const ret = await same([
        { client: 'runner', fun: 'test.metasyntactic', kwarg: { locality: 'uk' }, ...SALTDEV },
        { client: 'runner', fun: 'test.arg', arg: [1, 'a=b'], kwarg: { c: 3 }, ...SALTDEV },
        { client: 'runner_async', fun: 'test.arg', arg: [1], ...SALTDEV },
      ]);
      assert.deepEqual(comparable(ret), [
        ['wibble', 'wobble', 'wubble', 'flob'],
        { args: [1], kwargs: { a: 'b', c: 3 } },
        { tag: 'salt/run/JID', jid: 'JID' },
      ]);
    });

    test('wheel and wheel_async', SLOW, async () => {
      const ret = (await same([
        { client: 'wheel', fun: 'key.list', match: 'accepted', ...SALTDEV },
        { client: 'wheel_async', fun: 'key.list_all', ...SALTDEV },
      ])) as Array<{ data?: { return: unknown; success: boolean } }>;
      assert.deepEqual(ret[0].data?.return, { minions: ['ghost1', 'minion1'] });
      assert.deepEqual(comparable(ret[1]), { tag: 'salt/wheel/JID', jid: 'JID' });
    });
  });

  describe("refused: the master's message, and nothing runs", () => {
    /** An item for each client that would leave `mark` in the master's events if it ran. */
    const marked = (client: string, mark: string): Item =>
      client.startsWith('local')
        ? {
            client,
            tgt: 'minion1',
            fun: 'test.echo',
            arg: [mark],
            ...(client === 'local_subset' && { subset: 1 }),
            ...(client === 'local_batch' && { batch: '1' }),
          }
        : client.startsWith('runner')
          ? { client, fun: 'test.arg', arg: [mark] }
          : { client, fun: 'key.list', match: mark };

    /** Waits until a job run after the refused ones has been seen on the bus, then checks no mark was. */
    async function nothingRan(marks: string[]): Promise<void> {
      const last = marker('after');
      assert.deepEqual(await one({ client: 'local', tgt: 'minion1', fun: 'test.echo', arg: [last], ...SALTDEV }), { minion1: last });
      for (let i = 0; i < 50 && watch.ran(last).length === 0; i++) await sleep(100);
      assert.ok(watch.ran(last).length > 0, 'the job run after them was seen on the bus');
      await sleep(500);
      for (const mark of marks) assert.deepEqual(watch.ran(mark), [], `${mark} ran`);
    }

    const cases: Array<[string, (mark: string) => Item, number, string]> = [
      ['no credentials', (m) => marked('local', m), 401, 'No authentication credentials given'],
      [
        'limited runs test.echo (it may only test.ping)',
        (m) => ({ ...marked('local', m), ...LIMITED }),
        401,
        'Authorization error occurred.',
      ],
      ['limited, local_async', (m) => ({ ...marked('local_async', m), ...LIMITED }), 401, 'Authorization error occurred.'],
      [
        'limited, runner',
        (m) => ({ ...marked('runner', m), ...LIMITED }),
        401,
        'Authentication failure of type "eauth" occurred for user limited.',
      ],
      [
        'limited, wheel',
        (m) => ({ ...marked('wheel', m), ...LIMITED }),
        401,
        'Authentication failure of type "eauth" occurred for user limited.',
      ],
      [
        'a user external_auth does not list',
        (m) => ({ ...marked('local', m), ...SALTDEV, username: 'nobody' }),
        401,
        'Authorization error occurred.',
      ],
      [
        'a user external_auth does not list, runner',
        (m) => ({ ...marked('runner', m), ...SALTDEV, username: 'nobody' }),
        401,
        'Authentication failure of type "eauth" occurred for user nobody.',
      ],
      // eauth `auto` takes any password: a wrong one is tried through pam.
      [
        'a wrong password (eauth pam)',
        (m) => ({ ...marked('local', m), eauth: 'pam', username: 'saltdev', password: 'wrong' }),
        401,
        'Authentication error occurred.',
      ],
      [
        'an eauth backend Salt does not have',
        (m) => ({ ...marked('local', m), ...SALTDEV, eauth: 'nosuch' }),
        401,
        'Authentication error occurred.',
      ],
      ['a token the master never made', (m) => ({ ...marked('local', m), token: 'deadbeef' }), 401, 'Authentication error occurred.'],
      [
        'a token the master never made, runner',
        (m) => ({ ...marked('runner', m), token: 'deadbeef' }),
        401,
        'Authentication failure of type "token" occurred.',
      ],
      ['an unknown client', (m) => ({ ...marked('local', m), ...SALTDEV, client: 'nope' }), 400, "Invalid client specified: 'nope'"],
      [
        'a client netapi_enable_clients lacks (ssh)',
        (m) => ({ ...marked('local', m), ...SALTDEV, client: 'ssh' }),
        400,
        "Client disabled: 'ssh'. Add to 'netapi_enable_clients' master config option to enable.",
      ],
    ];
    const marks: string[] = [];
    for (const [name, make, status, message] of cases) {
      test(name, SLOW, async () => {
        const mark = marker('refused');
        marks.push(mark);
        assert.equal(await same([make(mark)], status), message);
      });
    }
    test('none of them ran anything', SLOW, () => nothingRan(marks));

    test('clients left out of netapi_enable_clients are refused, the rest served', SLOW, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'real-master-clients-'));
      const config = YAML.parse(readFileSync(real.config, 'utf8')) as Record<string, unknown>;
      config.netapi_enable_clients = ['local'];
      const path = join(dir, 'master');
      writeFileSync(path, YAML.stringify(config));
      const onlyLocal = createHandler({ config: path });
      const server = await serve(onlyLocal);
      try {
        const disabled = ['local_async', 'local_subset', 'local_batch', 'runner', 'runner_async', 'wheel', 'wheel_async'];
        const clientMarks = disabled.map((client) => marker(client));
        for (const [i, client] of disabled.entries()) {
          const reply = await request(server.port, { body: [{ ...marked(client, clientMarks[i]), ...SALTDEV }] });
          assert.equal(reply.status, 400, `${client}: ${reply.text}`);
          assert.deepEqual(reply.json, {
            return: `Client disabled: '${client}'. Add to 'netapi_enable_clients' master config option to enable.`,
          });
        }
        const served = await request(server.port, { body: [{ client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV }] });
        assert.equal(served.text, '{"return":[{"minion1":true}]}');
        await nothingRan(clientMarks);
      } finally {
        await server.close();
        onlyLocal.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('tokens made through the route: runner auth.mk_token, the credentials in kwarg (on ws: the mk_token request)', () => {
    // On ws, Salt's auth.mk_token runner itself fails ("Salt Master must be running.": it looks
    // for the zeromq master's sockets, salt/runners/auth.py): the token then comes from the
    // master's mk_token request, as Salt's LoadAuth makes it.
    async function mkToken(credentials: Item): Promise<unknown> {
      if (real.transport !== 'ws') return one({ client: 'runner', fun: 'auth.mk_token', kwarg: credentials, ...SALTDEV });
      console.log("TRANSPORT=ws: Salt's runner auth.mk_token can't see a ws master; the token comes from the mk_token request");
      const channel = openRequestChannel(real.opts, { timeoutMs: 30_000 });
      try {
        return await channel.send({ cmd: 'mk_token', ...credentials });
      } finally {
        channel.close();
      }
    }

    test("saltdev's token serves local, runner and wheel items", SLOW, async () => {
      const made = (await mkToken(SALTDEV)) as { token: string };
      assert.deepEqual(comparable(made), { start: 'TIME', expire: 'TIME', name: 'saltdev', eauth: 'auto', token: 'TOKEN' });
      const { token } = made;
      const ret = (await same([
        { client: 'local', tgt: 'minion1', fun: 'test.ping', token },
        { client: 'runner', fun: 'test.metasyntactic', locality: 'uk', token },
        { client: 'wheel', fun: 'key.list', match: 'accepted', token },
      ])) as Array<unknown>;
      assert.deepEqual(ret.slice(0, 2), [{ minion1: true }, ['wibble', 'wobble', 'wubble', 'flob']]);
      assert.deepEqual((ret[2] as { data: { return: unknown } }).data.return, { minions: ['ghost1', 'minion1'] });
    });

    test("limited's token: test.ping served, anything else refused", SLOW, async () => {
      const { token } = (await mkToken(LIMITED)) as { token: string };
      assert.deepEqual(await one({ client: 'local', tgt: 'minion1', fun: 'test.ping', token }), { minion1: true });
      const mark = marker('limited-token');
      assert.equal(
        await same([{ client: 'local', tgt: 'minion1', fun: 'test.echo', arg: [mark], token }], 401),
        'Authorization error occurred.',
      );
      assert.equal(
        await same([{ client: 'runner', fun: 'test.arg', arg: [mark], token }], 401),
        'Authentication failure of type "token" occurred for user limited.',
      );
      await sleep(500);
      assert.deepEqual(watch.ran(mark), []);
    });

    test('credentials the master refuses make no token (an empty string)', SLOW, async () => {
      assert.equal(await mkToken({ eauth: 'pam', username: 'saltdev', password: 'wrong' }), '');
    });
  });

  describe('runner and wheel argument styles, bound as Salt binds them', () => {
    const runnerStyles: Array<[string, Item]> = [
      ['positional and k=v strings with kwarg', { fun: 'test.arg', arg: [1, 'a=b'], kwarg: { c: 3 } }],
      ['kwarg and top-level keywords together', { fun: 'test.arg', kwarg: { a: 1 }, b: 2 }],
      ['a positional dict', { fun: 'test.arg', arg: [{ x: 1 }] }],
      ['an empty arg and kwarg', { fun: 'test.metasyntactic', arg: [], kwarg: {} }],
    ];
    for (const [style, fields] of runnerStyles) {
      test(`runner: ${style}`, SLOW, async () => {
        const ret = (await one({ client: 'runner', full_return: true, ...fields, ...SALTDEV })) as { data: { success: boolean } };
        assert.equal(ret.data.success, true, JSON.stringify(ret));
      });
    }
    // WheelClient takes only keywords named as the function's parameters: 3007.1 answers the
    // kwarg and positional styles with its own error, compared with Python's where it answers.
    const wheelStyles: Array<[string, Item, boolean]> = [
      ['top-level keyword', { match: 'accepted' }, true],
      ['kwarg', { kwarg: { match: 'accepted' } }, false],
      ['positional', { arg: ['accepted'] }, false],
    ];
    for (const [style, fields, lists] of wheelStyles) {
      test(`wheel: ${style}`, SLOW, async () => {
        const ret = (await one({ client: 'wheel', fun: 'key.list', ...fields, ...SALTDEV })) as { tag: string; data: { return: unknown } };
        assert.match(ret.tag, /^salt\/wheel\/\d{20}$/);
        if (lists) assert.deepEqual(ret.data.return, { minions: ['ghost1', 'minion1'] });
        else console.log(`wheel ${style}: ${JSON.stringify(ret.data.return)}`);
      });
    }
  });
});
