/**
 * The server under test, alone in its process: createHandler on node:http,
 * as bin/ serves it (without the access log). Its CPU time, open file
 * descriptors and RSS are reported on request.
 */
import http from 'node:http';
import { readdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createHandler } from '../lib/handler.js';
import { serveParent } from './ipc.js';

const configPath = process.argv[2];
const handler = createHandler({ config: configPath });
const server = http.createServer(handler);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

export interface ServerStats {
  /** process.cpuUsage(), user + system, µs: every thread of the process (ZeroMQ's I/O thread included). */
  cpuMicros: number;
  fds: number;
  rss: number;
  heapUsed: number;
}

function stats(): ServerStats {
  const cpu = process.cpuUsage();
  return {
    cpuMicros: cpu.user + cpu.system,
    fds: readdirSync('/proc/self/fd').length - 1, // minus the one readdir itself holds open
    rss: process.memoryUsage.rss(),
    heapUsed: process.memoryUsage().heapUsed,
  };
}

function stop(): void {
  server.close();
  server.closeAllConnections();
  handler.close();
  // process.exit() rather than waiting for the loop to empty: --cpu-prof is written on exit too.
  setImmediate(() => process.exit(0));
}

serveParent((message) => {
  switch (message.type) {
    case 'stats':
      return { stats: stats() };
    case 'stop':
      stop();
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', stop);
process.send!({ type: 'ready', port: (server.address() as AddressInfo).port });
