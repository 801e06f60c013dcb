/**
 * The server under test, alone in its process: the compiled createHandler
 * on node:http, as bin/ serves it (without the access log). Its CPU time, open file
 * descriptors and RSS are reported on request.
 */
import http from 'node:http';
import { readdirSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import type { AddressInfo } from 'node:net';
import { serveParent } from './ipc.js';
import { compiled } from './compiled.js';

// bench/run.ts built dist/ before starting this process.
const { createHandler } = await compiled<typeof import('../lib/http/handler.js')>('lib/http/handler.js');

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
  /** V8's heap spaces, committed bytes by name (new_space grows with the allocation rate). */
  heapSpaces: Record<string, number>;
}

/** `collect`: first a full garbage collection (needs --expose-gc), so that RSS is what the process keeps, not garbage not yet collected. */
function stats(collect = false): ServerStats {
  if (collect) {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('stats after a garbage collection need node --expose-gc');
    gc();
  }
  const cpu = process.cpuUsage();
  return {
    cpuMicros: cpu.user + cpu.system,
    fds: readdirSync('/proc/self/fd').length - 1, // minus the one readdir itself holds open
    rss: process.memoryUsage.rss(),
    heapUsed: process.memoryUsage().heapUsed,
    heapSpaces: Object.fromEntries(v8.getHeapSpaceStatistics().map((space) => [space.space_name, space.physical_space_size])),
  };
}

/** CPU profiles of chosen stretches (bench --profile): the inspector's sampling profiler, in-process. */
const profiler = new inspector.Session();
profiler.connect();
const post = promisify(profiler.post.bind(profiler)) as (method: string, params?: object) => Promise<any>;

async function profileStart(): Promise<void> {
  await post('Profiler.enable');
  await post('Profiler.start');
}

async function profileStop(file: string): Promise<void> {
  const { profile } = await post('Profiler.stop');
  writeFileSync(file, JSON.stringify(profile));
}

function stop(): void {
  server.close();
  server.closeAllConnections();
  handler.close();
  setImmediate(() => process.exit(0));
}

serveParent((message) => {
  switch (message.type) {
    case 'stats':
      return { stats: stats(message.collect === true) };
    case 'profile-start':
      return profileStart().then(() => ({}));
    case 'profile-stop':
      return profileStop(String(message.file)).then(() => ({}));
    case 'stop':
      stop();
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', stop);
process.send!({ type: 'ready', port: (server.address() as AddressInfo).port });
