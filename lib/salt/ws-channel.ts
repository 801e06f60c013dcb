/**
 * The master's request channel on Salt's ws transport (`transport: ws`,
 * Salt 3007): WebSockets to ret_port (wss with the config's `ssl`), one
 * binary message per request, `payload.dumps({enc, load, version})`, and one
 * binary message back (salt/transport/ws.py: RequestServer.handle_message).
 *
 * There is no id on the wire: a master worker reads a connection's messages
 * one after another and answers each before reading the next, so replies
 * come back in the order requests were written. Many requests are written
 * to a connection at once and matched in order; a request that timed out
 * keeps its place until its late reply comes and is dropped. Since one slow
 * request holds up those behind it on its connection, a few connections are
 * kept (the master spreads connections over its workers) and each request
 * goes to the one with the fewest unanswered.
 *
 * WebSocket client: the `ws` package. Node 20's global WebSocket is behind
 * --experimental-websocket, and undici's takes no per-connection TLS client
 * certificate or CA options; `ws` takes node:tls options as they are.
 */
import type tls from 'node:tls';
import WebSocket from 'ws';
import { DEFAULT_RECONNECT_MS, DEFAULT_TIMEOUT_MS, hostPort, type RequestChannelOptions } from './channel.js';
import { decode, encode } from './codec.js';
import { QueuedChannel } from './queued-channel.js';
import { PendingRequests } from './pending-requests.js';
import { positiveOr } from '../numbers.js';

export interface WsChannelOptions extends RequestChannelOptions {
  host: string;
  port: number;
  /** node:tls options (./tls-options.ts): wss:// with them, ws:// without. */
  tls?: tls.ConnectionOptions;
  /** How many connections to keep (default 4). */
  connections?: number;
}

/** Ids are ours only (nothing on the wire): any range will do. */
const MAX_ID = 2 ** 31 - 2;
const MAX_REPLY_BYTES = 2 ** 31;

interface Connection {
  socket: WebSocket;
  ready: boolean;
  /** Ids written on it, oldest first: the next reply is the first one's. */
  written: number[];
  /** Where written[] starts (shifting an array per reply is O(n)). */
  head: number;
}

export class WsRequestChannel extends QueuedChannel {
  readonly address: string;
  private readonly options: WsChannelOptions;
  protected readonly timeoutMs: number;
  private readonly reconnectMs: number;
  protected readonly requests: PendingRequests;
  private readonly connections: Array<Connection | undefined>;
  private readonly reconnectTimers = new Set<NodeJS.Timeout>();
  private lastError: string | undefined;

  constructor(options: WsChannelOptions) {
    super();
    this.options = options;
    this.address = `${options.tls ? 'wss' : 'ws'}://${hostPort(options.host, options.port)}/`;
    this.timeoutMs = positiveOr(options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.reconnectMs = positiveOr(options.reconnectMs, DEFAULT_RECONNECT_MS);
    // A written request that times out stays in its connection's order: only unsent ones are dropped.
    this.requests = new PendingRequests(this.address, MAX_ID, undefined, () =>
      this.connected ? undefined : this.lastError && `not connected: ${this.lastError}`,
    );
    this.connections = Array.from({ length: Math.max(1, Math.floor(positiveOr(options.connections, 4))) }, () => undefined);
    for (let slot = 0; slot < this.connections.length; slot++) this.connect(slot);
  }

  protected frame(_id: number, payload: Record<string, unknown>): Buffer {
    return encode(payload); // one message each; replies come in order per connection
  }

  get connected(): boolean {
    return this.connections.some((c) => c?.ready);
  }

  protected release(): void {
    for (const timer of this.reconnectTimers) clearTimeout(timer);
    this.reconnectTimers.clear();
    for (let slot = 0; slot < this.connections.length; slot++) this.drop(slot);
  }

  // -- connections -------------------------------------------------------

  private connect(slot: number): void {
    if (this.closed) return;
    const socket = new WebSocket(this.address, {
      ...this.options.tls,
      perMessageDeflate: false, // loopback: compressing costs CPU and saves nothing
      maxPayload: MAX_REPLY_BYTES,
      handshakeTimeout: 10_000,
    });
    const conn: Connection = { socket, ready: false, written: [], head: 0 };
    this.connections[slot] = conn;
    socket.binaryType = 'nodebuffer';
    socket.on('open', () => {
      if (this.connections[slot] !== conn) return;
      conn.ready = true;
      this.connectCount++;
      this.lastError = undefined;
      this.flush();
    });
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.connections[slot] === conn && isBinary) this.onReply(conn, data);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // 'close' follows; kept for the timeout's message (refused, TLS, not a WebSocket server).
      if (this.connections[slot] === conn) this.lastError = err.code ? `${err.code}: ${err.message}` : err.message;
    });
    socket.on('close', () => {
      if (this.connections[slot] !== conn) return;
      this.drop(slot);
      if (this.closed) return;
      const timer = setTimeout(() => {
        this.reconnectTimers.delete(timer);
        this.connect(slot);
      }, this.reconnectMs);
      this.reconnectTimers.add(timer);
    });
  }

  /** Forget a connection and fail the requests written to it: no reply to them can come. */
  private drop(slot: number): void {
    const conn = this.connections[slot];
    if (!conn) return;
    this.connections[slot] = undefined;
    conn.ready = false;
    conn.socket.terminate();
    this.requests.lost(conn.written.slice(conn.head));
  }

  // -- requests ----------------------------------------------------------

  /** Write every queued request, each to the ready connection with the fewest unanswered. */
  protected flush(): void {
    const ready = this.connections.filter((c): c is Connection => c?.ready === true);
    if (ready.length === 0) return;
    for (const [id, message] of this.requests.unsent) {
      this.requests.unsent.delete(id);
      let conn = ready[0];
      for (const c of ready) if (c.written.length - c.head < conn.written.length - conn.head) conn = c;
      conn.written.push(id);
      conn.socket.send(message, { binary: true });
    }
  }

  private onReply(conn: Connection, data: Buffer): void {
    if (conn.head >= conn.written.length) return; // nothing asked: not a reply
    const id = conn.written[conn.head++];
    if (conn.head === conn.written.length) {
      conn.written = [];
      conn.head = 0;
    } else if (conn.head > 1024 && conn.head * 2 > conn.written.length) {
      conn.written = conn.written.slice(conn.head);
      conn.head = 0;
    }
    if (!this.requests.has(id)) return; // a late reply to a request that timed out
    let reply: unknown;
    try {
      reply = decode(data);
    } catch (err) {
      this.requests.reject(id, new Error(`Undecodable reply from the master: ${(err as Error).message}`));
      return;
    }
    this.requests.resolve(id, reply);
  }
}
