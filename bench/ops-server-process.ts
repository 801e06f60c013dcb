/**
 * The server of the ops-cost case (bench/ops-cost.ts), alone in its process,
 * in one of two configurations (argv[3]):
 *
 * - `light`: as light as the handler can be. Metrics cannot be turned off
 *   (lib/http/metrics.ts counts every answer and item); here nobody scrapes
 *   them. No audit records (`auditLog` unset).
 * - `full`: what an operator turns on: the audit lines written to a file by
 *   the command's own AuditSink (bin/operations.ts, `audit_log: FILE`), with
 *   `audit_args: true`; the metrics served on a listener of their own
 *   (`metrics_port`), which the bench scrapes every second.
 *
 * Neither has the access log (as bench/server-process.ts). The compiled
 * library (dist/), as deployed. CPU time and the audit file's size on request.
 */
import http from 'node:http';
import { statSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { serveParent } from './ipc.js';
import { compiled } from './compiled.js';

const { createHandler } = await compiled<typeof import('../lib/http/handler.js')>('lib/http/handler.js');
const { AuditSink } = await compiled<typeof import('../bin/operations.js')>('bin/operations.js');
const { createLogger } = await compiled<typeof import('../lib/log.js')>('lib/log.js');

export type OpsConfig = 'light' | 'full';

const [configPath, mode, auditPath] = process.argv.slice(2) as [string, OpsConfig, string | undefined];
if (mode !== 'light' && mode !== 'full') throw new Error(`ops-server-process: light or full, not ${mode}`);
if (mode === 'full' && !auditPath) throw new Error('ops-server-process full: the audit file is the third argument');

const logger = createLogger({ level: 'warn' });
const audit = mode === 'full' ? new AuditSink(auditPath, 'text', logger) : undefined;
const handler = createHandler({ config: configPath, logger, auditLog: audit?.write, auditArgs: mode === 'full' });
const server = http.createServer(handler);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const metricsServer = mode === 'full' ? http.createServer(handler.metricsHandler) : undefined;
if (metricsServer) await new Promise<void>((resolve) => metricsServer.listen(0, '127.0.0.1', resolve));

/** CPU profiles of the measured stretches (--profile): the inspector's sampling profiler, in-process. */
const profiler = new inspector.Session();
profiler.connect();
const post = promisify(profiler.post.bind(profiler)) as (method: string, params?: object) => Promise<any>;

function stop(): void {
  server.close();
  server.closeAllConnections();
  metricsServer?.close();
  metricsServer?.closeAllConnections();
  handler.close();
  audit?.close();
  setImmediate(() => process.exit(0));
}

serveParent(async (message) => {
  switch (message.type) {
    case 'cpu': {
      const cpu = process.cpuUsage();
      return { cpuMicros: cpu.user + cpu.system, auditBytes: auditPath && mode === 'full' ? statSync(auditPath).size : 0 };
    }
    case 'profile-start':
      await post('Profiler.enable');
      await post('Profiler.start');
      return {};
    case 'profile-stop': {
      const { profile } = await post('Profiler.stop');
      writeFileSync(String(message.file), JSON.stringify(profile));
      return {};
    }
    case 'stop':
      stop();
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', stop);
process.send!({
  type: 'ready',
  port: (server.address() as AddressInfo).port,
  metricsPort: metricsServer ? (metricsServer.address() as AddressInfo).port : undefined,
});
