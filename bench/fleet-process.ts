/**
 * The scale bench's master: the test master double playing a fleet, in a
 * process of its own (its CPU is not the server's). Each `fleet` message
 * replaces the double with a fresh one: `count` minions `fleet-00000`...,
 * answering after `delayMs`, spread evenly over `spreadMs` more (returns
 * come over time, as from a real fleet, not in one synchronous burst),
 * every `silentEvery`-th one silent, returning `returnBytes`-byte strings
 * for test.arg when asked (`<id>:` then filler, so the client can check
 * each minion's return is its own). The double keeps no log (keepLog: false).
 *
 * It reports when the last return left (`lastReturnAt`, ms on the shared
 * wall clock) and the targets of each saltutil.find_job publish (`reset`
 * forgets them: a warm-up job's returns are not the case's).
 */
import { startMaster, type SaltMasterDouble, type MinionSpec, type MinionCall } from '../test/support/master.js';
import { serveParent } from './ipc.js';
import { bigReturn, fleetIds, type FleetSpec } from './fleet.js';

/** Shared by every minion: each return is its id then a slice of this (V8 keeps the concatenation as a rope, no copy). */
let filler = '';

let master: SaltMasterDouble | undefined;
let lastReturnAt = 0;
let returns = 0;
let findJobs: string[][] = [];
/** When each minion's return left, wall clock ms (the streamed cases time each line against it). */
let returnTimes = new Map<string, number>();

const wallNow = () => performance.timeOrigin + performance.now();

async function startFleet(spec: FleetSpec): Promise<string> {
  await master?.close();
  if (spec.returnBytes > filler.length) filler = 'x'.repeat(spec.returnBytes);
  const minions: MinionSpec[] = fleetIds(spec.count).map((id, i) => {
    const minion: MinionSpec = { id, delayMs: spec.delayMs + (spec.count > 1 ? (spec.spreadMs * i) / (spec.count - 1) : 0) };
    if (spec.silentEvery > 0 && i % spec.silentEvery === spec.silentEvery - 1) minion.silent = true;
    if (spec.returnBytes > 0) minion.overrides = { 'test.arg': (call: MinionCall) => bigReturn(call.minion.id, spec.returnBytes, filler) };
    return minion;
  });
  master = await startMaster({
    minions,
    config: { timeout: 5, gather_job_timeout: 5, rest_wsgi: { port: 0 } },
    keepLog: false,
    publishReplyDelayMs: spec.publishReplyDelayMs,
  });
  lastReturnAt = 0;
  returns = 0;
  findJobs = [];
  returnTimes = new Map();
  master.on('event', ({ tag, data }: { tag: string; data: Record<string, unknown> }) => {
    if (tag.includes('/ret/') && data.fun !== 'saltutil.find_job') {
      lastReturnAt = wallNow();
      returns++;
      if (typeof data.id === 'string') returnTimes.set(data.id, lastReturnAt);
    }
  });
  master.on('request', (record: { cmd: string; load: Record<string, unknown> }) => {
    if (record.cmd === 'publish' && record.load.fun === 'saltutil.find_job') findJobs.push([...(record.load.tgt as string[])]);
  });
  return master.configPath;
}

serveParent(async (message) => {
  switch (message.type) {
    case 'fleet':
      return { configPath: await startFleet(message.spec as FleetSpec), eventPath: master!.eventPath };
    case 'reset':
      lastReturnAt = 0;
      returns = 0;
      findJobs = [];
      returnTimes = new Map();
      return {};
    case 'report':
      return { lastReturnAt, returns, findJobs, ...(message.times ? { times: Object.fromEntries(returnTimes) } : {}) };
    case 'stop':
      await master?.close();
      setImmediate(() => process.exit(0));
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', () => void (master?.close() ?? Promise.resolve()).then(() => process.exit(0)));
process.send!({ type: 'ready' });
