/**
 * The local_batch client (LocalClient.cmd_batch, salt/cli/batch.py) against
 * the master double: a presence ping picks the minions (the others are
 * sent nothing and are not in the answer), the job runs on `batch` of them
 * at a time, and the answer is one `{minion: ret}` per return, in arrival
 * order; a minion that answered the ping but not the job is `{}`. What
 * Salt's own NetapiClient answers on real masters: test/real-master-batch.test.ts.
 */
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { SaltMasterDouble, MinionCall } from '../support/master.js';
import { startMasterAndNetapi } from '../support/netapi.js';
import type { NetapiClient } from '../../lib/clients/netapi.js';
import { BadRequestError } from '../../lib/errors.js';
import { batchSize } from '../../lib/clients/batch.js';
import type { EventBus } from '../../lib/salt/event-bus.js';

const PASSWORD = 'batch-test-secret';
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const FOUR = ['m1', 'm2', 'm3', 'm4'];

/** A minion function that records how many minions run it at once, and when each started and ended. */
function concurrencyProbe(master: SaltMasterDouble, runMs: number) {
  const probe = { inFlight: 0, maxInFlight: 0, starts: new Map<string, number>(), ends: new Map<string, number>(), retcode: 0 };
  master.minionFunctions.set('test.probe', async (call: MinionCall) => {
    probe.inFlight++;
    probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight);
    probe.starts.set(call.minion.id, performance.now());
    await call.sleep(runMs);
    probe.inFlight--;
    probe.ends.set(call.minion.id, performance.now());
    call.setRetcode(probe.retcode);
    return call.minion.id;
  });
  return probe;
}

function busOf(netapi: NetapiClient): EventBus {
  return (netapi as unknown as { bus: EventBus }).bus;
}

function jobPublishes(master: SaltMasterDouble, fun: string) {
  return master.requests.filter((r) => r.cmd === 'publish' && r.load.fun === fun);
}

/** The minion ids of the return events of `fun`'s jobs, in the order the master fired them. */
function returnOrder(master: SaltMasterDouble, fun: string): string[] {
  const jids = new Set(jobPublishes(master, fun).map((r) => (r.reply as { load: { jid: string } }).load.jid));
  return master.events
    .filter((e) => /^salt\/job\/\d+\/ret\//.test(e.tag) && jids.has(e.tag.split('/')[2]))
    .map((e) => (e.data as { id: string }).id);
}

describe('local_batch against 4 minions and a dead one', () => {
  let master: SaltMasterDouble;
  let netapi: NetapiClient;
  before(async () => {
    ({ master, netapi } = await startMasterAndNetapi({
      users: USERS,
      minions: [...FOUR.map((id) => ({ id })), { id: 'ghost1', silent: true }],
      config: { timeout: 0.2, gather_job_timeout: 0.2 },
    }));
  });
  after(async () => {
    netapi.close();
    await master.close();
  });
  beforeEach(() => master.clearLog());

  test('batch "1": one minion at a time, every answering minion once, in arrival order; the dead one is not run nor in the answer', async () => {
    const probe = concurrencyProbe(master, 40);
    const ret = (await netapi.run({ client: 'local_batch', tgt: '*', fun: 'test.probe', batch: '1', ...CRED })) as Array<
      Record<string, unknown>
    >;
    assert.equal(ret.length, 4);
    assert.deepEqual(ret.map((r) => Object.keys(r)[0]).sort(), FOUR);
    for (const item of ret) {
      const [id] = Object.keys(item);
      assert.deepEqual(item, { [id]: id });
    }
    assert.equal(probe.maxInFlight, 1);
    assert.deepEqual(
      ret.map((r) => Object.keys(r)[0]),
      returnOrder(master, 'test.probe'),
    );
    assert.equal(busOf(netapi).subscriptionCount, 0);
    // Presence ping on the target, then one list-target publish per minion; ghost1 gets none.
    const ping = jobPublishes(master, 'test.ping');
    assert.equal(ping.length, 1);
    assert.equal(ping[0].load.tgt, '*');
    const runs = jobPublishes(master, 'test.probe');
    assert.equal(runs.length, 4);
    for (const r of runs) {
      assert.equal(r.load.tgt_type, 'list');
      assert.equal((r.load.tgt as string[]).length, 1);
      assert.ok(!(r.load.tgt as string[]).includes('ghost1'));
      assert.deepEqual(r.load.kwargs, CRED);
    }
  });

  test('batch "50%": two at a time', async () => {
    const probe = concurrencyProbe(master, 60);
    const ret = (await netapi.run({ client: 'local_batch', tgt: 'm*', fun: 'test.probe', batch: '50%', ...CRED })) as Array<
      Record<string, unknown>
    >;
    assert.equal(ret.length, 4);
    assert.deepEqual(ret.map((r) => Object.keys(r)[0]).sort(), FOUR);
    assert.equal(probe.maxInFlight, 2);
    assert.deepEqual(
      ret.map((r) => Object.keys(r)[0]),
      returnOrder(master, 'test.probe'),
    );
  });

  test('a count larger than the minions runs them all in one batch; the default is 10%', async () => {
    const probe = concurrencyProbe(master, 40);
    const all = (await netapi.run({ client: 'local_batch', tgt: 'm*', fun: 'test.probe', batch: 10, ...CRED })) as unknown[];
    assert.equal(all.length, 4);
    assert.equal(probe.maxInFlight, 4);
    assert.equal(jobPublishes(master, 'test.probe').length, 1);

    master.clearLog();
    const probe2 = concurrencyProbe(master, 20);
    const byDefault = (await netapi.run({ client: 'local_batch', tgt: 'm*', fun: 'test.probe', ...CRED })) as unknown[];
    assert.equal(byDefault.length, 4);
    assert.equal(probe2.maxInFlight, 1); // 10% of 4 is under one minion: rounds up to one
  });

  test('a dict return comes as the minion gave it (no retcode added: Batch.run yields the return alone)', async () => {
    const ret = (await netapi.run({ client: 'local_batch', tgt: 'm1', fun: 'test.arg', arg: ['a'], batch: '1', ...CRED })) as Array<
      Record<string, { args: unknown[]; kwargs: Record<string, unknown> }>
    >;
    assert.equal(ret.length, 1);
    assert.deepEqual(Object.keys(ret[0].m1).sort(), ['args', 'kwargs']);
    assert.deepEqual(ret[0].m1.args, ['a']);
  });

  test('a list target naming the dead one: only the answering minion, the job published to it alone', async () => {
    const ret = await netapi.run({
      client: 'local_batch',
      tgt: ['m2', 'ghost1'],
      tgt_type: 'list',
      fun: 'test.echo',
      arg: ['hi'],
      batch: '1',
      ...CRED,
    });
    assert.deepEqual(ret, [{ m2: 'hi' }]);
    const runs = jobPublishes(master, 'test.echo');
    assert.equal(runs.length, 1);
    assert.deepEqual(runs[0].load.tgt, ['m2']);
  });

  test('batch_wait keeps a slot free that long after each return', async () => {
    const probe = concurrencyProbe(master, 10);
    const ret = (await netapi.run({ client: 'local_batch', tgt: 'm*', fun: 'test.probe', batch: '1', batch_wait: 0.12, ...CRED })) as Array<
      Record<string, unknown>
    >;
    const order = ret.map((r) => Object.keys(r)[0]);
    for (let i = 1; i < order.length; i++) {
      const gap = probe.starts.get(order[i])! - probe.ends.get(order[i - 1])!;
      assert.ok(gap >= 100, `minion ${order[i]} started ${gap} ms after the previous return`);
    }
  });

  test('failhard stops the batch at the first non-zero retcode', async () => {
    const probe = concurrencyProbe(master, 10);
    probe.retcode = 2;
    const ret = (await netapi.run({
      client: 'local_batch',
      tgt: 'm*',
      fun: 'test.probe',
      batch: '1',
      failhard: true,
      ...CRED,
    })) as unknown[];
    assert.equal(ret.length, 1);
    assert.equal(jobPublishes(master, 'test.probe').length, 1);
    assert.equal(busOf(netapi).subscriptionCount, 0);

    master.clearLog();
    const all = (await netapi.run({ client: 'local_batch', tgt: 'm*', fun: 'test.probe', batch: '1', ...CRED })) as unknown[];
    assert.equal(all.length, 4);

    // Raw, a return is the event itself, with no retcode of its own for Batch.run to read: no stop.
    master.clearLog();
    const raw = (await netapi.run({
      client: 'local_batch',
      tgt: 'm*',
      fun: 'test.probe',
      batch: '1',
      failhard: true,
      raw: true,
      ...CRED,
    })) as unknown[];
    assert.equal(raw.length, 4);
  });

  test('raw: the return events whole', async () => {
    const ret = (await netapi.run({ client: 'local_batch', tgt: 'm1', fun: 'test.ping', batch: '1', raw: true, ...CRED })) as Array<{
      tag: string;
      data: Record<string, unknown>;
    }>;
    assert.equal(ret.length, 1);
    assert.match(ret[0].tag, /^salt\/job\/\d{20}\/ret\/m1$/);
    assert.equal(ret[0].data.id, 'm1');
    assert.equal(ret[0].data.return, true);
  });

  test('nothing matched, or nobody answers the presence ping: [], nothing run', async () => {
    assert.deepEqual(await netapi.run({ client: 'local_batch', tgt: 'nosuch', fun: 'test.ping', batch: '1', ...CRED }), []);
    assert.deepEqual(await netapi.run({ client: 'local_batch', tgt: 'ghost1', fun: 'test.ping', batch: '1', ...CRED }), []);
    assert.equal(jobPublishes(master, 'test.ping').length, 2); // the two presence pings, no job
  });
});

describe('local_batch: a minion that answers the ping, then not the job', () => {
  /** m1, and flaky1: alive for the presence ping, dead right after. */
  function startFlaky() {
    return startMasterAndNetapi({
      users: USERS,
      minions: [
        { id: 'm1' },
        {
          id: 'flaky1',
          overrides: {
            'test.ping': (call: MinionCall) => {
              // Alive for the presence ping, dead right after.
              setImmediate(() => (call.minion.spec.silent = true));
              return true;
            },
          },
        },
      ],
      config: { timeout: 0.15, gather_job_timeout: 0.15 },
    });
  }

  test('is {} once its batch gives up (Batch.run gives the minions its tracker still holds an empty return)', async (t) => {
    const { netapi, close } = await startFlaky();
    t.after(close);
    const ret = (await netapi.run({ client: 'local_batch', tgt: '*', fun: 'test.echo', arg: ['x'], batch: '2', ...CRED })) as unknown[];
    assert.deepEqual(ret, [{ m1: 'x' }, { flaky1: {} }]);
  });

  test('raw: the event of m1, and {"ret": {}} for it (what Batch.run yields raw for an empty return)', async (t) => {
    const { netapi, close } = await startFlaky();
    t.after(close);
    const ret = (await netapi.run({
      client: 'local_batch',
      tgt: '*',
      fun: 'test.echo',
      arg: ['x'],
      batch: '2',
      raw: true,
      ...CRED,
    })) as Array<Record<string, unknown>>;
    assert.equal(ret.length, 2);
    assert.match(String(ret[0].tag), /^salt\/job\/\d{20}\/ret\/m1$/);
    assert.deepEqual(ret[1], { ret: {} });
  });

  test('failhard does not stop on it: an empty return has no retcode', async (t) => {
    const { netapi, close } = await startFlaky();
    t.after(close);
    const ret = await netapi.run({ client: 'local_batch', tgt: '*', fun: 'test.echo', arg: ['x'], batch: '1', failhard: true, ...CRED });
    assert.equal((ret as unknown[]).length, 2);
    assert.deepEqual(
      (ret as unknown[]).find((r) => Object.hasOwn(r as object, 'flaky1')),
      { flaky1: {} },
    );
  });
});

describe('local_batch: batch sizes and checks', () => {
  test('get_bnum: counts, percentages rounded down, under one minion rounded up', () => {
    assert.equal(batchSize('1', 4), 1);
    assert.equal(batchSize(3, 4), 3);
    assert.equal(batchSize('50%', 4), 2);
    assert.equal(batchSize('25%', 4), 1);
    assert.equal(batchSize('10%', 4), 1);
    assert.equal(batchSize('60%', 4), 2);
    assert.equal(batchSize('%60', 4), 2);
    assert.equal(batchSize('100%', 7), 7);
  });

  test('a batch that is not a positive count or percentage is a 400 before anything runs', async (t) => {
    const { master, netapi, close } = await startMasterAndNetapi({ users: USERS });
    t.after(close);
    for (const batch of ['0', 'abc', '0%', '-1', 1.5, '', true]) {
      assert.throws(
        () => netapi.check({ client: 'local_batch', tgt: '*', fun: 'test.ping', batch, ...CRED }),
        (err: unknown) => err instanceof BadRequestError && /^Invalid batch/.test(err.message),
        `batch ${JSON.stringify(batch)}`,
      );
    }
    assert.throws(
      () => netapi.check({ client: 'local_batch', tgt: '*', fun: 'test.ping', batch: '1', batch_wait: 'soon', ...CRED }),
      BadRequestError,
    );
    assert.equal(master.requests.length, 0);
  });
});
