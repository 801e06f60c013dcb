/**
 * The master's event bus (<sock_dir>/master_event_pub.ipc, or TCP with
 * ipc_mode: tcp): a stream of msgpack `{head, body}` frames, body being
 * `tag\n\n` + packed data (salt/utils/event.py: SaltEvent.pack/unpack).
 *
 * This module holds the connection (reconnecting until close()) and the
 * reading: frames cut by ./frame-scanner.ts, matched against
 * ./event-subscriptions.ts, kept by ./event-retention.ts. Events nobody waits
 * for are never decoded: unrelated traffic is dropped, and job events are
 * kept as bytes, while some caller holds the bus (hold()), until a late
 * subscriber asks for them.
 *
 * Nobody subscribed and nobody holding, as under a stream of local_async
 * jobs, the bus only has to be drained: its frames are only cut, never
 * looked into. How often it is read is ./read-pacing.ts's.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { EventBusClosedError, EventBusTimeoutError } from './errors.js';
import { JOB_TAG, Retention, decodeEvent, tagEnd } from './event-retention.js';
import { Subscriptions, type EventListener } from './event-subscriptions.js';
import { FrameScanner, frameBody, type Span } from './frame-scanner.js';
import { ReadPacing } from './read-pacing.js';
import {
  DEFAULT_BUSY_READ_MS,
  DEFAULT_IDLE_READ_MS,
  DEFAULT_RECONNECT_MS,
  DEFAULT_RETAIN_MAX,
  DEFAULT_RETAIN_MS,
  nonNegative,
  type EventBusOptions,
} from './event-bus-options.js';

export type { SaltEvent } from './event-retention.js';
export type { EventListener } from './event-subscriptions.js';
export { eventBusOptions, type EventBusOptions } from './event-bus-options.js';

/** Bytes read per read(2); while reads fill it, the socket is read on before pausing. */
const READ_BUFFER_BYTES = 64 * 1024;

/** Emits 'connect' and 'disconnect'. Reconnects by itself until close(). */
export class EventBus extends EventEmitter {
  private readonly where: string;
  private readonly connectOptions: net.NetConnectOpts;
  private readonly reconnectMs: number;
  private readonly scanner = new FrameScanner();
  private readonly pacing: ReadPacing;
  /** Reused by every read: the scanner copies what it keeps. */
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  /** Where the frame being read keeps its body (frameBody writes it: no object per event). */
  private readonly body: Span = { start: 0, end: 0 };
  private socket: net.Socket | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private isConnected = false;
  /** Reads so far, and whether the last one filled the read buffer (more was likely waiting): for settle(). */
  private reads = 0;
  /** For monitoring: connections made, frames and bytes read (every event, also those nobody listens to). */
  private connectCount = 0;
  private framesRead = 0;
  private bytesReadCount = 0;
  private lastReadFull = false;
  private readonly readyWaiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();

  private readonly retention: Retention;
  private readonly subscriptions: Subscriptions;
  /** Callers between hold() and its release: job events are retained meanwhile. */
  private holds = 0;

  constructor(options: EventBusOptions) {
    super();
    // Every job in flight may watch 'disconnect': many listeners are normal here.
    this.setMaxListeners(0);
    if (options?.path) {
      this.connectOptions = { path: options.path };
      this.where = options.path;
    } else if (options?.port && Number.isInteger(options.port)) {
      const host = options.host || '127.0.0.1';
      this.connectOptions = { host, port: options.port };
      this.where = `${host}:${options.port}`;
    } else {
      throw new TypeError('EventBus needs a socket path, or a host and port');
    }
    this.reconnectMs = nonNegative(options.reconnectMs, DEFAULT_RECONNECT_MS) || DEFAULT_RECONNECT_MS;
    this.retention = new Retention(nonNegative(options.retainMs, DEFAULT_RETAIN_MS), nonNegative(options.retainMax, DEFAULT_RETAIN_MAX));
    this.subscriptions = new Subscriptions(this.retention, (err, event) => {
      if (this.listenerCount('listenerError') > 0) this.safeEmit('listenerError', err, event);
    });
    this.pacing = new ReadPacing(
      nonNegative(options.idleReadMs, DEFAULT_IDLE_READ_MS),
      nonNegative(options.busyReadMs, DEFAULT_BUSY_READ_MS),
      () => {
        if (this.socket && !this.socket.destroyed) this.socket.resume();
      },
    );
  }

  /** Start connecting (idempotent). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connect();
  }

  get connected(): boolean {
    return this.isConnected;
  }

  /** Resolves once connected; rejects with EventBusTimeoutError after timeoutMs. Starts the bus if it isn't. */
  ready(timeoutMs: number): Promise<void> {
    if (this.isConnected) return Promise.resolve();
    if (this.closed) return Promise.reject(new EventBusClosedError('The event bus is closed'));
    this.start();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.readyWaiters.delete(waiter);
        reject(new EventBusTimeoutError(`Not connected to the Salt master's event bus at ${this.where} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.readyWaiters.add(waiter);
    });
  }

  /**
   * Call `listener` for each event whose tag equals `tagOrPrefix`, or starts
   * with it when it ends with '/' (`listener`: a function, or an object whose
   * onEvent() hears them). Retained events that match are replayed
   * first (synchronously or on the next tick). Dispatch cost per event does
   * not grow with the number of subscriptions. Returns the unsubscribe function.
   */
  subscribe(tagOrPrefix: string, listener: EventListener): () => void {
    if (typeof tagOrPrefix !== 'string' || tagOrPrefix === '') throw new TypeError('subscribe needs a tag or a tag prefix');
    if (this.closed) return () => {};
    const unsubscribe = this.subscriptions.add(tagOrPrefix, listener);
    // Events for it may be waiting unread in the socket.
    this.pacing.resumeNow();
    return unsubscribe;
  }

  /**
   * Keep job events for late subscribers until the returned function is
   * called (once; later calls do nothing). A synchronous call holds the bus
   * from before its request to the master, whose reply names the job it
   * then subscribes to, until it is done. With no holder, job events are
   * not kept, and the last release forgets those that were.
   */
  hold(): () => void {
    if (this.closed) return () => {};
    this.holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.holds === 0) this.retention.clear();
    };
  }

  /**
   * Resolves once what the socket holds now has been read and dispatched:
   * after at least one turn of the event loop's I/O phase, and then as long
   * as each turn read a full buffer (a backlog). A waiter about to give up
   * on a minion calls it first, so that a return already sent counts.
   */
  settle(): Promise<void> {
    this.pacing.resumeNow();
    return new Promise((resolve) => {
      let reads = this.reads;
      const check = (): void => {
        if (this.socket && this.lastReadFull && this.reads !== reads) {
          reads = this.reads;
          setImmediate(check);
        } else resolve();
      };
      setImmediate(check);
    });
  }

  /** Live subscriptions: for leak tests. */
  get subscriptionCount(): number {
    return this.subscriptions.count;
  }

  /** Reads of the socket so far (a burst is read once per busyReadMs): for tests. */
  get readCount(): number {
    return this.reads;
  }

  /** Connections to the master's event bus that came up so far (reconnects are those after the first). */
  get connects(): number {
    return this.connectCount;
  }

  /** Events (frames) read from the bus so far, and their bytes. */
  get eventsRead(): number {
    return this.framesRead;
  }

  get bytesRead(): number {
    return this.bytesReadCount;
  }

  /** Job events currently kept for late subscribers. */
  get retainedCount(): number {
    return this.retention.size;
  }

  /** close() was called: nothing will come any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.pacing.cancel();
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
    this.scanner.reset();
    const err = new EventBusClosedError('The event bus was closed');
    for (const waiter of this.readyWaiters) waiter.reject(err);
    this.readyWaiters.clear();
    this.subscriptions.clear();
    this.holds = 0;
    this.retention.clear();
    if (this.isConnected) {
      this.isConnected = false;
      this.safeEmit('disconnect');
    }
    this.safeEmit('close');
  }

  // -- connection --------------------------------------------------------

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    const socket: net.Socket = net.createConnection({
      ...this.connectOptions,
      onread: { buffer: this.readBuffer, callback: (size: number, buf: Uint8Array): boolean => this.onRead(socket, size, buf) },
    });
    this.socket = socket;
    socket.on('connect', () => {
      if (socket !== this.socket) return;
      this.isConnected = true;
      this.connectCount++;
      for (const waiter of this.readyWaiters) waiter.resolve();
      this.readyWaiters.clear();
      this.safeEmit('connect');
    });
    socket.on('error', () => {
      // 'close' follows; a missing socket file or a refused connection just
      // means the master isn't (back) up yet.
    });
    socket.on('close', () => {
      if (socket !== this.socket) return;
      this.socket = undefined;
      this.pacing.cancel();
      this.scanner.reset();
      if (this.isConnected) {
        this.isConnected = false;
        this.safeEmit('disconnect');
      }
      if (!this.closed) this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectMs);
    });
  }

  /** Returns false to pause reading (net's onread contract). */
  private onRead(socket: net.Socket, size: number, buf: Uint8Array): boolean {
    if (socket !== this.socket) return true;
    this.reads++;
    this.bytesReadCount += size;
    this.lastReadFull = size === buf.length;
    try {
      this.scanner.push(buf.subarray(0, size), this.onFrame);
    } catch {
      // Not a msgpack stream (or a runaway frame): start over on a new connection.
      socket.destroy();
      return true;
    }
    if (socket.destroyed) return true;
    return this.pacing.readOn(size === buf.length, this.subscriptions.count > 0);
  }

  // -- frames and events -------------------------------------------------

  /** A frame at `buf[start..end)`: its body is `tag\n\n` then the packed data (salt/utils/event.py, SaltEvent.pack). */
  private readonly onFrame = (buf: Buffer, start: number, end: number): void => {
    this.framesRead++;
    if (this.subscriptions.count === 0 && this.holds === 0) return; // nobody to give it to, nor to keep it for
    const body = this.body;
    if (!frameBody(buf, start, end, body)) return;
    const sep = tagEnd(buf, body.start, body.end);
    if (sep < 0) return;
    const tag = buf.toString('utf8', body.start, sep);
    const job = this.holds > 0 && this.retention.enabled ? JOB_TAG.exec(tag)?.[0] : undefined;
    const matched = this.subscriptions.match(tag);
    if (!job && !matched) return; // unrelated traffic: never decoded
    // Decoded at once, it needs no copy of the scanner's reused buffer (the
    // codec copies bin values out); kept as bytes for later, it does.
    const event = matched ? decodeEvent(tag, buf, sep + 2, body.end) : undefined;
    if (job) this.retention.add(tag, job, event ? undefined : Buffer.copyBytesFrom(buf, sep + 2, body.end - sep - 2), event);
    if (event && matched) this.subscriptions.dispatch(event, matched);
  };

  private safeEmit(name: string, ...args: unknown[]): void {
    try {
      this.emit(name, ...args);
    } catch {
      // A throwing 'connect'/'disconnect' handler must not break the socket.
    }
  }
}
