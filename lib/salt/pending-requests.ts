/**
 * The bookkeeping every request channel shares: each request waits under an
 * id with its own timer until its reply, its timeout, a dropped connection
 * or close() settles it, exactly once.
 */
import type { Socket } from 'node:net';
import { ChannelClosedError, ConnectionLostError, RequestTimeoutError } from './errors.js';

/**
 * Write queued requests (in order, each moved from `unsent` to `written`) in
 * one write, until the socket's own buffer is full: what stays queued can
 * still time out unsent; what Node buffers goes out whatever happens.
 * Returns whether the socket takes more now (else 'drain' resumes).
 */
export function writeQueued(socket: Socket, unsent: Map<number, Buffer>, written: Set<number>): boolean {
  const batch: Buffer[] = [];
  let bytes = 0;
  for (const [id, message] of unsent) {
    unsent.delete(id);
    written.add(id);
    batch.push(message);
    bytes += message.length;
    if (bytes + socket.writableLength >= socket.writableHighWaterMark) break;
  }
  return socket.write(batch.length === 1 ? batch[0] : Buffer.concat(batch, bytes));
}

interface Pending {
  resolve: (reply: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  timeoutMs: number;
}

export class PendingRequests {
  private readonly byId = new Map<number, Pending>();
  private lastId = 0;
  /** Encoded requests not yet written, in order (a Map: one that times out leaves it in O(1)). */
  readonly unsent = new Map<number, Buffer>();

  /**
   * @param address for messages
   * @param maxId ids run 1..maxId, then wrap (skipping ids still pending)
   * @param onExpire called after a request timed out (and left `unsent`), to drop it from the transport's own queues
   * @param why what the transport knows about why no reply came (no connection: the last connection error)
   */
  constructor(
    private readonly address: string,
    private readonly maxId: number,
    private readonly onExpire: (id: number) => void = () => {},
    private readonly why: () => string | undefined = () => undefined,
  ) {
    this.expire = this.expire.bind(this);
  }

  get size(): number {
    return this.byId.size;
  }

  has(id: number): boolean {
    return this.byId.has(id);
  }

  /** An id not in use (1..maxId, wrapping around), for the next add(). */
  nextId(): number {
    do this.lastId = this.lastId >= this.maxId ? 1 : this.lastId + 1;
    while (this.byId.has(this.lastId));
    return this.lastId;
  }

  /** Wait for the reply to request `id` (from nextId()): the promise its caller awaits. */
  add(id: number, timeoutMs: number): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(this.expire, timeoutMs, id);
      this.byId.set(id, { resolve, reject, timer, timeoutMs });
    });
  }

  /** add(), with the encoded request queued in `unsent` until the transport writes it. */
  enqueue(id: number, message: Buffer, timeoutMs: number): Promise<unknown> {
    const reply = this.add(id, timeoutMs);
    this.unsent.set(id, message);
    return reply;
  }

  /** Settle a request with its reply; false when it is no longer waited for (a late reply). */
  resolve(id: number, reply: unknown): boolean {
    const p = this.take(id);
    p?.resolve(reply);
    return p !== undefined;
  }

  reject(id: number, err: Error): boolean {
    const p = this.take(id);
    p?.reject(err);
    return p !== undefined;
  }

  /** The connection carrying these requests dropped: no reply to them can come. */
  lost(ids: Iterable<number>): void {
    let err: ConnectionLostError | undefined; // made only when a request was lost: a master down drops connections often
    for (const id of ids) {
      err ??= new ConnectionLostError(`The connection to the Salt master at ${this.address} dropped before it replied`);
      this.reject(id, err);
    }
  }

  /** close(): everything still waiting fails. */
  closeAll(): void {
    const err = new ChannelClosedError('The request channel was closed before the master replied');
    this.unsent.clear();
    for (const id of [...this.byId.keys()]) this.reject(id, err);
  }

  private take(id: number): Pending | undefined {
    const p = this.byId.get(id);
    if (!p) return undefined;
    this.byId.delete(id);
    clearTimeout(p.timer);
    return p;
  }

  private expire(id: number): void {
    const p = this.byId.get(id);
    if (!p) return;
    this.byId.delete(id);
    this.unsent.delete(id);
    this.onExpire(id);
    const why = this.why();
    p.reject(new RequestTimeoutError(`No reply from the Salt master at ${this.address} within ${p.timeoutMs} ms${why ? ` (${why})` : ''}`));
  }
}
