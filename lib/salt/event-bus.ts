/**
 * The master's event bus (<sock_dir>/master_event_pub.ipc, or TCP with
 * ipc_mode: tcp): a stream of msgpack `{head, body}` frames, body being
 * `tag\n\n` + packed data.
 *
 * STUB: signatures agreed between modules; the transport work fills it in.
 */
import { EventEmitter } from 'node:events';
import type { MasterOptions } from './config.js';

export interface SaltEvent {
  tag: string;
  data: any;
}

export interface EventBusOptions {
  /** Unix socket path of master_event_pub.ipc ... */
  path?: string;
  /** ... or TCP host and port (ipc_mode: tcp). */
  host?: string;
  port?: number;
  /** Delay between reconnection attempts. */
  reconnectMs?: number;
  /**
   * How long job events (salt/job/, salt/run/, salt/wheel/) are kept for
   * subscribers that arrive late: a client learns a jid only from the
   * publish reply, and a fast minion's return can be read from the bus
   * before that reply is. subscribe() replays retained matching events.
   */
  retainMs?: number;
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Options for the master's bus from its config. */
export function eventBusOptions(opts: MasterOptions): EventBusOptions {
  throw new Error('not implemented');
}

/** Emits 'connect' and 'disconnect'. Reconnects by itself until close(). */
export class EventBus extends EventEmitter {
  constructor(options: EventBusOptions) {
    super();
    throw new Error('not implemented');
  }
  /** Start connecting (idempotent). */
  start(): void {
    throw new Error('not implemented');
  }
  get connected(): boolean {
    throw new Error('not implemented');
  }
  /** Resolves once connected; rejects with TimeoutError after timeoutMs. */
  ready(timeoutMs: number): Promise<void> {
    throw new Error('not implemented');
  }
  /**
   * Call `listener` for each event whose tag equals `tagOrPrefix`, or starts
   * with it when it ends with '/'. Retained events that match are replayed
   * first (synchronously or on the next tick). Dispatch cost per event does
   * not grow with the number of subscriptions. Returns the unsubscribe function.
   */
  subscribe(tagOrPrefix: string, listener: (event: SaltEvent) => void): () => void {
    throw new Error('not implemented');
  }
  /** First event matching `tagOrPrefix` (as subscribe); TimeoutError after timeoutMs; AbortError if signal aborts. Unsubscribes in every case. */
  waitFor(tagOrPrefix: string, timeoutMs: number, signal?: AbortSignal): Promise<SaltEvent> {
    throw new Error('not implemented');
  }
  /** Live subscriptions (waitFor included): for leak tests. */
  get subscriptionCount(): number {
    throw new Error('not implemented');
  }
  close(): void {
    throw new Error('not implemented');
  }
}
