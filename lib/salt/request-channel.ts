/**
 * The master's request channel (ret_port): ZeroMQ, clear-text loads.
 *
 * STUB: signatures agreed between modules; the transport work fills it in.
 */
import type { MasterOptions } from './config.js';

export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
}
export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
}

export interface RequestChannelOptions {
  /** e.g. `tcp://127.0.0.1:4506` */
  address: string;
  /** Default per-request timeout. */
  timeoutMs?: number;
}

/** `tcp://<interface>:<ret_port>`, with 0.0.0.0 (and ::) meaning loopback. */
export function requestAddress(opts: MasterOptions): string {
  throw new Error('not implemented');
}

/** Many requests in flight on one connection; replies matched by correlation id. */
export class RequestChannel {
  constructor(options: RequestChannelOptions) {
    throw new Error('not implemented');
  }
  /** Send `{enc: 'clear', load, version: 2}`; resolve with the decoded reply, whatever it is (clients interpret it). Rejects with RequestTimeoutError after the timeout, ChannelClosedError once closed. */
  send(load: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    throw new Error('not implemented');
  }
  /** Requests waiting for a reply. */
  get pending(): number {
    throw new Error('not implemented');
  }
  /** Reject everything pending and release every socket. */
  close(): void {
    throw new Error('not implemented');
  }
}
