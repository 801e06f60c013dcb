/**
 * The client dispatcher: one lowstate item in, one result out, as Salt's
 * salt/netapi/__init__.py (NetapiClient.run) does.
 *
 * STUB: signatures agreed between modules; the dispatcher work fills it in.
 */
import type { MasterOptions } from './salt/config.js';

/** One lowstate item: `client`, `fun`, credentials, and the client's own keys. */
export type Lowstate = Record<string, unknown>;

export const CLIENTS = [
  'local',
  'local_async',
  'local_subset',
  'local_batch',
  'runner',
  'runner_async',
  'wheel',
  'wheel_async',
  'ssh',
] as const;

export interface NetapiClientOptions {
  /** Request timeout towards the master for one request/reply, ms. */
  requestTimeoutMs?: number;
  /** Logger for job-level messages (never given secrets). */
  logger?: { debug(msg: string): void; info(msg: string): void; warn(msg: string): void; error(msg: string): void };
}

export class NetapiClient {
  constructor(opts: MasterOptions, options: NetapiClientOptions = {}) {
    throw new Error('not implemented');
  }
  /**
   * Every check of Salt's NetapiClient.run (master running, client known and
   * enabled, credentials present, raw_shell, token shape) plus `fun`; throws
   * the HttpError subclass of CONTRACT.md. `index` names the item in messages.
   */
  check(low: unknown, index?: number): asserts low is Lowstate {
    throw new Error('not implemented');
  }
  /** check() then run the item; `signal` aborts waiting (the job keeps running on the master). */
  run(low: unknown, signal?: AbortSignal): Promise<unknown> {
    throw new Error('not implemented');
  }
  /** Release the request channel and the event bus. */
  close(): void {
    throw new Error('not implemented');
  }
}
