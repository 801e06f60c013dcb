/**
 * The local, local_async and local_subset clients against the master double
 * over real ZeroMQ and the real event bus socket: what is published, how
 * returns are waited for (timeout, then saltutil.find_job for the silent
 * minions, gather_job_timeout), and what comes back.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { userInfo } from 'node:os';
import type { SaltMasterDouble, MasterDoubleOptions } from '../support/master.js';
import { startMasterAndNetapi, type MasterAndNetapi } from '../support/netapi.js';
import { NetapiClient } from '../../lib/clients/netapi.js';
import { loadMasterConfig } from '../../lib/salt/config.js';
import { AuthenticationError } from '../../lib/errors.js';
import type { EventBus } from '../../lib/salt/event-bus.js';

const PASSWORD = 'local-test-secret';
const USERS = {
  saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] },
  limited: { password: PASSWORD, permissions: ['test.*'] },
};
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };

function setup(options: MasterDoubleOptions = {}): Promise<MasterAndNetapi> {
  return startMasterAndNetapi({ users: USERS, ...options });
}

async function teardown(env: { master: SaltMasterDouble; netapi: NetapiClient } | undefined): Promise<void> {
  env?.netapi.close();
  await env?.master.close();
}

function busOf(netapi: NetapiClient): EventBus {
  return (netapi as unknown as { bus: EventBus }).bus;
}

function elapsedSince(start: number): number {
  return performance.now() - start;
}

function publishes(master: SaltMasterDouble, fun?: string) {
  return master.requests.filter((r) => r.cmd === 'publish' && (fun === undefined || r.load.fun === fun));
}

describe('local: one answering minion, one dead (timeout 0.2 s, gather_job_timeout 0.3 s)', () => {
  let env: { master: SaltMasterDouble; netapi: NetapiClient };
  before(async () => {
    env = await setup({
      minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }],
      config: { timeout: 0.2, gather_job_timeout: 0.3 },
    });
  });
  after(() => teardown(env));

  test('the answering minion maps to its return, the silent one to false after timeout + gather_job_timeout', async () => {
    env.master.clearLog();
    const start = performance.now();
    const ret = await env.netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', ...CRED });
    const elapsed = elapsedSince(start);
    assert.deepEqual(ret, { minion1: true, ghost1: false });
    // Salt's cost for a dead minion: timeout, then one find_job round of gather_job_timeout.
    assert.ok(elapsed >= 500 - 20, `answered after ${elapsed} ms, before timeout + gather_job_timeout`);
    assert.ok(elapsed < 500 + 1500, `answered after ${elapsed} ms`);

    // find_job went to the silent minion only, as a list target, with the job's jid and credentials.
    const [job] = publishes(env.master, 'test.ping');
    const jid = (job.reply as { load: { jid: string } }).load.jid;
    const findJobs = publishes(env.master, 'saltutil.find_job');
    assert.equal(findJobs.length, 1);
    assert.deepEqual(findJobs[0].load.tgt, ['ghost1']);
    assert.equal(findJobs[0].load.tgt_type, 'list');
    assert.deepEqual(findJobs[0].load.arg, [jid]);
    assert.deepEqual(findJobs[0].load.kwargs, CRED);
    // Every subscription (the job's and the find_job's) and timer released.
    assert.equal(busOf(env.netapi).subscriptionCount, 0);
  });

  test('full_return gives ret, retcode and jid per answering minion; silent ones stay false', async () => {
    env.master.clearLog();
    const ret = (await env.netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', full_return: true, ...CRED })) as Record<
      string,
      unknown
    >;
    const jid = (publishes(env.master, 'test.ping')[0].reply as { load: { jid: string } }).load.jid;
    assert.deepEqual(ret, { minion1: { ret: true, retcode: 0, jid }, ghost1: false });
  });

  test('only answering minions: no find_job, the result as soon as they returned', async () => {
    env.master.clearLog();
    const ret = await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.echo', arg: ['hi'], ...CRED });
    assert.deepEqual(ret, { minion1: 'hi' });
    assert.equal(publishes(env.master, 'saltutil.find_job').length, 0);
  });

  test('a target that matches nothing: {} at once, nothing waited for', async () => {
    env.master.clearLog();
    const start = performance.now();
    const ret = await env.netapi.run({ client: 'local', tgt: 'nosuch*', fun: 'test.ping', ...CRED });
    assert.deepEqual(ret, {});
    assert.ok(elapsedSince(start) < 200, 'did not wait for the timeout');
    assert.equal(publishes(env.master).length, 1);
  });

  test('the publish load has the keys LocalClient sends: credentials and extra keys in kwargs, not `client`', async () => {
    env.master.clearLog();
    await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', delimiter: '|', metadata: { a: 1 }, ...CRED });
    const [req] = publishes(env.master, 'test.ping');
    assert.deepEqual(Object.keys(req.load).sort(), ['arg', 'cmd', 'fun', 'jid', 'kwargs', 'ret', 'tgt', 'tgt_type', 'user'].sort());
    assert.deepEqual(req.load.kwargs, { delimiter: '|', metadata: { a: 1 }, ...CRED });
    assert.equal(req.load.tgt_type, 'glob');
    assert.equal(req.load.ret, '');
    // Not LocalClient's '' (the master's choice): a jid of ours in gen_jid's form, listened to
    // before the publish (lib/clients/jid.ts), which the master takes as the job's.
    assert.match(String(req.load.jid), /^\d{20}$/);
    assert.equal((req.reply as { load: { jid: string } }).load.jid, req.load.jid);
    assert.deepEqual(req.load.arg, []);
    // LocalClient's salt_user: this process's user (the master replaces it with the eauth user).
    const user = userInfo().username;
    assert.equal(req.load.user, user === 'root' && process.env.SUDO_USER ? `sudo_${process.env.SUDO_USER}` : user);
  });

  test('arg through condition_input: kwarg appended with __kwarg__, jid-shaped and oversized integers as strings', async () => {
    env.master.clearLog();
    const ret = (await env.netapi.run({
      client: 'local',
      tgt: 'minion1',
      fun: 'test.arg',
      arg: ['héllo', 18446744073709551615n, 1.5, 12345678901234567890n, 7],
      kwarg: { k: 'v' },
      ...CRED,
    })) as Record<string, { args: unknown[]; kwargs: Record<string, unknown> }>;
    const [req] = publishes(env.master, 'test.arg');
    assert.deepEqual(req.load.arg, ['héllo', '18446744073709551615', 1.5, '12345678901234567890', 7, { k: 'v', __kwarg__: true }]);
    assert.deepEqual(ret.minion1.args, ['héllo', '18446744073709551615', 1.5, '12345678901234567890', 7]);
    assert.equal(ret.minion1.kwargs.k, 'v');
    assert.equal(ret.minion1.kwargs.__pub_fun, 'test.arg');
  });

  test('a single arg value is one argument; tgt_type and its old name expr_form both target', async () => {
    env.master.clearLog();
    assert.deepEqual(await env.netapi.run({ client: 'local', tgt: ['minion1'], tgt_type: 'list', fun: 'test.echo', arg: 'one', ...CRED }), {
      minion1: 'one',
    });
    assert.deepEqual(await env.netapi.run({ client: 'local', tgt: 'minion1,ghost9', expr_form: 'list', fun: 'test.ping', ...CRED }), {
      minion1: true,
      ghost9:
        'Minion did not return. [No response]\nThe minions may not have all finished running and any remaining minions will return ' +
        'upon completion. To look up the return data for this job later, run the following command:\n\nsalt-run jobs.lookup_jid ' +
        (publishes(env.master, 'test.ping')[0].reply as { load: { jid: string } }).load.jid,
    });
    const reqs = publishes(env.master);
    assert.equal(reqs[0].load.tgt_type, 'list');
    assert.equal(reqs[1].load.tgt_type, 'list');
    assert.equal('expr_form' in (reqs[1].load.kwargs as object), false);
  });

  test('a failing function returns its error text, not false', async () => {
    const ret = (await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'no.such', ...CRED })) as Record<string, unknown>;
    assert.equal(ret.minion1, "'no.such' is not available.");
  });

  test("refusals from the master are 401 with the master's message, and carry no secret", async () => {
    await assert.rejects(
      env.netapi.run({ client: 'local', tgt: '*', fun: 'cmd.run', arg: ['id'], eauth: 'pam', username: 'limited', password: PASSWORD }),
      (err: unknown) => err instanceof AuthenticationError && err.status === 401 && err.message === 'Authorization error occurred.',
    );
    await assert.rejects(
      env.netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', eauth: 'pam', username: 'saltdev', password: 'wrong-secret' }),
      (err: unknown) =>
        err instanceof AuthenticationError && err.message === 'Authentication error occurred.' && !err.message.includes('wrong-secret'),
    );
  });

  test('a token from mk_token works in place of eauth, and travels alone in kwargs', async () => {
    const token = await env.master.eauth.mkToken({ eauth: 'pam', username: 'saltdev', password: PASSWORD });
    assert.ok(token && typeof token === 'object');
    env.master.clearLog();
    const ret = await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', token: token.token });
    assert.deepEqual(ret, { minion1: true });
    assert.deepEqual(publishes(env.master)[0].load.kwargs, { token: token.token });
    await assert.rejects(
      env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', token: 'abcdef0123' }),
      (err: unknown) => err instanceof AuthenticationError && err.status === 401,
    );
  });
});

describe('local: waiting like LocalClient.get_iter_returns', () => {
  let env: { master: SaltMasterDouble; netapi: NetapiClient };
  before(async () => {
    env = await setup({
      minions: [{ id: 'minion1' }, { id: 'slow1' }, { id: 'ghost1', silent: true }],
      config: { timeout: 0.15, gather_job_timeout: 0.2 },
    });
  });
  after(() => teardown(env));

  test('a minion that answers late but keeps saying it is running (find_job) is waited for and included', async () => {
    env.master.clearLog();
    env.master.minion('slow1')!.spec.delayMs = 650;
    try {
      const start = performance.now();
      const ret = await env.netapi.run({ client: 'local', tgt: 'slow1', fun: 'test.ping', ...CRED });
      assert.deepEqual(ret, { slow1: true });
      assert.ok(elapsedSince(start) >= 600, 'the return came after several find_job rounds');
      // More than one find_job round: each non-empty answer keeps the wait alive.
      assert.ok(publishes(env.master, 'saltutil.find_job').length >= 2);
    } finally {
      env.master.minion('slow1')!.spec.delayMs = 0;
    }
  });

  test('a minion that returns between find_job rounds ends the wait at its return', async () => {
    env.master.clearLog();
    env.master.minion('slow1')!.spec.delayMs = 250; // after the first round (0.15 s), before the next (0.55 s)
    try {
      const start = performance.now();
      const ret = await env.netapi.run({ client: 'local', tgt: 'slow1', fun: 'test.ping', gather_job_timeout: 0.4, ...CRED });
      const elapsed = elapsedSince(start);
      assert.deepEqual(ret, { slow1: true });
      assert.equal(publishes(env.master, 'saltutil.find_job').length, 1);
      assert.ok(elapsed < 500, `answered after ${elapsed} ms: waited past the return`);
    } finally {
      env.master.minion('slow1')!.spec.delayMs = 0;
    }
  });

  test('a running minion whose find_job answer comes too late is given up: false', async () => {
    env.master.clearLog();
    const slow = env.master.minion('slow1')!;
    slow.spec.delayMs = 900;
    slow.spec.findJobDelayMs = 400; // past gather_job_timeout
    try {
      const start = performance.now();
      const ret = await env.netapi.run({ client: 'local', tgt: 'slow1', fun: 'test.ping', ...CRED });
      assert.deepEqual(ret, { slow1: false });
      const elapsed = elapsedSince(start);
      assert.ok(elapsed >= 350 - 20 && elapsed < 850, `gave up after ${elapsed} ms`);
    } finally {
      slow.spec.delayMs = 0;
      slow.spec.findJobDelayMs = 0;
    }
  });

  test("the item's timeout and gather_job_timeout win over the config's", async () => {
    await env.master.writeConfig({ timeout: 30, gather_job_timeout: 30 });
    const netapi = new NetapiClient(loadMasterConfig(env.master.configPath));
    try {
      await env.master.waitForBusClients(2);
      const start = performance.now();
      const ret = await netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', timeout: 0.1, gather_job_timeout: '0.15', ...CRED });
      const elapsed = elapsedSince(start);
      assert.deepEqual(ret, { minion1: true, slow1: true, ghost1: false });
      assert.ok(elapsed >= 250 - 20 && elapsed < 5000, `answered after ${elapsed} ms`);
    } finally {
      netapi.close();
      await env.master.writeConfig({ timeout: 0.15, gather_job_timeout: 0.2 });
    }
  });

  test('returns that arrive before the publish reply is read are not lost (bus retention)', async () => {
    env.master.clearLog();
    env.master.replyDelayMs = 50; // the minions return while the reply is held back
    try {
      const ret = await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED });
      assert.deepEqual(ret, { minion1: true });
      assert.equal(publishes(env.master, 'saltutil.find_job').length, 0);
    } finally {
      env.master.replyDelayMs = 0;
    }
  });
});

describe('local_async', () => {
  let env: { master: SaltMasterDouble; netapi: NetapiClient };
  before(async () => {
    env = await setup({
      minions: [
        { id: 'minion1', delayMs: 300 },
        { id: 'ghost1', silent: true },
      ],
    });
  });
  after(() => teardown(env));

  test('answers {jid, minions} at once; the job runs on the master', async () => {
    env.master.clearLog();
    const start = performance.now();
    const ret = (await env.netapi.run({ client: 'local_async', tgt: '*', fun: 'test.ping', ...CRED })) as {
      jid: string;
      minions: string[];
    };
    assert.ok(elapsedSince(start) < 250, 'did not wait for the minions');
    assert.deepEqual(Object.keys(ret).sort(), ['jid', 'minions']);
    assert.match(ret.jid, /^\d{20}$/);
    assert.deepEqual([...ret.minions].sort(), ['ghost1', 'minion1']);
    assert.ok(env.master.jobs.has(ret.jid));
  });

  test('nothing matched: {}', async () => {
    assert.deepEqual(await env.netapi.run({ client: 'local_async', tgt: 'nosuch', fun: 'test.ping', ...CRED }), {});
  });

  test('a given jid is published as is', async () => {
    env.master.clearLog();
    const jid = '20260101000000000001';
    const ret = (await env.netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', jid, ...CRED })) as { jid: string };
    assert.equal(ret.jid, jid);
    assert.equal(publishes(env.master)[0].load.jid, jid);
  });
});

describe('local_subset', () => {
  let env: { master: SaltMasterDouble; netapi: NetapiClient };
  before(async () => {
    env = await setup({
      minions: [
        { id: 'minion1' },
        { id: 'minion2' },
        { id: 'nofun1', functions: ['test.ping'] },
        { id: 'nofun2', functions: ['test.ping'] },
      ],
      config: { timeout: 0.2, gather_job_timeout: 0.2 },
    });
  });
  after(() => teardown(env));

  test('subset: 1 runs on exactly one minion that has the function', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) {
      env.master.clearLog();
      const ret = (await env.netapi.run({ client: 'local_subset', tgt: '*', fun: 'test.echo', arg: ['x'], subset: 1, ...CRED })) as Record<
        string,
        unknown
      >;
      const ids = Object.keys(ret);
      assert.equal(ids.length, 1);
      assert.ok(['minion1', 'minion2'].includes(ids[0]), `ran on ${ids[0]}, which lacks test.echo`);
      assert.equal(ret[ids[0]], 'x');
      seen.add(ids[0]);
      // First sys.list_functions on the target, then the function on the chosen minion as a list target.
      const pubs = publishes(env.master);
      assert.equal(pubs[0].load.fun, 'sys.list_functions');
      assert.equal(pubs[0].load.tgt, '*');
      assert.deepEqual(pubs[1].load.tgt, ids);
      assert.equal(pubs[1].load.tgt_type, 'list');
    }
    assert.ok(seen.size >= 1);
  });

  test('a subset larger than the capable minions runs on all of them; default subset is 3', async () => {
    const ret = await env.netapi.run({ client: 'local_subset', tgt: '*', fun: 'test.echo', arg: ['y'], subset: 5, ...CRED });
    assert.deepEqual(ret, { minion1: 'y', minion2: 'y' });
    const all = (await env.netapi.run({ client: 'local_subset', tgt: '*', fun: 'test.ping', ...CRED })) as object;
    assert.equal(Object.keys(all).length, 3);
  });

  test('no minion has the function: {}', async () => {
    assert.deepEqual(await env.netapi.run({ client: 'local_subset', tgt: 'nofun*', fun: 'test.echo', subset: 1, ...CRED }), {});
  });

  test('full_return applies to the chosen minions', async () => {
    const ret = (await env.netapi.run({
      client: 'local_subset',
      tgt: 'minion1',
      fun: 'test.ping',
      subset: 1,
      full_return: true,
      ...CRED,
    })) as Record<string, { ret: unknown; retcode: number }>;
    assert.equal(ret.minion1.ret, true);
    assert.equal(ret.minion1.retcode, 0);
  });
});
