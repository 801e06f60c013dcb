/**
 * What the request channels (zeromq, tcp, ws) do alike: a load becomes a
 * request waiting in PendingRequests, written when a connection takes it;
 * close() fails everything that waits. Each transport's room says how a
 * request is framed, when the queue is written, and how its connections end.
 */
import { positive, type RequestChannel } from './channel.js';
import { ChannelClosedError } from './errors.js';
import type { PendingRequests } from './pending-requests.js';

export abstract class QueuedChannel implements RequestChannel {
  protected closed = false;
  protected abstract readonly requests: PendingRequests;
  /** Default per-request timeout, ms. */
  protected abstract readonly timeoutMs: number;

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
    const reply = this.requests.enqueue(id, message, positive(timeoutMs, this.timeoutMs));
    this.scheduleFlush();
    return reply;
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.requests.size;
  }

  abstract get connected(): boolean;

  /** Reject everything pending and release the connection(s). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.requests.closeAll();
    this.release();
  }

  /** The bytes of request `id` carrying `payload`, as this transport writes them. */
  protected abstract frame(id: number, payload: Record<string, unknown>): Buffer;
  /** Write what is queued once a connection can take it. */
  protected abstract scheduleFlush(): void;
  /** After close(): stop reconnecting and end the connection(s). */
  protected abstract release(): void;
}
