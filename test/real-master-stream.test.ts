/**
 * The streamed answer (`Accept: application/x-ndjson`, lib/http/ndjson.ts,
 * README "Streamed answers") on a real Salt master (env
 * SALT_REAL_MASTER_CONFIG, one set up by saltenv.sh: users `saltdev` and
 * `limited`, minion1, the silent ghost1; .ci/real-masters runs this on 3007.1
 * over zeromq, tcp and ws and on 3006.0): for every client, the lines folded
 * (test/support/ndjson.ts) equal this server's JSON answer of the same
 * request, run on the same master; an item refused once lines went out ends
 * the stream with the JSON answer's status and message; and a minion's line
 * goes out when it returns, the silent minion's only after Salt's wait, which
 * is as long as the JSON answer's (and Python rest_wsgi's, where it answers).
 * test/http/ndjson.test.ts holds the same contract on the master double.
 * Without a real master the cases skip, saying why (SALT_REAL_REQUIRED=1:
 * they fail instead).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHandler, type RestWsgiHandler } from '../lib/http/handler.js';
import { request, serve } from './support/http.js';
import { fold, streamPost, wallNow, type Streamed } from './support/ndjson.js';
import { comparable, LIMITED, postPython, REAL_SKIP, realMaster, SALTDEV, type RealMaster } from './support/real-master.js';

/** A real job can take seconds on a busy 2-core machine. */
const SLOW = { timeout: 120_000 };
type Item = Record<string, unknown>;

test('a real master is configured when SALT_REAL_REQUIRED=1', { skip: process.env.SALT_REAL_REQUIRED !== '1' }, () => {
  assert.equal(REAL_SKIP, undefined, REAL_SKIP);
});

/**
 * Assert the form of what differs between two runs of a request by nature
 * (a jid: 20 digits, or null on local_batch's end line; a job's tag: its
 * jid in it; Salt's `_stamp`: an ISO time), wherever it is in `value`: the
 * comparison of the two answers then leaves them aside (comparable()).
 */
function assertRunFields(value: unknown, where = 'answer'): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertRunFields(v, `${where}[${i}]`));
    return;
  }
  if (!value || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    const at = `${where}.${key}`;
    if (key === 'jid' && v !== null) assert.match(String(v), /^\d{20}$/, at);
    else if (key === 'jids') for (const jid of v as unknown[]) assert.match(String(jid), /^\d{20}$/, at);
    else if (key === 'tag') assert.match(String(v), /^salt\/(run|wheel|job)\/\d{20}(\/ret\/[\w.-]+)?$/, at);
    else if (key === '_stamp') assert.match(String(v), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+$/, at);
    else assertRunFields(v, at);
  }
}

describe('streamed answers, on a real master', { skip: REAL_SKIP }, () => {
  let real: RealMaster;
  let handler: RestWsgiHandler;
  let port: number;
  let closeServer: () => Promise<void>;

  before(async () => {
    real = realMaster();
    console.log(`real master ${real.config}, transport ${real.transport}`);
    // Off: the refusals here are on purpose (test/http/throttle.test.ts covers the throttle).
    handler = createHandler({ config: real.config, authFailureLimit: 0 });
    ({ port, close: closeServer } = await serve(handler));
  });
  after(async () => {
    await closeServer?.();
    handler?.close();
  });

  /**
   * The request as JSON, then streamed: the folded lines have the JSON
   * answer's status and body, the jids, tags and stamps of each run aside
   * (their form asserted in both). Resolves with the lines.
   */
  async function foldsToJson(items: Item[]): Promise<Streamed> {
    const json = await request(port, { body: items });
    const streamed = await streamPost(port, { body: items });
    const folded = fold(streamed, items);
    const both = `streamed:\n${streamed.text}\nJSON:\n${json.text}`;
    assert.equal(folded.status, json.status, both);
    assertRunFields(json.json, 'JSON');
    assertRunFields(
      streamed.lines.map((l) => l.value),
      'lines',
    );
    assert.deepEqual(comparable(folded.body), comparable(json.json), both);
    assert.equal(streamed.headers['content-type'], streamed.status === 200 ? 'application/x-ndjson' : 'application/json');
    return streamed;
  }
  /** Each item's end line (minion-streaming clients): returned and missing. */
  const ends = (s: Streamed) => s.lines.filter((l) => l.value.done === true).map((l) => [l.value.returned, l.value.missing]);

  const cases: Array<[string, Item[], (s: Streamed) => void]> = [
    [
      'local: test.ping, test.arg, full_return',
      [
        { client: 'local', tgt: 'minion1', fun: 'test.ping' },
        { client: 'local', tgt: 'minion1', fun: 'test.arg', arg: [1, 'a=b'], kwarg: { c: 3 } },
        { client: 'local', tgt: 'minion1', fun: 'test.ping', full_return: true },
      ],
      (s) =>
        assert.deepEqual(ends(s), [
          [1, 0],
          [1, 0],
          [1, 0],
        ]),
    ],
    [
      'local_async: the jid and every targeted minion',
      [{ client: 'local_async', tgt: '*', fun: 'test.ping' }],
      (s) =>
        assert.deepEqual(comparable(s.lines.map((l) => l.value)), [{ item: 0, return: { jid: 'JID', minions: ['ghost1', 'minion1'] } }]),
    ],
    // minion1 alone: with ghost1 the subset depends on who answered sys.list_functions in time.
    [
      'local_subset',
      [{ client: 'local_subset', tgt: 'minion1', fun: 'test.echo', arg: ['s'], subset: 1 }],
      (s) => assert.deepEqual(ends(s), [[1, 0]]),
    ],
    [
      'local_batch, and with raw',
      [
        { client: 'local_batch', tgt: 'minion1', fun: 'test.echo', arg: ['b'], batch: '100%' },
        { client: 'local_batch', tgt: 'minion1', fun: 'test.echo', arg: ['r'], batch: '1', raw: true },
      ],
      (s) => {
        assert.deepEqual(ends(s), [
          [1, 0],
          [1, 0],
        ]);
        for (const end of s.lines.filter((l) => l.value.done === true)) assert.equal(end.value.jid, null);
      },
    ],
    [
      'runner',
      [
        { client: 'runner', fun: 'test.arg', arg: [1, 'a=b'], kwarg: { c: 3 } },
        { client: 'runner', fun: 'test.metasyntactic', kwarg: { locality: 'uk' } },
      ],
      (s) => assert.equal(s.lines.length, 2),
    ],
    [
      'runner_async: the tag and jid of the job',
      [{ client: 'runner_async', fun: 'test.arg', arg: [1] }],
      (s) => assert.deepEqual(comparable(s.lines[0].value), { item: 0, return: { tag: 'salt/run/JID', jid: 'JID' } }),
    ],
    [
      'wheel: key.list_all, key.finger',
      [
        { client: 'wheel', fun: 'key.list_all' },
        { client: 'wheel', fun: 'key.finger', match: 'minion1' },
      ],
      (s) => {
        const data = s.lines.map((l) => (l.value.return as { data: { return: Record<string, unknown> } }).data.return);
        assert.deepEqual((data[0] as { minions: string[] }).minions, ['ghost1', 'minion1']);
        assert.deepEqual(Object.keys(data[1].minions as object), ['minion1']);
      },
    ],
    [
      'wheel_async: the tag and jid of the job',
      [{ client: 'wheel_async', fun: 'key.list_all' }],
      (s) => assert.deepEqual(comparable(s.lines[0].value), { item: 0, return: { tag: 'salt/wheel/JID', jid: 'JID' } }),
    ],
    [
      'refused before anything ran (limited, test.echo): its usual status and JSON body',
      [{ client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['no'], ...LIMITED }],
      (s) => assert.deepEqual([s.status, JSON.parse(s.text)], [401, { return: 'Authorization error occurred.' }]),
    ],
  ];
  for (const [name, items, check] of cases) {
    test(`folded, the lines are the JSON answer: ${name}`, SLOW, async () => {
      const streamed = await foldsToJson(items.map((item) => ({ ...SALTDEV, ...item })));
      check(streamed);
    });
  }

  // The JSON answer of each is the refusal alone (401 and the master's message): the stream's
  // last line says the same, after the good item's lines; the item after it never runs.
  const failing: Array<[string, Item, Item, string]> = [
    [
      'local, then limited running test.echo (it may only test.ping)',
      { client: 'local', tgt: 'minion1', fun: 'test.ping', ...SALTDEV },
      { client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['no'], ...LIMITED },
      'Authorization error occurred.',
    ],
    [
      'wheel, then limited running a runner',
      { client: 'wheel', fun: 'key.list_all', ...SALTDEV },
      { client: 'runner', fun: 'test.arg', arg: ['no'], ...LIMITED },
      'Authentication failure of type "eauth" occurred for user limited.',
    ],
  ];
  for (const [name, good, bad, message] of failing) {
    test(`an item refused once lines went out: its error line, the JSON answer's status and message: ${name}`, SLOW, async () => {
      const never = { client: 'runner', fun: 'test.arg', arg: ['never'], ...SALTDEV };
      const streamed = await foldsToJson([good, bad, never]);
      assert.equal(streamed.status, 200);
      assert.ok(
        streamed.lines.some((l) => l.value.item === 0 && l.value.error === undefined),
        'the good item answered first',
      );
      // The error line carries lib/errors.ts's code beside the JSON answer's status and message (README: Streamed answers).
      assert.deepEqual(streamed.lines.at(-1)!.value, {
        item: 1,
        error: true,
        status: 401,
        code: 'SRW_ERR_AUTHENTICATION',
        return: message,
      });
      assert.ok(!streamed.lines.some((l) => l.value.item === 2), 'nothing of the item after it');
    });
  }

  // Salt's wait, kept short but Salt's: ghost1 never returns, so LocalClient waits `timeout`
  // (4 s, past minion1's 3 s sleep), asks it saltutil.find_job and waits gather_job_timeout (2 s)
  // for an answer that never comes: ~6 s (with the master's own 5 s and 10 s, ~15 s).
  test(
    'test.sleep 3 on minion1 beside the silent ghost1: minion1 when it returns, ghost1 after Salt wait, then the end',
    SLOW,
    async (t) => {
      const wait = { timeout: 4, gather_job_timeout: 2 };
      const low = { client: 'local', tgt: 'minion1,ghost1', tgt_type: 'list', fun: 'test.sleep', arg: [3], ...wait, ...SALTDEV };
      const timed = async <T>(run: () => Promise<T>): Promise<[T, number]> => {
        const t0 = wallNow();
        const out = await run();
        return [out, wallNow() - t0];
      };
      // Side by side (each its own job): the JSON answer, Python rest_wsgi's where it answers, the lines.
      const t0 = wallNow();
      const [[json, jsonMs], python, streamed] = await Promise.all([
        timed(() => request(port, { body: [low] })),
        real.python ? timed(() => postPython(real.python!, [low])) : undefined,
        streamPost(port, { body: [low] }),
      ]);
      assert.equal(json.text, '{"return":[{"minion1":true,"ghost1":false}]}');
      if (python) assert.deepEqual(python[0].json, { return: [{ minion1: true, ghost1: false }] });
      const values = streamed.lines.map((l) => l.value);
      assert.deepEqual(values.slice(0, 2), [
        { item: 0, minion: 'minion1', return: true },
        { item: 0, minion: 'ghost1', return: false },
      ]);
      assert.equal(values.length, 3);
      assert.match(String(values[2].jid), /^\d{20}$/);
      assert.deepEqual({ ...values[2], jid: 'JID' }, { item: 0, done: true, jid: 'JID', returned: 1, missing: 1 });
      const [minion1, ghost1, end] = streamed.lines.map((l) => l.at - t0);
      const saltWait = (wait.timeout + wait.gather_job_timeout) * 1000;
      t.diagnostic(
        `minion1's line after ${ms(minion1)}, ghost1's after ${ms(ghost1)}, the end after ${ms(end)}; ` +
          `the JSON answer took ${ms(jsonMs)}${python ? `, Python rest_wsgi's ${ms(python[1])}` : ''}; timeout + gather_job_timeout ${ms(saltWait)}`,
      );
      // Generous bounds: a busy 2-core machine delays a job by a second or two, not the order.
      assert.ok(minion1 >= 2900 && minion1 < wait.timeout * 1000, `minion1's line after ${ms(minion1)}: when it returned`);
      assert.ok(ghost1 - minion1 >= 1500, `ghost1's line ${ms(ghost1 - minion1)} after minion1's`);
      assert.ok(ghost1 >= saltWait - 500, `ghost1's line after ${ms(ghost1)}: not before Salt's wait`);
      assert.ok(Math.abs(ghost1 - jsonMs) < 2000, `ghost1's line after ${ms(ghost1)}, the JSON answer after ${ms(jsonMs)}`);
      if (python)
        assert.ok(Math.abs(ghost1 - python[1]) < 2000, `ghost1's line after ${ms(ghost1)}, Python's answer after ${ms(python[1])}`);
      assert.ok(end - ghost1 < 500, 'the end line right after');
    },
  );
});

const ms = (x: number): string => `${(x / 1000).toFixed(2)} s`;
