/**
 * The master's request channel (ret_port): ZeroMQ, clear-text loads.
 *
 * Salt's own clients use a REQ socket: one request at a time, and a lost
 * reply leaves it stuck. The master's front is ROUTER → DEALER → REP workers,
 * and a REP worker hands back whatever envelope came before the empty
 * delimiter frame, so one DEALER can carry any number of requests at once:
 * send `[id, '', load]`, get `[id, '', reply]` back in completion order
 * (PROTOCOL.md §1). One socket, one receive loop, a Map of pending ids.
 */
import { Dealer } from 'zeromq';
import type { MasterOptions } from './config.js';
import { decode, encode } from './codec.js';

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
  /** How often ZeroMQ retries the connection while the master is away (default 100 ms). */
  reconnectMs?: number;
}

/** Salt's default `timeout` (5 s) when the caller gives none. */
const DEFAULT_TIMEOUT_MS = 5000;

/**
 * How long one attempt to hand a message to ZeroMQ may wait (ZMQ_SNDTIMEO),
 * at most. zeromq's send() waits while the message can't be queued (master
 * down, or the high-water mark reached); waiting in slices, the last one
 * ending at the request's deadline, lets a request that timed out be dropped
 * instead of reaching the master late.
 */
const SEND_SLICE_MS = 50;

/** Messages ZeroMQ may queue for the master before send() has to wait. */
const SEND_HIGH_WATER_MARK = 10_000;

const EMPTY = Buffer.alloc(0);

/** `tcp://<interface>:<ret_port>`, with 0.0.0.0 (and ::) meaning loopback. */
export function requestAddress(opts: MasterOptions): string {
  let host = String(opts.interface);
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '::1';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `tcp://${host}:${opts.ret_port}`;
}

interface Pending {
  resolve: (reply: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  timeoutMs: number;
  /** performance.now() when it times out. */
  deadline: number;
  /** The message, until ZeroMQ has taken it. */
  frames: Buffer[] | undefined;
}

/** Many requests in flight on one connection; replies matched by correlation id. */
export class RequestChannel {
  readonly address: string;
  private readonly timeoutMs: number;
  private readonly reconnectMs: number;
  private socket: Dealer;
  private readonly pendingById = new Map<number, Pending>();
  /** Ids waiting for their turn to be handed to ZeroMQ (send() allows one waiting call). */
  private readonly outbox: number[] = [];
  private outboxHead = 0;
  private sending = false;
  /** The socket's current ZMQ_SNDTIMEO. */
  private sendWait = SEND_SLICE_MS;
  private lastId = 0;
  private closed = false;

  constructor(options: RequestChannelOptions) {
    if (typeof options?.address !== 'string' || !/^(tcp|ipc):\/\/./.test(options.address)) {
      throw new TypeError(`RequestChannel needs a tcp:// or ipc:// address, got ${JSON.stringify(options?.address)}`);
    }
    this.address = options.address;
    this.timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.reconnectMs = positive(options.reconnectMs, 100);
    this.expire = this.expire.bind(this);
    this.socket = this.openSocket();
  }

  /** Send `{enc: 'clear', load, version: 2}`; resolve with the decoded reply, whatever it is (clients interpret it). Rejects with RequestTimeoutError after the timeout, ChannelClosedError once closed. */
  send(load: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new ChannelClosedError('The request channel is closed'));
    let payload: Buffer;
    try {
      payload = encode({ enc: 'clear', load, version: 2 });
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.newId();
    const idFrame = Buffer.allocUnsafe(4);
    idFrame.writeUInt32BE(id);
    const ms = positive(timeoutMs, this.timeoutMs);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(this.expire, ms, id);
      const deadline = performance.now() + ms;
      this.pendingById.set(id, { resolve, reject, timer, timeoutMs: ms, deadline, frames: [idFrame, EMPTY, payload] });
      this.outbox.push(id);
      void this.pump();
    });
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.pendingById.size;
  }

  /** Reject everything pending and release every socket. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new ChannelClosedError('The request channel was closed before the master replied');
    for (const p of this.pendingById.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pendingById.clear();
    this.outbox.length = 0;
    this.outboxHead = 0;
    this.socket.close();
  }

  private openSocket(): Dealer {
    const socket = new Dealer({
      linger: 0, // never hold the process (or a dead master's queue) on close
      // Queue only to a live connection: while the master is down, send()
      // waits (and the request times out) instead of piling up requests
      // that a restarted master would then run long after we gave up.
      immediate: true,
      reconnectInterval: this.reconnectMs,
      reconnectMaxInterval: 0,
      sendHighWaterMark: SEND_HIGH_WATER_MARK,
      sendTimeout: SEND_SLICE_MS,
      ipv6: this.address.startsWith('tcp://['),
    });
    socket.connect(this.address);
    void this.receiveLoop(socket);
    return socket;
  }

  private async receiveLoop(socket: Dealer): Promise<void> {
    for (;;) {
      let frames: Buffer[];
      try {
        frames = await socket.receive();
      } catch {
        if (this.closed || socket !== this.socket) return;
        // Not expected from a DEALER without a receive timeout: start over on
        // a fresh socket rather than leave the channel deaf. Requests in
        // flight on the old one time out.
        setTimeout(() => this.replaceSocket(socket), this.reconnectMs).unref();
        return;
      }
      this.onReply(frames);
    }
  }

  private replaceSocket(old: Dealer): void {
    if (this.closed || old !== this.socket) return;
    this.socket = this.openSocket();
    this.sendWait = SEND_SLICE_MS;
    old.close();
  }

  private onReply(frames: Buffer[]): void {
    // [id, '', reply]; anything else is not an answer to us.
    if (frames.length !== 3 || frames[0].length !== 4 || frames[1].length !== 0) return;
    const id = frames[0].readUInt32BE(0);
    const p = this.pendingById.get(id);
    if (!p) return; // a late reply to a request that timed out
    this.pendingById.delete(id);
    clearTimeout(p.timer);
    let reply: unknown;
    try {
      reply = decode(frames[2]);
    } catch (err) {
      p.reject(new Error(`Undecodable reply from the master: ${(err as Error).message}`));
      return;
    }
    p.resolve(reply);
  }

  private expire(id: number): void {
    const p = this.pendingById.get(id);
    if (!p) return;
    this.pendingById.delete(id);
    p.reject(new RequestTimeoutError(`No reply from the Salt master at ${this.address} within ${p.timeoutMs} ms`));
  }

  /** Hand queued messages to ZeroMQ in order, one waiting send at a time. */
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.outboxHead < this.outbox.length && !this.closed) {
        const id = this.outbox[this.outboxHead++];
        if (this.outboxHead >= 1024 && this.outboxHead * 2 >= this.outbox.length) {
          // Under steady load the queue may never drain: drop the sent part now and then.
          this.outbox.splice(0, this.outboxHead);
          this.outboxHead = 0;
        }
        const p = this.pendingById.get(id);
        if (!p?.frames) continue; // timed out before its turn
        for (;;) {
          try {
            // Never let a send outlast its request: a message ZeroMQ takes
            // after we gave up would still run on the master.
            this.limitSendWait(p.deadline - performance.now());
            await this.socket.send(p.frames);
            break;
          } catch (err) {
            if (this.closed || !this.pendingById.has(id)) break; // gave up meanwhile: drop it
            if ((err as { code?: string }).code === 'EAGAIN') continue; // not queued within the slice: try again
            this.fail(id, err as Error);
            break;
          }
        }
        p.frames = undefined;
      }
    } finally {
      this.sending = false;
      if (this.outboxHead >= this.outbox.length) {
        this.outbox.length = 0;
        this.outboxHead = 0;
      }
    }
  }

  private limitSendWait(remainingMs: number): void {
    const wait = Math.max(1, Math.min(SEND_SLICE_MS, Math.floor(remainingMs)));
    if (wait !== this.sendWait) {
      this.socket.sendTimeout = wait;
      this.sendWait = wait;
    }
  }

  private fail(id: number, err: Error): void {
    const p = this.pendingById.get(id);
    if (!p) return;
    this.pendingById.delete(id);
    clearTimeout(p.timer);
    p.reject(err);
  }

  /** A 32-bit correlation id not in use (wraps around; skips ids still pending). */
  private newId(): number {
    do this.lastId = (this.lastId + 1) >>> 0;
    while (this.pendingById.has(this.lastId));
    return this.lastId;
  }
}

function positive(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}
