/**
 * The floor of collecting returns: a bare Node process that takes the
 * master's event bus off its socket (node:net, onread into one reused
 * buffer) and does nothing else: no frames cut, nothing decoded. It reads
 * as the server does: at once after a quiet spell, once per the server's
 * default busyReadMs in a burst. Its CPU during a fleet's returns, beside
 * the server's in the same run, is what this machine charges for receiving
 * those bytes in Node.
 */
import net from 'node:net';
import { serveParent } from './ipc.js';
import { DEFAULT_BUSY_READ_MS } from '../lib/salt/event-bus-options.js';

const BURST_READ_MS = DEFAULT_BUSY_READ_MS;
const buffer = Buffer.allocUnsafe(64 * 1024);
let lastReadAt = 0;
let paused: NodeJS.Timeout | undefined;
let reads = 0;
let cpuAtStart = 0;

const socket: net.Socket = net.createConnection({
  path: process.argv[2],
  onread: {
    buffer,
    callback: (size: number): boolean => {
      reads++;
      const now = performance.now();
      const inBurst = now - lastReadAt < BURST_READ_MS;
      lastReadAt = now;
      if (size === buffer.length || !inBurst) return true;
      if (!paused) {
        paused = setTimeout(() => {
          paused = undefined;
          lastReadAt = performance.now(); // as lib/salt/read-pacing.ts: what the pause kept is still the burst
          socket.resume();
        }, BURST_READ_MS);
      }
      return false;
    },
  },
});

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

serveParent((message) => {
  switch (message.type) {
    case 'start':
      cpuAtStart = cpuMicros();
      reads = 0;
      return {};
    case 'stop':
      setImmediate(() => process.exit(0));
      return { cpuMs: (cpuMicros() - cpuAtStart) / 1000, reads };
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
socket.once('connect', () => process.send!({ type: 'ready' }));
socket.once('error', (err) => {
  process.stderr.write(`bus floor: ${err.message}\n`);
  process.exit(1);
});
