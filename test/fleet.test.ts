/**
 * Fleets, small enough for the unit suite (the large ones are in
 * `npm run bench -- --only scale`): returns heard before the master's
 * publish reply are all kept, past the bus's old 2,000-event buffer; silent
 * minions are found in one find_job round naming exactly them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMasterAndNetapi } from './support/netapi.js';
import type { EventBus } from '../lib/salt/event-bus.js';
import type { NetapiClient } from '../lib/clients/netapi.js';
import { startMaster, type MinionCall } from './support/master.js';
import { request, serve } from './support/http.js';
import { createHandler } from '../lib/http/handler.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };
const ids = (count: number) => Array.from({ length: count }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);

function busOf(netapi: NetapiClient): EventBus {
  return (netapi as unknown as { bus: EventBus }).bus;
}

describe('fleets', () => {
  test('2,500 returns that all come before the publish reply: none lost, none retained by the bus', async (t) => {
    const fleet = ids(2500);
    const env = await startMasterAndNetapi({
      minions: fleet.map((id) => ({ id })),
      // The minions get the job at once and answer; the reply leaves 300 ms later.
      publishReplyDelayMs: 300,
      config: { timeout: 5, gather_job_timeout: 5 },
    });
    t.after(() => env.close());
    let returnsBeforeReply = 0;
    let replied = false;
    env.master.on('event', ({ tag }: { tag: string }) => {
      if (tag.includes('/ret/') && !replied) returnsBeforeReply++;
    });
    env.master.on('request', (record: { cmd: string }) => {
      if (record.cmd === 'publish') setTimeout(() => (replied = true), 300);
    });
    const ret = (await env.netapi.run({ client: 'local', tgt: 'fleet-*', fun: 'test.ping', ...CRED })) as Record<string, unknown>;
    assert.ok(returnsBeforeReply > 2000, `only ${returnsBeforeReply} returns came before the reply`);
    assert.equal(Object.keys(ret).length, fleet.length);
    assert.deepEqual(
      fleet.filter((id) => ret[id] !== true),
      [],
    );
    // Listened to before it was published: the bus kept nothing for it.
    assert.equal(busOf(env.netapi).retainedCount, 0);
    assert.equal(env.netapi.stats().busSubscriptions, 0);
  });

  test('1,000 minions, 25 silent: one find_job round naming exactly the silent ones, then false for them', async (t) => {
    const fleet = ids(1000);
    const silent = new Set(fleet.filter((_, i) => i % 40 === 39));
    const env = await startMasterAndNetapi({
      minions: fleet.map((id) => ({ id, silent: silent.has(id) })),
      // Long enough for 1,000 answers from the double on a busy machine: the round must find only the silent.
      config: { timeout: 2.5, gather_job_timeout: 0.3 },
    });
    t.after(() => env.close());
    const rounds: string[][] = [];
    env.master.on('request', (record: { cmd: string; load: Record<string, unknown> }) => {
      if (record.cmd === 'publish' && record.load.fun === 'saltutil.find_job') rounds.push(record.load.tgt as string[]);
    });
    const start = performance.now();
    const ret = (await env.netapi.run({ client: 'local', tgt: 'fleet-*', fun: 'test.ping', ...CRED })) as Record<string, unknown>;
    const elapsed = performance.now() - start;
    assert.equal(rounds.length, 1);
    assert.deepEqual([...rounds[0]].sort(), [...silent].sort());
    for (const id of fleet) assert.equal(ret[id], !silent.has(id), id);
    // timeout + gather_job_timeout, plus what 1,000 minions take on a shared machine.
    assert.ok(elapsed < 2800 + 1500, `took ${elapsed.toFixed(0)} ms`);
    assert.equal(env.netapi.stats().busSubscriptions, 0);
  });

  test("a `new` event naming more minions than the publish reply (a syndic's): they are waited for", async (t) => {
    const fleet = ids(300);
    const env = await startMasterAndNetapi({
      minions: fleet.map((id) => ({ id, delayMs: 200 })),
      config: { timeout: 5, gather_job_timeout: 5 },
    });
    t.after(() => env.close());
    // A syndic's master names its own minion in a `new` event of the job, and its return follows.
    env.master.on('request', (record: { cmd: string; load: Record<string, unknown> }) => {
      if (record.cmd !== 'publish' || record.load.fun !== 'test.ping') return;
      const jid = String(record.load.jid);
      setTimeout(() => env.master.fire(`salt/job/${jid}/new`, { jid, minions: ['behind-syndic'], missing: [] }), 20);
      setTimeout(() => env.master.fire(`salt/job/${jid}/ret/behind-syndic`, { id: 'behind-syndic', jid, return: true, retcode: 0 }), 600);
    });
    const ret = (await env.netapi.run({ client: 'local', tgt: 'fleet-*', fun: 'test.ping', ...CRED })) as Record<string, unknown>;
    assert.equal(ret['behind-syndic'], true);
    assert.deepEqual(
      fleet.filter((id) => ret[id] !== true),
      [],
    );
  });

  test('rest_wsgi: max_result_bytes: past it, 507 naming the job, and nothing held after; under it, the answer', async (t) => {
    const fleet = ids(20);
    const master = await startMaster({
      minions: fleet.map((id) => ({ id, overrides: { 'test.arg': (call: MinionCall) => `${call.minion.id}:${'r'.repeat(10_000)}` } })),
      config: { timeout: 5, gather_job_timeout: 5, rest_wsgi: { max_result_bytes: 100_000 } },
    });
    t.after(() => master.close());
    const handler = createHandler({ config: master.configPath });
    const server = await serve(handler);
    t.after(async () => {
      await server.close();
      handler.close();
    });
    await master.waitForBusClients(1);
    const body = (tgt: string | string[]) =>
      JSON.stringify([{ client: 'local', tgt, tgt_type: Array.isArray(tgt) ? 'list' : 'glob', fun: 'test.arg', ...CRED }]);

    const over = await request(server.port, { method: 'POST', body: body('fleet-*') });
    assert.equal(over.status, 507);
    const message = (over.json as { return: string }).return;
    const jid = master.requests.find((r) => r.cmd === 'publish' && r.load.fun === 'test.arg')!.load.jid as string;
    assert.match(message, /max_result_bytes, 100000 bytes/);
    assert.ok(message.includes(jid), message);
    assert.deepEqual(handler.stats(), { ...handler.stats(), inFlight: 0, busSubscriptions: 0, busWatchers: 0 });

    // 5 returns of ~10 KB: under the ceiling.
    const under = await request(server.port, { method: 'POST', body: body(fleet.slice(0, 5)) });
    assert.equal(under.status, 200);
    const ret = (under.json as { return: Array<Record<string, string>> }).return[0];
    assert.deepEqual(Object.keys(ret).sort(), fleet.slice(0, 5));
    for (const id of fleet.slice(0, 5)) assert.equal(ret[id], `${id}:${'r'.repeat(10_000)}`);
  });
});
