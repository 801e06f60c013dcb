/**
 * The bench's master: the test master double in a process of its own, so
 * its CPU is not the server's. Minions: `minion1` answers at once; `slow-00`
 * to `slow-63` answer after 200 ms (the burst test). With a number N as its
 * argument (bench/ops-cost.ts), also `minion2` to `minionN`, answering at once.
 */
import { startMaster } from '../test/support/master.js';
import { serveParent } from './ipc.js';
import { SLOW_DELAY_MS, SLOW_MINIONS } from './loads.js';

const fastMinions = Array.from({ length: Math.max(1, Number(process.argv[2] ?? 1)) }, (_, i) => ({ id: `minion${i + 1}` }));
const master = await startMaster({
  minions: [...fastMinions, ...SLOW_MINIONS.map((id) => ({ id, delayMs: SLOW_DELAY_MS }))],
  // Salt's own timeouts: a sync call ends when its minions answered, never by a timeout here.
  config: { timeout: 5, gather_job_timeout: 5 },
});

serveParent(async (message) => {
  switch (message.type) {
    case 'clear':
      // The double logs every request, event and job for tests to inspect:
      // over a bench run that is a lot of memory and slower lookups.
      master.clearLog();
      master.jobs.clear();
      return {};
    case 'cpu': {
      const cpu = process.cpuUsage();
      return { cpuMicros: cpu.user + cpu.system };
    }
    case 'stop':
      await master.close();
      setImmediate(() => process.exit(0));
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', () => void master.close().then(() => process.exit(0)));
process.send!({ type: 'ready', configPath: master.configPath });
