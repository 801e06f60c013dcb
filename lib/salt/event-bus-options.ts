/**
 * What the event bus (./event-bus.ts) is given: where the master's bus is,
 * and how it is read and retained, with the defaults.
 */
import type { MasterOptions } from './config.js';
import { eventBusSocketFile } from './master-sockets.js';

export interface EventBusOptions {
  /** Unix socket path of master_event_pub.ipc ... */
  path?: string;
  /** ... or TCP host and port (ipc_mode: tcp). */
  host?: string;
  port?: number;
  /** Delay between reconnection attempts (default 100 ms). */
  reconnectMs?: number;
  /**
   * How long job events (salt/job/, salt/run/, salt/wheel/) are kept, while
   * the bus is held, for subscribers that arrive late: a client learns a jid
   * only from the publish reply, and a fast minion's return can be read from
   * the bus before that reply is. subscribe() replays retained matching
   * events. Default 3000 ms; 0 keeps nothing.
   */
  retainMs?: number;
  /** At most this many job events are kept (the oldest go first; default 2000). */
  retainMax?: number;
  /**
   * While nobody is subscribed, events only feed retention, so the socket is
   * read at most once per this many ms instead of once per event: under a
   * stream of local_async jobs that saves a wakeup per job. A subscription
   * resumes reading at once. Default 10 ms; 0 reads every event as it comes.
   */
  idleReadMs?: number;
  /**
   * While events come faster than one per this many ms, the socket is read
   * once per this many ms rather than once per event: each read(2) and
   * wakeup costs about as much as decoding the events it brings, and a
   * fleet's burst of returns would pay it per return. An event after a
   * quiet spell is read at once. Default 10 ms: a real master's bus brings
   * a fleet's returns about 5,000 a second, and each read with its wakeup
   * costs a small VM 100-150 µs (the kernel's per-message work included),
   * so that once per 4 ms paid 4-5 µs a return in wakeups alone (npm run
   * bench -- --only real-scale, beside its bare reader). A line of a
   * streamed answer waits at most 10 ms more for it (its target is 50 ms).
   * 0 reads every event as it comes.
   */
  busyReadMs?: number;
}

export const DEFAULT_RECONNECT_MS = 100;
export const DEFAULT_RETAIN_MS = 3000;
export const DEFAULT_RETAIN_MAX = 2000;
export const DEFAULT_IDLE_READ_MS = 10;
export const DEFAULT_BUSY_READ_MS = 10;
/** Options for the master's bus from its config. */
export function eventBusOptions(opts: MasterOptions): EventBusOptions {
  // salt/utils/event.py SaltEvent.__load_uri, node 'master'.
  if (opts.ipc_mode === 'tcp') return { host: '127.0.0.1', port: Number(opts.tcp_master_pub_port) };
  return { path: eventBusSocketFile(opts) };
}

/** `value` if it is a finite number >= 0, else `fallback`. */
export function nonNegative(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback;
}
