/**
 * The master's request channel (ret_port): ZeroMQ, clear-text loads.
 *
 * Salt's own clients use a REQ socket: one request at a time, and a lost
 * reply leaves it stuck. The master's front is ROUTER → DEALER → REP workers,
 * and a REP worker hands back whatever envelope came before the empty
 * delimiter frame, so one DEALER can carry any number of requests at once:
 * send `[id, '', load]`, get `[id, '', reply]` back in completion order
 * (salt/transport/zeromq.py: RequestServer.zmq_device, the workers' REP
 * sockets). One connection, a Map of pending ids.
 *
 * The DEALER side of ZeroMQ's protocol is spoken here over a node:net
 * socket (./zmtp.ts says why). As with a ZeroMQ DEALER set `immediate`,
 * requests wait in our own queue while there is no connection, and a request
 * that times out before it is written is dropped: it never reaches a
 * restarted master after we gave up on it.
 */
import net from 'node:net';
import { DEFAULT_RECONNECT_MS, DEFAULT_TIMEOUT_MS, isSelfConnected, positive } from './channel.js';
import type { MasterOptions } from './config.js';
import { decode, encode } from './codec.js';
import { ChannelClosedError, ConnectionLostError, RequestTimeoutError, ZmtpError } from './errors.js';
import { QueuedChannel } from './queued-channel.js';
import { PendingRequests, writeQueued } from './pending-requests.js';
import {
  FrameReader,
  GREETING_SIZE,
  checkGreeting,
  command,
  encodeMessage,
  greeting,
  parseCommand,
  parseMetadata,
  readyCommand,
} from './zmtp.js';

export { ChannelClosedError, ConnectionLostError, RequestTimeoutError };

export interface RequestChannelOptions {
  /** e.g. `tcp://127.0.0.1:4506` */
  address: string;
  /** Default per-request timeout. */
  timeoutMs?: number;
  /** How often the connection is retried while the master is away (default 100 ms). */
  reconnectMs?: number;
}

/** A peer that accepts the connection but doesn't finish the handshake within this is dropped (libzmq: 30 s). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Socket types a DEALER may talk to (ZMTP 3: 28/REQREP). */
const PEER_TYPES = new Set(['ROUTER', 'DEALER', 'REP']);

const EMPTY = Buffer.alloc(0);

/** `tcp://<interface>:<ret_port>`, with 0.0.0.0 (and ::) meaning loopback. */
export function requestAddress(opts: MasterOptions): string {
  let host = String(opts.interface);
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '::1';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `tcp://${host}:${opts.ret_port}`;
}

/** net.connect options of a `tcp://host:port` or `ipc:///path` address. */
function connectOptions(address: string): net.NetConnectOpts {
  if (address.startsWith('ipc://')) return { path: address.slice('ipc://'.length) };
  const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)$/.exec(address);
  if (!m) throw new TypeError(`RequestChannel needs tcp://host:port or ipc://path, got ${JSON.stringify(address)}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

type ConnectionState = 'down' | 'connecting' | 'greeting' | 'handshake' | 'ready';

/** Many requests in flight on one connection; replies matched by correlation id. */
export class ZmqRequestChannel extends QueuedChannel {
  readonly address: string;
  protected readonly timeoutMs: number;
  private readonly reconnectMs: number;
  private readonly connectTo: net.NetConnectOpts;
  protected readonly requests: PendingRequests;
  /** Requests written to the current connection and not yet answered. */
  private readonly written = new Set<number>();
  private socket: net.Socket | undefined;
  private state: ConnectionState = 'down';
  private readonly reader: FrameReader;
  private greetingBytes: Buffer[] = [];
  private greetingSize = 0;
  private flushScheduled = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;

  constructor(options: RequestChannelOptions) {
    super();
    if (typeof options?.address !== 'string' || !/^(tcp|ipc):\/\/./.test(options.address)) {
      throw new TypeError(`RequestChannel needs a tcp:// or ipc:// address, got ${JSON.stringify(options?.address)}`);
    }
    this.address = options.address;
    this.connectTo = connectOptions(options.address);
    this.timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.reconnectMs = positive(options.reconnectMs, DEFAULT_RECONNECT_MS);
    // Correlation ids are 32 bits (the first frame of each message).
    this.requests = new PendingRequests(this.address, 0xffff_ffff, (id) => this.written.delete(id));
    this.reader = new FrameReader({ message: (frames) => this.onReply(frames), command: (body) => this.onCommand(body) });
    this.connect();
  }

  protected frame(id: number, payload: Record<string, unknown>): Buffer {
    const idFrame = Buffer.allocUnsafe(4);
    idFrame.writeUInt32BE(id);
    return encodeMessage([idFrame, EMPTY, encode(payload)]);
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  protected release(): void {
    clearTimeout(this.reconnectTimer);
    this.dropConnection();
  }

  // -- connection --------------------------------------------------------

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    const socket = net.connect(this.connectTo);
    this.socket = socket;
    this.state = 'connecting';
    this.greetingBytes = [];
    this.greetingSize = 0;
    this.reader.reset();
    socket.setNoDelay(true);
    socket.on('connect', () => {
      if (socket !== this.socket) return;
      if (isSelfConnected(socket)) return this.dropConnection();
      this.state = 'greeting';
      // Our side of the handshake at once; the peer's comes in 'data'.
      socket.write(Buffer.concat([greeting(), readyCommand('DEALER')]));
      this.handshakeTimer = setTimeout(() => this.dropConnection(), HANDSHAKE_TIMEOUT_MS);
    });
    socket.on('data', (chunk: Buffer) => {
      if (socket !== this.socket) return;
      try {
        this.onData(chunk);
      } catch (err) {
        if (!(err instanceof ZmtpError)) throw err;
        this.dropConnection(); // not a master we can talk to: try again later
      }
    });
    // A write to a dropped connection waits in Node until 'drain' (never, here) or fails: either way 'close' follows.
    socket.on('drain', () => {
      if (socket === this.socket) this.flush();
    });
    socket.on('error', () => {
      // 'close' follows; a refused connection just means the master isn't (back) up yet.
    });
    socket.on('close', () => {
      if (socket !== this.socket) return;
      this.dropConnection();
    });
  }

  /** Forget the connection, fail the requests written to it (no reply can come), and retry later. */
  private dropConnection(): void {
    clearTimeout(this.handshakeTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.state = 'down';
    socket?.destroy();
    this.requests.lost(this.written);
    this.written.clear();
    if (!this.closed && !this.reconnectTimer) this.reconnectTimer = setTimeout(() => this.connect(), this.reconnectMs);
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'greeting') {
      this.greetingBytes.push(chunk);
      this.greetingSize += chunk.length;
      if (this.greetingSize < GREETING_SIZE) return;
      const bytes = Buffer.concat(this.greetingBytes, this.greetingSize);
      this.greetingBytes = [];
      checkGreeting(bytes);
      this.state = 'handshake';
      if (bytes.length === GREETING_SIZE) return;
      chunk = bytes.subarray(GREETING_SIZE);
    }
    this.reader.push(chunk);
  }

  private onCommand(body: Buffer): void {
    const { name, data } = parseCommand(body);
    if (name === 'READY' && this.state === 'handshake') {
      const peerType = parseMetadata(data).get('socket-type');
      if (peerType !== undefined && !PEER_TYPES.has(peerType)) throw new ZmtpError(`A DEALER can't talk to a ${peerType}`);
      clearTimeout(this.handshakeTimer);
      this.state = 'ready';
      this.flush();
    } else if (name === 'ERROR') {
      throw new ZmtpError(`The peer refused the connection: ${data.toString('latin1', 1, 1 + (data[0] ?? 0))}`);
    } else if (name === 'PING') {
      // ZMTP 3.1 heartbeat: PONG carries the ping's context back.
      this.socket?.write(command('PONG', data.subarray(2)));
    }
  }

  // -- requests ----------------------------------------------------------

  /**
   * Write what is queued once the current turn of the event loop is done:
   * requests made in the same turn (HTTP requests read together) go out in
   * one write.
   */
  protected scheduleFlush(): void {
    if (this.flushScheduled || this.state !== 'ready') return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Write queued requests until the socket's buffer is full ('drain' resumes). */
  private flush(): void {
    const socket = this.socket;
    if (this.state !== 'ready' || !socket || this.requests.unsent.size === 0) return;
    const more = writeQueued(socket, this.requests.unsent, this.written);
    if (more && this.requests.unsent.size > 0) this.scheduleFlush();
  }

  private onReply(frames: Buffer[]): void {
    // [id, '', reply]; anything else is not an answer to us.
    if (frames.length !== 3 || frames[0].length !== 4 || frames[1].length !== 0) return;
    const id = frames[0].readUInt32BE(0);
    if (!this.requests.has(id)) return; // a late reply to a request that timed out
    this.written.delete(id);
    let reply: unknown;
    try {
      reply = decode(frames[2]);
    } catch (err) {
      this.requests.reject(id, new Error(`Undecodable reply from the master: ${(err as Error).message}`));
      return;
    }
    this.requests.resolve(id, reply);
  }
}
