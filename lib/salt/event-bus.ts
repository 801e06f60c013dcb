/**
 * The master's event bus (<sock_dir>/master_event_pub.ipc, or TCP with
 * ipc_mode: tcp): a stream of msgpack `{head, body}` frames, body being
 * `tag\n\n` + packed data (salt/utils/event.py: SaltEvent.pack/unpack).
 *
 * Subscriptions are kept in a Map keyed by exact tag or '/'-ending prefix, so
 * an event costs one lookup per segment of its tag however many waiters
 * there are. Events nobody waits for are never decoded: unrelated traffic is
 * dropped, and job events are kept as bytes, while some caller holds the bus
 * (hold()), until a late subscriber asks for them.
 *
 * Nobody subscribed and nobody holding, as under a stream of local_async
 * jobs, the bus only has to be drained: it is read in batches (idleReadMs)
 * and its frames are only cut, never looked into.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import type { MasterOptions } from './config.js';
import { decode } from './codec.js';
import { FrameScanner, childCount, itemSize } from './frame-scanner.js';

export interface SaltEvent {
  tag: string;
  data: any;
}

export interface EventBusOptions {
  /** Unix socket path of master_event_pub.ipc ... */
  path?: string;
  /** ... or TCP host and port (ipc_mode: tcp). */
  host?: string;
  port?: number;
  /** Delay between reconnection attempts (default 100 ms). */
  reconnectMs?: number;
  /**
   * How long job events (salt/job/, salt/run/, salt/wheel/) are kept, while
   * the bus is held, for subscribers that arrive late: a client learns a jid
   * only from the publish reply, and a fast minion's return can be read from
   * the bus before that reply is. subscribe() replays retained matching
   * events. Default 3000 ms; 0 keeps nothing.
   */
  retainMs?: number;
  /** At most this many job events are kept (the oldest go first; default 2000). */
  retainMax?: number;
  /**
   * While nobody is subscribed, events only feed retention, so the socket is
   * read at most once per this many ms instead of once per event: under a
   * stream of local_async jobs that saves a wakeup per job. A subscription
   * resumes reading at once. Default 10 ms; 0 reads every event as it comes.
   */
  idleReadMs?: number;
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}
/** waitFor() whose AbortSignal fired; `cause` is the signal's reason. */
export class AbortError extends Error {
  override name = 'AbortError';
}
/** ready()/waitFor() on a bus that is, or gets, closed. */
export class EventBusClosedError extends Error {
  override name = 'EventBusClosedError';
}

const DEFAULT_RECONNECT_MS = 100;
const DEFAULT_RETAIN_MS = 3000;
const DEFAULT_RETAIN_MAX = 2000;
const DEFAULT_IDLE_READ_MS = 10;
/** Bytes read per read(2); while reads fill it, the socket is read on before pausing. */
const READ_BUFFER_BYTES = 64 * 1024;
const TAG_END = Buffer.from('\n\n');
/** Job events, the ones retained; the match is the job's own prefix, `salt/job/<jid>/`. */
const JOB_TAG = /^salt\/(?:job|run|wheel)\/[^/]+\//;

/** Options for the master's bus from its config. */
export function eventBusOptions(opts: MasterOptions): EventBusOptions {
  // salt/utils/event.py SaltEvent.__load_uri, node 'master'.
  if (opts.ipc_mode === 'tcp') return { host: '127.0.0.1', port: Number(opts.tcp_master_pub_port) };
  return { path: path.join(opts.sock_dir, 'master_event_pub.ipc') };
}

interface Subscription {
  key: string;
  listener: (event: SaltEvent) => void;
  /** Live events from this sequence number on; older ones come from retention. */
  fromSeq: number;
  /** While retained events are being replayed, live ones wait here. */
  backlog: SaltEvent[] | null;
  active: boolean;
  onClose?: () => void;
}

interface Retained {
  tag: string;
  /** The packed data, until a replay decodes it into `event`. */
  bytes: Buffer | undefined;
  /** Decoded already (someone was subscribed when it came, or a replay), or null when it can't be. */
  event: SaltEvent | null | undefined;
  at: number;
  /** Its job's prefix (`salt/job/<jid>/`), the key of retainedByJob. */
  job: string;
}

/** Emits 'connect' and 'disconnect'. Reconnects by itself until close(). */
export class EventBus extends EventEmitter {
  private readonly where: string;
  private readonly connectOptions: net.NetConnectOpts;
  private readonly reconnectMs: number;
  private readonly retainMs: number;
  private readonly retainMax: number;
  private readonly idleReadMs: number;
  private readonly scanner = new FrameScanner();
  /** Reused by every read: the scanner copies what it keeps. */
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private socket: net.Socket | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Set while reading is paused because nobody is subscribed: resumes reading. */
  private idleTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private isConnected = false;
  private readonly readyWaiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();

  private readonly subscriptions = new Map<string, Set<Subscription>>();
  private liveSubscriptions = 0;
  /** Callers between hold() and its release: job events are retained meanwhile. */
  private holds = 0;
  /** Sequence number of the last event dispatched. */
  private seq = 0;

  private readonly retained: Retained[] = [];
  private retainedHead = 0;
  /** Retained events by job prefix, oldest first. */
  private readonly retainedByJob = new Map<string, Retained[]>();

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
    this.retainMs = nonNegative(options.retainMs, DEFAULT_RETAIN_MS);
    this.retainMax = nonNegative(options.retainMax, DEFAULT_RETAIN_MAX);
    this.idleReadMs = nonNegative(options.idleReadMs, DEFAULT_IDLE_READ_MS);
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

  /** Resolves once connected; rejects with TimeoutError after timeoutMs. Starts the bus if it isn't. */
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
        reject(new TimeoutError(`Not connected to the Salt master's event bus at ${this.where} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.readyWaiters.add(waiter);
    });
  }

  /**
   * Call `listener` for each event whose tag equals `tagOrPrefix`, or starts
   * with it when it ends with '/'. Retained events that match are replayed
   * first (synchronously or on the next tick). Dispatch cost per event does
   * not grow with the number of subscriptions. Returns the unsubscribe function.
   */
  subscribe(tagOrPrefix: string, listener: (event: SaltEvent) => void): () => void {
    return this.addSubscription(tagOrPrefix, listener);
  }

  /** First event matching `tagOrPrefix` (as subscribe); TimeoutError after timeoutMs; AbortError if signal aborts. Unsubscribes in every case. */
  waitFor(tagOrPrefix: string, timeoutMs: number, signal?: AbortSignal): Promise<SaltEvent> {
    if (this.closed) return Promise.reject(new EventBusClosedError('The event bus is closed'));
    if (signal?.aborted) return Promise.reject(new AbortError('Aborted', { cause: signal.reason }));
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (): void => {
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        unsubscribe();
      };
      const onAbort = (): void => {
        if (done) return;
        finish();
        reject(new AbortError('Aborted', { cause: signal?.reason }));
      };
      const unsubscribe = this.addSubscription(
        tagOrPrefix,
        (event) => {
          if (done) return;
          finish();
          resolve(event);
        },
        () => {
          if (done) return;
          finish();
          reject(new EventBusClosedError('The event bus was closed'));
        },
      );
      const timer = setTimeout(() => {
        if (done) return;
        finish();
        reject(new TimeoutError(`No event ${tagOrPrefix} within ${timeoutMs} ms`));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
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
      if (--this.holds === 0) this.forgetRetained();
    };
  }

  /** Live subscriptions (waitFor included): for leak tests. */
  get subscriptionCount(): number {
    return this.liveSubscriptions;
  }

  /** Job events currently kept for late subscribers. */
  get retainedCount(): number {
    return this.retained.length - this.retainedHead;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
    this.scanner.reset();
    const err = new EventBusClosedError('The event bus was closed');
    for (const waiter of this.readyWaiters) waiter.reject(err);
    this.readyWaiters.clear();
    for (const set of [...this.subscriptions.values()]) {
      for (const sub of set) {
        sub.active = false;
        sub.onClose?.();
      }
    }
    this.subscriptions.clear();
    this.liveSubscriptions = 0;
    this.holds = 0;
    this.forgetRetained();
    if (this.isConnected) {
      this.isConnected = false;
      this.safeEmit('disconnect');
    }
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
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
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
    try {
      this.scanner.push(buf.subarray(0, size), this.onFrame);
    } catch {
      // Not a msgpack stream (or a runaway frame): start over on a new connection.
      socket.destroy();
      return true;
    }
    // A full buffer means more may be waiting: read on, so that a pause
    // never leaves more than one interval's events in the kernel.
    if (this.liveSubscriptions > 0 || this.idleReadMs === 0 || size === buf.length || socket.destroyed) return true;
    this.idleTimer ??= setTimeout(() => this.resumeReading(), this.idleReadMs);
    return false;
  }

  private resumeReading(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.socket && !this.socket.destroyed) this.socket.resume();
  }

  // -- frames and events -------------------------------------------------

  private readonly onFrame = (frame: Buffer): void => {
    if (this.liveSubscriptions === 0 && this.holds === 0) return; // nobody to give it to, nor to keep it for
    const body = frameBody(frame);
    if (!body) return;
    const sep = body.indexOf(TAG_END);
    if (sep < 0) return;
    const tag = body.toString('utf8', 0, sep);
    const job = this.holds > 0 && this.retainMs > 0 && this.retainMax > 0 ? JOB_TAG.exec(tag)?.[0] : undefined;
    const wanted = this.anyoneWants(tag);
    if (!job && !wanted) return; // unrelated traffic: never decoded
    // A copy: the scanner's buffer is reused (and bin values in the data
    // would point into it).
    const bytes = Buffer.from(body.subarray(sep + 2));
    let event: SaltEvent | null | undefined;
    if (wanted) event = decodeEvent(tag, bytes);
    if (job) this.retain({ tag, bytes: event ? undefined : bytes, event, at: performance.now(), job });
    if (!event) return;
    const seq = ++this.seq;
    this.dispatch(event, seq, keysOf(tag));
  };

  private anyoneWants(tag: string): boolean {
    if (this.subscriptions.size === 0) return false;
    if (this.subscriptions.has(tag)) return true;
    for (let i = tag.indexOf('/'); i !== -1; i = tag.indexOf('/', i + 1)) {
      if (this.subscriptions.has(tag.slice(0, i + 1))) return true;
    }
    return false;
  }

  private dispatch(event: SaltEvent, seq: number, keys: string[]): void {
    if (this.subscriptions.size === 0) return;
    for (const key of keys) {
      const set = this.subscriptions.get(key);
      if (!set) continue;
      for (const sub of set) {
        if (!sub.active || sub.fromSeq > seq) continue; // subscribed during this dispatch: replay has it
        if (sub.backlog) sub.backlog.push(event);
        else this.deliver(sub, event);
      }
    }
  }

  private deliver(sub: Subscription, event: SaltEvent): void {
    try {
      sub.listener(event);
    } catch (err) {
      // A listener's bug must not break the parser or other listeners.
      if (this.listenerCount('listenerError') > 0) this.safeEmit('listenerError', err, event);
    }
  }

  private safeEmit(name: string, ...args: unknown[]): void {
    try {
      this.emit(name, ...args);
    } catch {
      // A throwing 'connect'/'disconnect' handler must not break the socket.
    }
  }

  private addSubscription(key: string, listener: (event: SaltEvent) => void, onClose?: () => void): () => void {
    if (typeof key !== 'string' || key === '') throw new TypeError('subscribe needs a tag or a tag prefix');
    if (this.closed) {
      onClose?.();
      return () => {};
    }
    const sub: Subscription = { key, listener, fromSeq: this.seq + 1, backlog: null, active: true, onClose };
    let set = this.subscriptions.get(key);
    if (!set) this.subscriptions.set(key, (set = new Set()));
    set.add(sub);
    this.liveSubscriptions++;
    // Events for it may be waiting unread in the socket.
    if (this.idleTimer) this.resumeReading();

    const replay = this.retainedMatching(key);
    if (replay.length > 0) {
      sub.backlog = [];
      queueMicrotask(() => {
        for (const event of replay) if (sub.active) this.deliver(sub, event);
        const backlog = sub.backlog!;
        for (let i = 0; i < backlog.length && sub.active; i++) this.deliver(sub, backlog[i]);
        sub.backlog = null;
      });
    }

    return () => {
      if (!sub.active) return;
      sub.active = false;
      this.liveSubscriptions--;
      const current = this.subscriptions.get(key);
      if (current?.delete(sub) && current.size === 0) this.subscriptions.delete(key);
    };
  }

  // -- retention ---------------------------------------------------------

  private retain(r: Retained): void {
    this.retained.push(r);
    const list = this.retainedByJob.get(r.job);
    if (list) list.push(r);
    else this.retainedByJob.set(r.job, [r]);
    this.evictRetained(r.at);
  }

  /** Retained events a subscription to `key` gets, oldest first, decoded. */
  private retainedMatching(key: string): SaltEvent[] {
    this.evictRetained(performance.now());
    if (this.retainedHead === this.retained.length) return [];
    const matches = (tag: string) => tag === key || (key.endsWith('/') && tag.startsWith(key));
    // A key inside one job (what clients subscribe to) looks at that job's
    // events only; a wider one ('salt/job/') at all of them.
    const job = JOB_TAG.exec(key)?.[0];
    const candidates = job ? (this.retainedByJob.get(job) ?? []) : this.retained.slice(this.retainedHead);
    const events: SaltEvent[] = [];
    for (const r of candidates) {
      if (!matches(r.tag)) continue;
      if (r.event === undefined) {
        r.event = decodeEvent(r.tag, r.bytes!);
        r.bytes = undefined;
      }
      if (r.event) events.push(r.event);
    }
    return events;
  }

  private forgetRetained(): void {
    this.retained.length = 0;
    this.retainedHead = 0;
    this.retainedByJob.clear();
  }

  private evictRetained(now: number): void {
    const oldest = now - this.retainMs;
    while (this.retainedHead < this.retained.length) {
      const r = this.retained[this.retainedHead];
      if (r.at > oldest && this.retained.length - this.retainedHead <= this.retainMax) break;
      this.retainedHead++;
      // A job's events are retained in arrival order: r is its oldest.
      const list = this.retainedByJob.get(r.job);
      if (list && list[0] === r) list.shift();
      if (list?.length === 0) this.retainedByJob.delete(r.job);
    }
    if (this.retainedHead > 0 && this.retainedHead * 2 >= this.retained.length) {
      this.retained.splice(0, this.retainedHead);
      this.retainedHead = 0;
    }
  }
}

/** The event, or null when its data is not msgpack (it is then dropped). */
function decodeEvent(tag: string, bytes: Buffer): SaltEvent | null {
  try {
    return { tag, data: decode(bytes) };
  } catch {
    return null;
  }
}

/**
 * The keys a tag is delivered under: itself (unless it ends with '/', then
 * it is its own last prefix) and each of its '/'-ending prefixes.
 */
function keysOf(tag: string): string[] {
  const keys: string[] = [];
  for (let i = tag.indexOf('/'); i !== -1; i = tag.indexOf('/', i + 1)) keys.push(tag.slice(0, i + 1));
  if (!tag.endsWith('/')) keys.push(tag);
  return keys;
}

/**
 * The raw bytes of the `body` of a `{head, body}` frame, without decoding the
 * rest. body is bin; a str body (older masters packed bytes as str) is taken
 * as its raw bytes, which keeps the packed data intact.
 */
export function frameBody(frame: Buffer): Buffer | undefined {
  const type = frame[0];
  let entries: number;
  let pos: number;
  if (type >= 0x80 && type <= 0x8f) [entries, pos] = [type & 0x0f, 1];
  else if (type === 0xde) [entries, pos] = [frame.readUInt16BE(1), 3];
  else if (type === 0xdf) [entries, pos] = [frame.readUInt32BE(1), 5];
  else return undefined;
  const end = frame.length;
  for (let i = 0; i < entries; i++) {
    const isBody = frame[pos] === 0xa4 && frame.toString('latin1', pos + 1, pos + 5) === 'body';
    pos = skipValue(frame, pos, end);
    if (pos < 0) return undefined;
    if (isBody) {
      const raw = rawBytes(frame, pos, end);
      if (raw) return raw;
    }
    pos = skipValue(frame, pos, end);
    if (pos < 0) return undefined;
  }
  return undefined;
}

/** The payload of a bin or str item at `pos`, else undefined. */
function rawBytes(buf: Buffer, pos: number, end: number): Buffer | undefined {
  const size = itemSize(buf, pos, end);
  if (size <= 0) return undefined;
  const type = buf[pos];
  let header: number;
  if (type >= 0xa0 && type <= 0xbf) header = 1;
  else if (type === 0xc4 || type === 0xd9) header = 2;
  else if (type === 0xc5 || type === 0xda) header = 3;
  else if (type === 0xc6 || type === 0xdb) header = 5;
  else return undefined;
  return buf.subarray(pos + header, pos + size);
}

/** Position after the complete value at `pos`, or -1 if it isn't complete. */
function skipValue(buf: Buffer, pos: number, end: number): number {
  let remaining = 1;
  while (remaining > 0) {
    if (pos < 0 || pos >= end) return -1;
    const size = itemSize(buf, pos, end);
    if (size <= 0) return -1;
    remaining += childCount(buf, pos, buf[pos]) - 1;
    pos += size;
  }
  return pos;
}

function nonNegative(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback;
}
