/**
 * The runner, runner_async, wheel and wheel_async clients against the
 * master double: the loads sent (RunnerClient._reformat_low's three keyword
 * styles), waiting for `salt/run/<jid>/ret`, and the master's replies.
 */
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { SaltMasterDouble } from '../support/master.js';
import { startMasterAndNetapi } from '../support/netapi.js';
import type { NetapiClient } from '../../lib/clients/netapi.js';
import { AuthenticationError, FunctionNotAvailableError, GatewayTimeoutError } from '../../lib/errors.js';
import { parseInput, yamlifyArg, conditionInput, isJid } from '../../lib/clients/args.js';
import type { EventBus } from '../../lib/salt/event-bus.js';
import { waitFor } from '../support/event-bus.js';

const PASSWORD = 'runner-test-secret';
const USERS = {
  saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] },
  limited: { password: PASSWORD, permissions: ['test.*'] },
};
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };

function busOf(netapi: NetapiClient): EventBus {
  return (netapi as unknown as { bus: EventBus }).bus;
}

describe('runner and wheel', () => {
  let master: SaltMasterDouble;
  let netapi: NetapiClient;
  before(async () => {
    ({ master, netapi } = await startMasterAndNetapi({ users: USERS, sleepScale: 0.05 }));
  });
  after(async () => {
    netapi.close();
    await master.close();
  });
  beforeEach(() => master.clearLog());

  function lastLoad(cmd: string): Record<string, unknown> {
    const reqs = master.requests.filter((r) => r.cmd === cmd);
    return reqs[reqs.length - 1].load;
  }

  test('runner: arg and kwarg go as the call\'s own {"arg", "kwarg"}', async () => {
    const ret = await netapi.run({ client: 'runner', fun: 'test.arg', arg: [1, 2], kwarg: { a: 1 }, ...CRED });
    assert.deepEqual(ret, { args: [1, 2], kwargs: { a: 1 } });
    assert.deepEqual(lastLoad('runner'), { cmd: 'runner', fun: 'test.arg', kwarg: { arg: [1, 2], kwarg: { a: 1 } }, ...CRED });
  });

  test('runner: old-style top-level keywords travel bound, as {"arg": [], "kwarg"} (RunnerClient._reformat_low)', async () => {
    const ret = await netapi.run({ client: 'runner', fun: 'test.arg', a: 1, ...CRED });
    assert.deepEqual(ret, { args: [], kwargs: { a: 1 } });
    assert.deepEqual(lastLoad('runner'), { cmd: 'runner', fun: 'test.arg', kwarg: { arg: [], kwarg: { a: 1 } }, ...CRED });
  });

  test('runner: CLI-style `k=v` strings in arg are keywords, values read as YAML', async () => {
    const ret = await netapi.run({ client: 'runner', fun: 'test.arg', arg: ['a=1', 'b=[1, 2]', 'c=yes', 'd=text'], ...CRED });
    assert.deepEqual(ret, { args: [], kwargs: { a: 1, b: [1, 2], c: true, d: 'text' } });
    assert.deepEqual(lastLoad('runner').kwarg, { arg: [], kwarg: { a: 1, b: [1, 2], c: true, d: 'text' } });
  });

  test("runner: the three styles merge in Salt's order (k=v, then kwarg, then top-level keys)", async () => {
    const ret = await netapi.run({ client: 'runner', fun: 'test.arg', arg: ['a=1', 'b=1', 'c=1'], kwarg: { b: 2, c: 2 }, c: 3, ...CRED });
    assert.deepEqual(ret, { args: [], kwargs: { a: 1, b: 2, c: 3 } });
  });

  test('runner: a named keyword the function takes is mapped by the master (jobs.lookup_jid jid=...)', async () => {
    const pub = (await netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED })) as { jid: string };
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await netapi.run({ client: 'runner', fun: 'jobs.lookup_jid', jid: pub.jid, ...CRED }), { minion1: true });
    assert.deepEqual(await netapi.run({ client: 'runner', fun: 'jobs.lookup_jid', arg: [`jid=${pub.jid}`], ...CRED }), { minion1: true });
    assert.deepEqual(await netapi.run({ client: 'runner', fun: 'jobs.lookup_jid', kwarg: { jid: pub.jid }, ...CRED }), { minion1: true });
  });

  test('runner: full_return gives the whole ret event {"data", "tag"}', async () => {
    const ret = (await netapi.run({ client: 'runner', fun: 'test.arg', a: 1, full_return: true, ...CRED })) as {
      data: Record<string, unknown>;
      tag: string;
    };
    assert.deepEqual(Object.keys(ret).sort(), ['data', 'tag']);
    assert.match(ret.tag, /^salt\/run\/\d{20}\/ret$/);
    assert.deepEqual(ret.data.return, { args: [], kwargs: { a: 1 } });
    assert.equal(ret.data.success, true);
    assert.equal(ret.data.jid, ret.tag.split('/')[2]);
    // timeout and full_return belong to NetapiClient.runner, not to the function.
    assert.deepEqual(lastLoad('runner').kwarg, { arg: [], kwarg: { a: 1 } });
  });

  test('runner: past the item timeout, 504 and nothing left subscribed', async () => {
    const start = performance.now();
    await assert.rejects(
      netapi.run({ client: 'runner', fun: 'test.sleep', s_time: 10, timeout: 0.1, ...CRED }), // 10 s × 0.05 = 500 ms
      (err: unknown) => err instanceof GatewayTimeoutError && err.status === 504 && /did not finish within 0.1 s/.test(err.message),
    );
    assert.ok(performance.now() - start < 450);
    assert.equal(busOf(netapi).subscriptionCount, 0);
  });

  test('runner_async: the master\'s {"tag", "jid"} at once; the job runs', async () => {
    const ret = (await netapi.run({ client: 'runner_async', fun: 'test.sleep', s_time: 2, ...CRED })) as { tag: string; jid: string };
    assert.deepEqual(Object.keys(ret).sort(), ['jid', 'tag']);
    assert.equal(ret.tag, `salt/run/${ret.jid}`);
    const done = await waitFor(busOf(netapi), `${ret.tag}/ret`, 2000);
    assert.equal((done.data as { return: unknown }).return, true);
  });

  test('runner_async: timeout and full_return are keywords like any other (no such parameters there)', async () => {
    await netapi.run({ client: 'runner_async', fun: 'test.arg', timeout: 5, full_return: true, ...CRED });
    assert.deepEqual(lastLoad('runner').kwarg, { arg: [], kwarg: { timeout: 5, full_return: true } });
  });

  test("runner: refusals are 401 with the master's message", async () => {
    await assert.rejects(
      netapi.run({ client: 'runner', fun: 'test.arg', eauth: 'pam', username: 'saltdev', password: 'wrong' }),
      (err: unknown) =>
        err instanceof AuthenticationError && err.message === 'Authentication failure of type "eauth" occurred for user saltdev.',
    );
    await assert.rejects(
      netapi.run({ client: 'runner', fun: 'test.arg', eauth: 'pam', username: 'limited', password: PASSWORD }),
      (err: unknown) => err instanceof AuthenticationError && /occurred for user limited\.$/.test(err.message),
    );
    assert.equal(busOf(netapi).subscriptionCount, 0);
  });

  test("runner and runner_async: a function the master's list lacks is refused at once, 400 with Salt's text; nothing runs", async () => {
    for (const client of ['runner', 'runner_async']) {
      await assert.rejects(
        netapi.run({ client, fun: 'no.such', ...CRED }),
        (err: unknown) => err instanceof FunctionNotAvailableError && err.status === 400 && err.message === "'no.such' is not available.",
      );
    }
    assert.ok(!master.requests.some((r) => r.cmd === 'runner' && r.load.fun === 'no.such'));
  });

  test('wheel: the master\'s {"tag", "data"}', async () => {
    const ret = (await netapi.run({ client: 'wheel', fun: 'key.list_all', ...CRED })) as { tag: string; data: Record<string, unknown> };
    assert.match(ret.tag, /^salt\/wheel\/\d{20}$/);
    assert.equal(ret.data.fun, 'wheel.key.list_all');
    assert.equal(ret.data.tag, ret.tag);
    assert.equal(ret.data.jid, ret.tag.split('/')[2]);
    assert.equal(ret.data.user, 'saltdev');
    assert.equal(typeof ret.data._stamp, 'string');
    assert.equal(ret.data.success, true);
    assert.deepEqual((ret.data.return as { local: string[] }).local, ['master.pem', 'master.pub']);
    assert.deepEqual(lastLoad('wheel'), { cmd: 'wheel', fun: 'key.list_all', ...CRED });
  });

  test("wheel: the item's other keys are the function's keywords", async () => {
    const ret = (await netapi.run({ client: 'wheel', fun: 'key.list', match: 'acc', ...CRED })) as { data: { return: unknown } };
    assert.deepEqual(ret.data.return, { minions: ['minion1'] });
    assert.equal(lastLoad('wheel').match, 'acc');
  });

  test('wheel: a failing function is still a reply, success false', async () => {
    const ret = (await netapi.run({ client: 'wheel', fun: 'key.nosuch', ...CRED })) as { data: { success: boolean; return: string } };
    assert.equal(ret.data.success, false);
    assert.match(ret.data.return, /^Exception occurred in wheel key.nosuch/);
  });

  test('wheel_async: {"tag", "jid"} of the job the master ran', async () => {
    const ret = (await netapi.run({ client: 'wheel_async', fun: 'key.list_all', ...CRED })) as { tag: string; jid: string };
    assert.deepEqual(Object.keys(ret).sort(), ['jid', 'tag']);
    assert.equal(ret.tag, `salt/wheel/${ret.jid}`);
    assert.ok(master.executed.some((e) => e.kind === 'wheel' && e.jid === ret.jid));
    assert.ok(master.events.some((e) => e.tag === `${ret.tag}/ret`));
  });

  test('wheel and wheel_async: refusals are 401', async () => {
    for (const client of ['wheel', 'wheel_async']) {
      await assert.rejects(
        netapi.run({ client, fun: 'key.list_all', eauth: 'pam', username: 'limited', password: PASSWORD }),
        (err: unknown) => err instanceof AuthenticationError && /occurred for user limited\.$/.test(err.message),
      );
    }
  });
});

describe('argument shaping (salt/utils/args.py)', () => {
  test('parse_input: k=v keywords, __kwarg__ dicts, positional values yamlified', () => {
    assert.deepEqual(parseInput(['a=1', 'plain', '2', { __kwarg__: true, g: 3 }, { h: 1 }, 'e==f', '3a=1', 'é=2']), {
      args: ['plain', 2, { h: 1 }, 'e==f', '3a=1'],
      kwargs: { a: 1, g: 3, é: 2 },
    });
  });

  test('yamlify_arg: scalars, bracketed lists and dicts; everything else stays text', () => {
    const cases: Array<[string, unknown]> = [
      ['1', 1],
      ['1.5', 1.5],
      ['yes', true],
      ['None', null],
      ['~', null],
      ['[1, 2]', [1, 2]],
      ['{a: 1}', { a: 1 }],
      ['a: 1', 'a: 1'], // a dict without braces
      ['- 1', '- 1'], // a list without brackets
      ['1_000', '1_000'],
      ['', ''],
      ['---', '---'],
      ['!', '!'],
      ['|', '|'],
      ['#x', '#x'],
      ['x #y', 'x #y'],
      ['2020-01-01', '2020-01-01'],
      ['a\tb', 'a\tb'],
      ['[unclosed', '[unclosed'],
    ];
    for (const [input, expected] of cases) assert.deepEqual(yamlifyArg(input), expected, JSON.stringify(input));
    assert.equal(yamlifyArg('99999999999999999999'), 99999999999999999999n);
  });

  test('condition_input: jid-shaped integers become strings, kwargs are appended once', () => {
    assert.deepEqual(conditionInput([20261122180058222039n, 1, 'x'], { k: 1 }), [
      '20261122180058222039',
      1,
      'x',
      { k: 1, __kwarg__: true },
    ]);
    assert.deepEqual(conditionInput([], {}), []);
    assert.equal(isJid('20261122180058222039'), true);
    assert.equal(isJid('20261122180058222039_2'), true);
    assert.equal(isJid('2026112218005822203x'), false);
    assert.equal(isJid('202611221800582220'), false);
  });
});
