/**
 * A request channel over one stream connection to ret_port, as the zeromq
 * (./zmq-channel.ts) and tcp (./tcp-channel.ts) transports have it: many
 * requests in flight on the connection, each reply matched by its request's
 * id. The connection's lifecycle lives here once, as undici's DispatcherBase
 * holds a dispatcher's: the queue written as the socket takes it, the
 * requests written to the connection (`written`), dropping a connection
 * (those requests fail at once with ConnectionLostError: the master answers
 * on the connection a request came on), and the reconnect timer. Requests
 * wait in our own queue while there is no connection, and one that times out
 * before it is written is never written (as a ZeroMQ DEALER set `immediate`).
 *
 * A transport says only how it connects (open), when the connection may
 * carry requests (up), how it frames a request (frame) and reads the stream
 * (read).
 */
import type net from 'node:net';
import { DEFAULT_RECONNECT_MS, DEFAULT_TIMEOUT_MS, isSelfConnected, type RequestChannelOptions } from './channel.js';
import { PendingRequests, writeQueued } from './pending-requests.js';
import { QueuedChannel } from './queued-channel.js';
import { positiveOr } from '../numbers.js';

/** A connection being made: its socket, and the event that says it is connected. */
export interface Opened {
  socket: net.Socket;
  connectEvent: 'connect' | 'secureConnect';
}

export abstract class StreamChannel extends QueuedChannel {
  /** Where the channel connects, for messages (`tcp://host:port`, `tls://...`). */
  readonly address: string;
  protected readonly timeoutMs: number;
  protected readonly requests: PendingRequests;
  /** The current connection, while there is one. */
  protected socket: net.Socket | undefined;
  private readonly reconnectMs: number;
  /** Requests written to the current connection and not yet answered. */
  private readonly written = new Set<number>();
  private ready = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private upTimer: NodeJS.Timeout | undefined;
  /** Why the last connection failed, for a timeout's message. */
  private lastError: string | undefined;

  /** @param maxId request ids run 1..maxId (the transport's id field) */
  constructor(address: string, maxId: number, options: RequestChannelOptions) {
    super();
    this.address = address;
    this.timeoutMs = positiveOr(options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.reconnectMs = positiveOr(options.reconnectMs, DEFAULT_RECONNECT_MS);
    this.requests = new PendingRequests(
      address,
      maxId,
      (id) => this.written.delete(id),
      () => (this.ready ? undefined : this.lastError && `not connected: ${this.lastError}`),
    );
  }

  get connected(): boolean {
    return this.ready;
  }

  // -- what each transport says ------------------------------------------

  /** Start a connection (its stream parser reset). */
  protected abstract open(): Opened;
  /** The socket connected: call up() once it may carry requests (at once, or after a handshake). */
  protected abstract onConnect(socket: net.Socket): void;
  /** Bytes from the master; a stream that can't be read calls drop(why). */
  protected abstract read(chunk: Buffer): void;

  // -- for the transport -------------------------------------------------

  /** Start the connection on its way (call this last in the subclass's constructor). */
  protected start(): void {
    this.connect();
  }

  /** The connection may carry requests: write what waits. */
  protected up(): void {
    clearTimeout(this.upTimer);
    this.ready = true;
    this.connectCount++;
    this.lastError = undefined;
    this.flush();
  }

  /** Drop the connection unless up() comes within `ms`; `why` is the timeout's message. */
  protected upWithin(ms: number, why: string): void {
    clearTimeout(this.upTimer);
    this.upTimer = setTimeout(() => this.drop(why), ms);
  }

  /** A request's reply came: it no longer waits on this connection. False when nobody waits for it (a late reply). */
  protected answered(id: number): boolean {
    this.written.delete(id);
    return this.requests.has(id);
  }

  /** Forget the connection, fail the requests written to it (no reply can come), and retry later. */
  protected drop(why?: string): void {
    if (why !== undefined) this.lastError = why;
    clearTimeout(this.upTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.ready = false;
    socket?.destroy();
    this.requests.lost(this.written);
    this.written.clear();
    if (!this.closed && !this.reconnectTimer) this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectMs);
  }

  // -- the lifecycle -----------------------------------------------------

  protected release(): void {
    clearTimeout(this.reconnectTimer);
    this.drop();
  }

  /** Write queued requests until the socket's buffer is full ('drain' resumes). */
  protected flush(): void {
    const socket = this.socket;
    if (!this.ready || !socket || this.requests.unsent.size === 0) return;
    const more = writeQueued(socket, this.requests.unsent, this.written);
    if (more && this.requests.unsent.size > 0) this.scheduleFlush();
  }

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    const { socket, connectEvent } = this.open();
    this.socket = socket;
    this.ready = false;
    socket.setNoDelay(true);
    socket.once(connectEvent, () => {
      if (socket !== this.socket) return;
      if (isSelfConnected(socket)) return this.drop('the connection met itself: nothing listens on the port');
      this.onConnect(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      if (socket === this.socket) this.read(chunk);
    });
    // A write to a dropped connection waits in Node until 'drain' (never, here) or fails: either way 'close' follows.
    socket.on('drain', () => {
      if (socket === this.socket) this.flush();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // 'close' follows. Kept for the timeout's message: a refused
      // connection (the master isn't (back) up yet), or a TLS handshake the
      // master's certificate failed.
      if (socket === this.socket) this.lastError = err.code ? `${err.code}: ${err.message}` : err.message;
    });
    socket.on('close', () => {
      if (socket === this.socket) this.drop();
    });
  }
}
