/**
 * lib/clients/syndic.ts, the master-of-masters rule, and the clients using
 * it against the master double playing a syndic (test/support/syndic.ts):
 * what the publish carries, what the wait waits for, which events it hears.
 * test/syndic.test.ts runs the same topology over HTTP, and on a real one.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { applyMasterDefaults } from '../../lib/salt/config.js';
import { isSyndic, ordersMasters, syndicPublishFields, syndicWaitMs } from '../../lib/clients/syndic.js';
import { startMasterAndNetapi, type MasterAndNetapi } from '../support/netapi.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'syndic-test-secret' };
const USERS = { saltdev: { password: CRED.password, permissions: ['.*', '@runner', '@wheel', '@jobs'] } };

describe('the rule, read from the master config', () => {
  test('order_masters and syndic_wait (Salt default 5 s; 0 when masters are not ordered)', () => {
    assert.equal(ordersMasters(applyMasterDefaults({})), false);
    assert.equal(syndicWaitMs(applyMasterDefaults({ syndic_wait: 3 })), 0);
    assert.equal(syndicWaitMs(applyMasterDefaults({ order_masters: true })), 5000);
    assert.equal(syndicWaitMs(applyMasterDefaults({ order_masters: true, syndic_wait: 2 })), 2000);
    assert.equal(syndicWaitMs(applyMasterDefaults({ order_masters: true, syndic_wait: 0 })), 0);
    assert.equal(syndicWaitMs(applyMasterDefaults({ order_masters: true, syndic_wait: 'soon' })), 5000);
  });

  test('`to` goes with the publish only to a master of masters', () => {
    assert.deepEqual(syndicPublishFields(applyMasterDefaults({}), 5000), {});
    assert.deepEqual(syndicPublishFields(applyMasterDefaults({ order_masters: true }), 7000), { to: 7 });
  });

  test('a syndic is one the master registered in <cachedir>/syndics; no path escapes it', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'syndic-dir-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(path.join(dir, 'syndics'));
    await writeFile(path.join(dir, 'syndics', 'syndic1'), '');
    await writeFile(path.join(dir, 'outside'), '');
    const opts = applyMasterDefaults({ order_masters: true, cachedir: dir });
    assert.equal(isSyndic(opts, 'syndic1'), true);
    assert.equal(isSyndic(opts, 'minion1'), false);
    assert.equal(isSyndic(opts, '../outside'), false);
    assert.equal(isSyndic(opts, '..'), false);
    assert.equal(isSyndic(applyMasterDefaults({ cachedir: dir }), 'syndic1'), false);
  });
});

describe('local on the double playing a syndic (timeout 0.2 s, gather_job_timeout 0.2 s, syndic_wait 0.3 s)', () => {
  let env: MasterAndNetapi;
  before(async () => {
    env = await startMasterAndNetapi({
      users: USERS,
      minions: [],
      syndics: [{ id: 'syndic1', minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }], dropsBelowToS: 0.05 }],
      config: { timeout: 0.2, gather_job_timeout: 0.2 },
    });
  });
  after(async () => {
    env.netapi.close();
    await env.master.close();
  });

  test('the publish carries `to` (the timeout), find_job its gather_job_timeout', async () => {
    env.master.clearLog();
    const ret = await env.netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', timeout: 0.25, ...CRED });
    assert.deepEqual(ret, { minion1: true, syndic1: false });
    const loads = env.master.requests.filter((r) => r.cmd === 'publish').map((r) => r.load);
    assert.deepEqual(
      loads.map((l) => [l.fun, l.to]),
      [
        ['test.ping', 0.25],
        ['saltutil.find_job', 0.2],
      ],
    );
  });

  test('a publish reply naming no minion is a job: the syndic names minion1, which returns; done once syndic_wait passed', async () => {
    const start = performance.now();
    const ret = await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.ping', ...CRED });
    const elapsed = performance.now() - start;
    assert.deepEqual(ret, { minion1: true });
    assert.ok(elapsed >= 300, `${elapsed} ms`);
    assert.ok(elapsed < 1000, `${elapsed} ms`);
  });

  test('the syndic names its minions only in its syndic/<id>/<jid> event: that is heard too', async () => {
    // Drop the forwarded salt/job/<jid>/new: only syndic/syndic1/... events name minion1 then.
    const fire = env.master.fire.bind(env.master);
    env.master.fire = (tag, data) => {
      if (tag.startsWith('salt/job/') && tag.endsWith('/new') && data.user === 'root') return;
      fire(tag, data);
    };
    try {
      env.master.clearLog();
      // It sleeps past the timeout: the find_job round asks the minions expected by then.
      const ret = await env.netapi.run({ client: 'local', tgt: 'minion1', fun: 'test.sleep', arg: [8], ...CRED });
      assert.deepEqual(ret, { minion1: true });
      const findJobs = env.master.requests.filter((r) => r.cmd === 'publish' && r.load.fun === 'saltutil.find_job');
      assert.deepEqual(findJobs[0]?.load.tgt, ['minion1']);
    } finally {
      env.master.fire = fire;
    }
  });

  test('nothing anywhere matches: no short-circuit, the wait runs out (timeout + gather_job_timeout + syndic_wait)', async () => {
    const start = performance.now();
    const ret = await env.netapi.run({ client: 'local', tgt: 'nobody*', fun: 'test.ping', ...CRED });
    const elapsed = performance.now() - start;
    assert.deepEqual(ret, {});
    assert.ok(elapsed >= 700, `${elapsed} ms`);
  });

  test('local_async: the jid and no minions', async () => {
    const ret = (await env.netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED })) as Record<string, unknown>;
    assert.match(String(ret.jid), /^\d{20}$/);
    assert.deepEqual(ret.minions, []);
  });
});
