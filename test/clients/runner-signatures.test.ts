/**
 * Runner items bound as RunnerClient._reformat_low binds them, with the
 * signatures the master reports (`salt.cmd sys.runner_argspec '*'`), the
 * fallback where the master won't say, and runner jobs the master never
 * starts. Against the master double.
 */
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startMasterAndNetapi } from '../support/netapi.js';
import type { SaltMasterDouble } from '../support/master.js';
import { NetapiClient } from '../../lib/clients/netapi.js';
import { loadMasterConfig } from '../../lib/salt/config.js';
import { FunctionNotAvailableError, GatewayTimeoutError, RunnerNotStartedError } from '../../lib/errors.js';
import { rm, writeFile } from 'node:fs/promises';
import { bindToSignature } from '../../lib/clients/runner-signatures.js';

const PASSWORD = 'signature-test-secret';
const USERS = {
  saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel'] },
  // May run the jobs runners, not salt.cmd: no signatures for this one.
  jobsonly: { password: PASSWORD, permissions: ['@jobs'] },
};
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const JOBSONLY = { eauth: 'pam', username: 'jobsonly', password: PASSWORD };

describe('bindToSignature (salt.minion.load_args_and_kwargs, ignore_invalid=True)', () => {
  test('keywords the function takes are kept, others dropped; positional values stay', () => {
    const up = { args: ['tgt', 'tgt_type', 'timeout', 'gather_job_timeout'], kwargs: false };
    assert.deepEqual(bindToSignature(up, ['minion1'], { bogus: 1, tgt_type: 'list' }), { arg: ['minion1'], kwarg: { tgt_type: 'list' } });
    assert.deepEqual(bindToSignature(up, [], {}), { arg: [], kwarg: {} });
  });

  test('a function taking **kwargs keeps every keyword', () => {
    assert.deepEqual(bindToSignature({ args: [], kwargs: true }, [1, 'x'], { a: 1, b: 2 }), { arg: [1, 'x'], kwarg: { a: 1, b: 2 } });
  });

  test('a positional string still shaped k=v (quoted in YAML) is a keyword here, as in Salt', () => {
    assert.deepEqual(bindToSignature({ args: ['jid'], kwargs: false }, ['jid=123', 'other=1'], {}), { arg: [], kwarg: { jid: 123 } });
  });
});

describe('runner signatures from the master', () => {
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

  const runnerLoads = (fun?: string) => master.requests.filter((r) => r.cmd === 'runner' && (fun === undefined || r.load.fun === fun));

  test("each keyword style is bound to the signature, invalid keywords dropped: the master records what Salt's client makes it record", async () => {
    const styles: Array<[string, Record<string, unknown>, unknown[]]> = [
      ['no arguments', {}, []],
      ['positional only', { arg: ['minion1'] }, ['minion1']],
      ['kwarg only', { kwarg: { tgt: 'minion1', bogus: 1 } }, [{ tgt: 'minion1' }]],
      ['top-level keywords', { tgt: 'minion1', bogus: 2 }, [{ tgt: 'minion1' }]],
      ['k=v strings', { arg: ['tgt=minion1', 'bogus=3', 'timeout=2'] }, [{ tgt: 'minion1', timeout: 2 }]],
    ];
    for (const [style, fields, funArgs] of styles) {
      const ret = (await netapi.run({ client: 'runner', fun: 'manage.up', full_return: true, ...fields, ...CRED })) as {
        data: { fun_args: unknown[]; return: unknown };
      };
      assert.deepEqual(ret.data.fun_args, funArgs, style);
      assert.deepEqual(ret.data.return, ['minion1'], style);
    }
  });

  test("the table is fetched once per master start, with the item's own credentials", async () => {
    await netapi.run({ client: 'runner', fun: 'test.arg', ...CRED });
    await netapi.run({ client: 'runner_async', fun: 'test.arg', a: 1, ...CRED });
    assert.equal(runnerLoads('salt.cmd').length, 0, 'known since the first test');

    await master.stop();
    await master.start();
    await master.waitForBusClients(1);
    master.clearLog();
    await Promise.all([1, 2, 3].map(() => netapi.run({ client: 'runner', fun: 'test.arg', a: 1, ...CRED })));
    const fetches = runnerLoads('salt.cmd');
    assert.equal(fetches.length, 1, 'fetched again after the restart, once for three items');
    assert.deepEqual(fetches[0].load, { cmd: 'runner', fun: 'salt.cmd', kwarg: { arg: ['sys.runner_argspec', '*'], kwarg: {} }, ...CRED });
  });

  test('a user who may not run salt.cmd keeps the flat form (the master binds it); refused once', async (t) => {
    // A client whose table nobody has fetched yet: this user is the first to ask.
    const netapi = new NetapiClient(loadMasterConfig(master.configPath));
    t.after(() => netapi.close());
    await master.waitForBusClients(2);
    const pub = (await netapi.run({ client: 'local_async', tgt: 'minion1', fun: 'test.ping', ...CRED })) as { jid: string };
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await netapi.run({ client: 'runner', fun: 'jobs.lookup_jid', jid: pub.jid, ...JOBSONLY }), { minion1: true });
    }
    const item = runnerLoads('jobs.lookup_jid');
    assert.deepEqual(item[item.length - 1].load.kwarg, { jid: pub.jid });
    assert.equal(runnerLoads('salt.cmd').length, 1, 'the refusal is remembered');
    // No keywords: nothing to bind, so the form is Salt's even without the table.
    await netapi.run({ client: 'runner_async', fun: 'jobs.list_job', arg: [pub.jid], ...JOBSONLY });
    assert.deepEqual(runnerLoads('jobs.list_job')[0].load.kwarg, { arg: [pub.jid], kwarg: {} });
  });

  test('runner and runner_async of a function the master lacks: 400 at once, nothing sent', async () => {
    const start = performance.now();
    for (const client of ['runner', 'runner_async']) {
      await assert.rejects(netapi.run({ client, fun: 'no.such_runner', ...CRED }), (err: unknown) => {
        assert.ok(err instanceof FunctionNotAvailableError);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'SRW_ERR_FUNCTION_NOT_AVAILABLE');
        assert.equal(err.message, "'no.such_runner' is not available.");
        return true;
      });
    }
    assert.ok(performance.now() - start < 500);
    assert.equal(runnerLoads('no.such_runner').length, 0);
  });
});

describe('runner jobs the master never starts', () => {
  test('no `new` within gather_job_timeout: 502 naming the function, long before the timeout', async (t) => {
    const env = await startMasterAndNetapi({ users: USERS });
    t.after(() => env.close());
    await env.master.writeConfig({ gather_job_timeout: 0.3 });
    const netapi = new NetapiClient(loadMasterConfig(env.master.configPath));
    t.after(() => netapi.close());
    await env.master.waitForBusClients(2);
    // Without the table (this user may not have it), the master gets the
    // call and its runner process dies on it, as Salt's does.
    for (const [fun, fields] of [
      ['jobs.no_such', {}],
      ['jobs.lookup_jid', { returned: true }], // flat (keywords, no table): its jid is required, format_call fails
    ] as const) {
      const start = performance.now();
      await assert.rejects(netapi.run({ client: 'runner', fun, timeout: 30, ...fields, ...JOBSONLY }), (err: unknown) => {
        assert.ok(err instanceof RunnerNotStartedError, String(err));
        assert.equal(err.status, 502);
        assert.equal(err.code, 'SRW_ERR_RUNNER_NOT_STARTED');
        assert.match(
          err.message,
          new RegExp(`^The master started no job for runner function '${fun.replace('.', '\\.')}' \\(jid \\d{20}\\) within 1\\.3 s: `),
        );
        return true;
      });
      const took = performance.now() - start;
      assert.ok(took >= 1200 && took < 2500, `answered after ${Math.round(took)} ms`);
    }
    assert.equal(env.master.neverStarted.length, 2);
  });

  test('no `new` because the master started again meanwhile (its sockets made anew): 504 as for a lost bus, not 502', async (t) => {
    const env = await startMasterAndNetapi({ users: USERS, runnerDelayMs: 5000 });
    t.after(() => env.close());
    await env.master.writeConfig({ gather_job_timeout: 0.3 });
    const netapi = new NetapiClient(loadMasterConfig(env.master.configPath));
    t.after(() => netapi.close());
    await env.master.waitForBusClients(2);
    const started = env.master.nextRequest('runner');
    const pending = netapi.run({ client: 'runner', fun: 'test.arg', timeout: 30, ...CRED });
    await started;
    // What a restart the bus connection did not notice leaves behind: new socket files.
    await rm(env.master.workersIpcPath);
    await writeFile(env.master.workersIpcPath, '');
    await assert.rejects(pending, (err: unknown) => {
      assert.ok(err instanceof GatewayTimeoutError, String(err));
      assert.match(err.message, /^Lost the connection to the master's event bus while waiting for job \d{20}/);
      return true;
    });
  });

  test('a slow function that started is waited for past gather_job_timeout', async (t) => {
    const env = await startMasterAndNetapi({ users: USERS, sleepScale: 0.1 });
    t.after(() => env.close());
    await env.master.writeConfig({ gather_job_timeout: 0.2 });
    const netapi = new NetapiClient(loadMasterConfig(env.master.configPath));
    t.after(() => netapi.close());
    await env.master.waitForBusClients(2);
    assert.equal(await netapi.run({ client: 'runner', fun: 'test.sleep', s_time: 20, ...CRED }), true); // 2 s
  });
});
