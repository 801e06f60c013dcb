/**
 * What the request channels (zeromq, tcp, ws) do alike: a load becomes a
 * request waiting in PendingRequests, written when a connection takes it
 * (requests made in the same turn of the event loop in one flush); close()
 * fails everything that waits. Each transport's module says how a request is
 * framed, how the queue is written, and how its connections end; the stream
 * transports (zeromq, tcp) share their connection's lifecycle in
 * ./stream-channel.ts.
 */
import type { RequestChannel } from './channel.js';
import { ChannelClosedError } from './errors.js';
import type { PendingRequests } from './pending-requests.js';
import { positiveOr } from '../numbers.js';

export abstract class QueuedChannel implements RequestChannel {
  protected closed = false;
  protected abstract readonly requests: PendingRequests;
  /** Default per-request timeout, ms. */
  protected abstract readonly timeoutMs: number;
  private flushScheduled = false;
  /** Connections that came up, for monitoring (reconnects are the ones after the first). */
  protected connectCount = 0;

  /** Send `{enc: 'clear', load, version: 2}`; resolve with the decoded reply, whatever it is (clients interpret it). Rejects with RequestTimeoutError after the timeout, ChannelClosedError once closed. */
  send(load: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new ChannelClosedError('The request channel is closed'));
    const id = this.requests.nextId();
    let message: Buffer;
    try {
      message = this.frame(id, { enc: 'clear', load, version: 2 });
    } catch (err) {
      return Promise.reject(err); // a load the codec can't pack: nothing was queued
    }
    const reply = this.requests.enqueue(id, message, positiveOr(timeoutMs, this.timeoutMs));
    this.scheduleFlush();
    return reply;
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.requests.size;
  }

  abstract get connected(): boolean;

  /** Connections to the master that came up so far. */
  get connects(): number {
    return this.connectCount;
  }

  /** Reject everything pending and release the connection(s). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.requests.closeAll();
    this.release();
  }

  /**
   * Write what is queued once the current turn of the event loop is done:
   * requests made in the same turn (HTTP requests read together) go out in
   * one write. Without a connection nothing is scheduled: a connection that
   * comes up flushes.
   */
  protected scheduleFlush(): void {
    if (this.flushScheduled || !this.connected) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** The bytes of request `id` carrying `payload`, as this transport writes them. */
  protected abstract frame(id: number, payload: Record<string, unknown>): Buffer;
  /** Write what is queued, as much as the connection(s) take now. */
  protected abstract flush(): void;
  /** After close(): stop reconnecting and end the connection(s). */
  protected abstract release(): void;
}
