/**
 * The master's request channel on Salt's tcp transport (`transport: tcp`):
 * one TCP (or TLS, from the config's `ssl`) connection to ret_port carrying
 * framed messages (./tcp-frame.ts). The master handles each message as it
 * is read and answers under the request's `mid`
 * (salt/transport/tcp.py: SaltMessageServer.handle_stream), so any number of
 * requests are in flight on the one connection, matched by id.
 *
 * As the ZeroMQ channel does: requests wait in our own queue while there is
 * no connection, a request that times out before it is written is never
 * written, and the requests written to a connection that drops fail at once
 * (ConnectionLostError), since the master answers on the connection a
 * request came on.
 */
import net from 'node:net';
import tls from 'node:tls';
import { DEFAULT_RECONNECT_MS, DEFAULT_TIMEOUT_MS, hostPort, isSelfConnected, positive, type RequestChannelOptions } from './channel.js';
import { FrameStreamError } from './errors.js';
import { QueuedChannel } from './queued-channel.js';
import { PendingRequests, writeQueued } from './pending-requests.js';
import { FramedMessageReader, frameMessage, messageId, type FramedMessage } from './tcp-frame.js';

export interface TcpChannelOptions extends RequestChannelOptions {
  host: string;
  port: number;
  /** tls.connect options (./tls-options.ts); plain TCP without. */
  tls?: tls.ConnectionOptions;
  /** A connection not up (TLS included) within this is dropped and tried again (default 10 s). */
  connectTimeoutMs?: number;
}

/** Salt's RequestClient wraps its ids before 2^31 - 1 (salt/transport/tcp.py: _max_messages). */
const MAX_MESSAGE_ID = 2 ** 31 - 2;

/** A master that accepts the connection but doesn't finish TLS within this is dropped (as the ZeroMQ handshake). */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A reply larger than this is not one (the stream is broken): the connection is dropped. */
const MAX_REPLY_BYTES = 2 ** 31;

export class TcpRequestChannel extends QueuedChannel {
  readonly address: string;
  private readonly options: TcpChannelOptions;
  protected readonly timeoutMs: number;
  private readonly reconnectMs: number;
  protected readonly requests: PendingRequests;
  /** Requests written to the current connection and not yet answered. */
  private readonly written = new Set<number>();
  private readonly reader: FramedMessageReader;
  private socket: net.Socket | undefined;
  private ready = false;
  private flushScheduled = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private lastError: string | undefined;

  constructor(options: TcpChannelOptions) {
    super();
    this.options = options;
    this.address = `${options.tls ? 'tls' : 'tcp'}://${hostPort(options.host, options.port)}`;
    this.timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.reconnectMs = positive(options.reconnectMs, DEFAULT_RECONNECT_MS);
    this.requests = new PendingRequests(
      this.address,
      MAX_MESSAGE_ID,
      (id) => this.written.delete(id),
      () => (this.ready ? undefined : this.lastError && `not connected: ${this.lastError}`),
    );
    this.reader = new FramedMessageReader((message) => this.onReply(message), MAX_REPLY_BYTES);
    this.connect();
  }

  protected frame(id: number, payload: Record<string, unknown>): Buffer {
    return frameMessage(payload, { mid: id });
  }

  get connected(): boolean {
    return this.ready;
  }

  protected release(): void {
    clearTimeout(this.reconnectTimer);
    this.dropConnection();
  }

  // -- connection --------------------------------------------------------

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    const { host, port } = this.options;
    const secure = this.options.tls !== undefined;
    const socket = secure ? tls.connect({ ...this.options.tls, host, port }) : net.connect({ host, port });
    this.socket = socket;
    this.ready = false;
    this.reader.reset();
    socket.setNoDelay(true);
    const connectTimeoutMs = positive(this.options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
    this.connectTimer = setTimeout(() => {
      this.lastError = `no ${secure ? 'TLS handshake' : 'connection'} within ${connectTimeoutMs} ms`;
      this.dropConnection();
    }, connectTimeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (socket !== this.socket) return;
      if (isSelfConnected(socket)) {
        this.lastError = 'the connection met itself: nothing listens on the port';
        return this.dropConnection();
      }
      clearTimeout(this.connectTimer);
      this.ready = true;
      this.lastError = undefined;
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => {
      if (socket !== this.socket) return;
      try {
        this.reader.push(chunk);
      } catch (err) {
        if (!(err instanceof FrameStreamError)) throw err;
        this.lastError = `the master sent what is not Salt's framing (${err.message})`;
        this.dropConnection();
      }
    });
    socket.on('drain', () => {
      if (socket === this.socket) this.flush();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // 'close' follows. Kept for the timeout's message: a refused
      // connection, or a TLS handshake the master's certificate failed.
      if (socket === this.socket) this.lastError = err.code ? `${err.code}: ${err.message}` : err.message;
    });
    socket.on('close', () => {
      if (socket === this.socket) this.dropConnection();
    });
  }

  /** Forget the connection, fail the requests written to it (no reply can come), and retry later. */
  private dropConnection(): void {
    clearTimeout(this.connectTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.ready = false;
    socket?.destroy();
    this.requests.lost(this.written);
    this.written.clear();
    if (!this.closed && !this.reconnectTimer) this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectMs);
  }

  // -- requests ----------------------------------------------------------

  /** Requests made in the same turn of the event loop go out in one write. */
  protected scheduleFlush(): void {
    if (this.flushScheduled || !this.ready) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Write queued requests until the socket's buffer is full ('drain' resumes). */
  private flush(): void {
    const socket = this.socket;
    if (!this.ready || !socket || this.requests.unsent.size === 0) return;
    const more = writeQueued(socket, this.requests.unsent, this.written);
    if (more && this.requests.unsent.size > 0) this.scheduleFlush();
  }

  private onReply(message: FramedMessage | undefined): void {
    if (!message) return; // not a {head, body} message: nothing to match it to
    const id = messageId(message);
    if (id === undefined) return;
    this.written.delete(id);
    this.requests.resolve(id, message.body); // false: a late reply to a request that timed out
  }
}
