/**
 * Salt's wire shapes for the test master double and for tests that talk to it
 * raw: jids, `_stamp`s, event-bus frames, a bus reader and a request-channel
 * client built directly on `zeromq` and `node:net` (never on lib/salt's
 * transport, which is what the double exists to test).
 */
import net from 'node:net';
import { Dealer, Request } from 'zeromq';
import { Unpackr } from 'msgpackr';
import { decode, encode } from '../../lib/salt/codec.js';

let lastJid = 0n;

/** Wall-clock time in microseconds (Date alone has milliseconds only). */
function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * A jid as Salt's `salt.utils.jid.gen_jid` makes it: local time as
 * `%Y%m%d%H%M%S%f`, 20 digits. Strictly increasing within the process, so
 * two masters (or two jobs in the same microsecond) never share one.
 */
export function newJid(): string {
  const micros = nowMicros();
  const now = new Date(Math.floor(micros / 1000));
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  let jid = BigInt(
    `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}` +
      `${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}${pad(micros % 1_000_000, 6)}`,
  );
  if (jid <= lastJid) jid = lastJid + 1n;
  lastJid = jid;
  return jid.toString();
}

/** Salt's `_stamp`: UTC `datetime.isoformat()` with microseconds, e.g. `2026-11-22T18:00:58.327795`. */
export function saltStamp(): string {
  const micros = nowMicros();
  return new Date(Math.floor(micros / 1000)).toISOString().slice(0, 19) + '.' + String(micros % 1_000_000).padStart(6, '0');
}

/** One event-bus frame: msgpack `{head: {}, body: <bin: tag + "\n\n" + msgpack(data)>}` (salt/utils/event.py: SaltEvent.pack). */
export function packEvent(tag: string, data: unknown): Buffer {
  const body = Buffer.concat([Buffer.from(`${tag}\n\n`, 'utf8'), encode(data)]);
  return encode({ head: {}, body });
}

/**
 * Pack a request-channel reply as the master does: `salt.payload.dumps` with
 * its default `use_bin_type=False`, msgpack's old spec. The difference from
 * lib/salt/codec.ts (new spec, as the bus uses) is on the wire only: strings
 * of 32-255 bytes are str16 (`da`), never str8 (`d9`), and byte strings are
 * packed as str too (reqserver.json shows str16 for every such reply string).
 */
export function encodeReply(value: unknown): Buffer {
  // One growing buffer rather than a Buffer per item: a reply naming 10,000
  // minions is 10,000 strings, and the scale bench times the double too.
  let out = Buffer.allocUnsafe(4096);
  let at = 0;
  const room = (n: number) => {
    if (at + n <= out.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, at + n));
    out.copy(bigger, 0, 0, at);
    out = bigger;
  };
  const push = (bytes: Uint8Array) => {
    room(bytes.length);
    out.set(bytes, at);
    at += bytes.length;
  };
  const byte = (b: number) => {
    room(1);
    out[at++] = b;
  };
  const header = (len: number, fix: number, fixMax: number, c16: number, c32: number) => {
    room(5);
    if (len <= fixMax) out[at++] = fix | len;
    else if (len < 0x10000) {
      out[at++] = c16;
      at = out.writeUInt16BE(len, at);
    } else {
      out[at++] = c32;
      at = out.writeUInt32BE(len, at);
    }
  };
  const int = (n: bigint) => {
    const b = Buffer.alloc(9);
    if (n >= 0n) {
      if (n < 128n) return byte(Number(n));
      if (n < 0x100n) return push(Buffer.from([0xcc, Number(n)]));
      if (n < 0x10000n) return ((b[0] = 0xcd), b.writeUInt16BE(Number(n), 1), push(b.subarray(0, 3)));
      if (n < 0x100000000n) return ((b[0] = 0xce), b.writeUInt32BE(Number(n), 1), push(b.subarray(0, 5)));
      if (n < 0x10000000000000000n) return ((b[0] = 0xcf), b.writeBigUInt64BE(n, 1), push(b));
    } else {
      if (n >= -32n) return byte(Number(n) & 0xff);
      if (n >= -128n) return ((b[0] = 0xd0), b.writeInt8(Number(n), 1), push(b.subarray(0, 2)));
      if (n >= -32768n) return ((b[0] = 0xd1), b.writeInt16BE(Number(n), 1), push(b.subarray(0, 3)));
      if (n >= -2147483648n) return ((b[0] = 0xd2), b.writeInt32BE(Number(n), 1), push(b.subarray(0, 5)));
      if (n >= -0x8000000000000000n) return ((b[0] = 0xd3), b.writeBigInt64BE(n, 1), push(b));
    }
    return write(n.toString()); // too large for msgpack: Salt's packer sends a string
  };
  const raw = (bytes: Uint8Array) => {
    header(bytes.length, 0xa0, 31, 0xda, 0xdb);
    push(bytes);
  };
  const write = (v: unknown): void => {
    if (v === null || v === undefined) byte(0xc0);
    else if (v === true || v === false) byte(v ? 0xc3 : 0xc2);
    else if (typeof v === 'bigint') int(v);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && !Object.is(v, -0)) int(BigInt(v));
      else {
        room(9);
        out[at++] = 0xcb;
        at = out.writeDoubleBE(v, at);
      }
    } else if (typeof v === 'string') {
      const length = Buffer.byteLength(v);
      header(length, 0xa0, 31, 0xda, 0xdb);
      room(length);
      at += out.write(v, at, 'utf8');
    } else if (v instanceof Uint8Array) raw(v);
    else if (Array.isArray(v)) {
      header(v.length, 0x90, 15, 0xdc, 0xdd);
      v.forEach(write);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>);
      header(entries.length, 0x80, 15, 0xde, 0xdf);
      for (const [k, item] of entries) {
        write(k);
        write(item);
      }
    } else write(String(v));
  };
  write(value);
  return Buffer.from(out.subarray(0, at));
}

export interface BusFrame {
  /** The frame's bytes exactly as read from the socket. */
  raw: Buffer;
  head: unknown;
  tag: string;
  data: any;
}

/** Split one frame's body into tag and data (salt/utils/event.py: SaltEvent.unpack). */
export function unpackBody(body: Uint8Array): { tag: string; data: any } {
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const cut = bytes.indexOf('\n\n');
  if (cut < 0) return { tag: bytes.toString('utf8'), data: {} };
  return { tag: bytes.subarray(0, cut).toString('utf8'), data: decode(bytes.subarray(cut + 2)) };
}

// The outer {head, body} map holds only plain types; the body's data goes
// through lib/salt/codec.ts, which knows Salt's extensions.
const frameReader = new Unpackr({ mapsAsObjects: true, useRecords: false, moreTypes: false, structuredClone: false });

/** Reassembles bus frames from a byte stream that may split or join them anywhere. */
export class BusFrameParser {
  private pending: Buffer = Buffer.alloc(0);

  /** Feed bytes; returns the frames they complete. */
  push(chunk: Buffer): BusFrame[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: BusFrame[] = [];
    let consumed = 0;
    try {
      frameReader.unpackMultiple(this.pending, (value: any, _start?: number, end?: number) => {
        const raw = Buffer.from(this.pending.subarray(consumed, end));
        consumed = end ?? this.pending.length;
        const { tag, data } = unpackBody(value?.body ?? new Uint8Array());
        frames.push({ raw, head: value?.head, tag, data });
      });
    } catch (err) {
      if (!(err as { incomplete?: boolean }).incomplete) throw err;
    }
    this.pending = this.pending.subarray(consumed);
    return frames;
  }
}

/**
 * A raw subscriber of the master's event bus: connects to the unix socket (or
 * TCP port) and records every frame. Tests use it to see exactly what the
 * double wrote, independently of lib/salt/event-bus.ts.
 */
export class BusTap {
  readonly frames: BusFrame[] = [];
  private readonly socket: net.Socket;
  private readonly parser = new BusFrameParser();
  private waiters: Array<{ test: (f: BusFrame) => boolean; resolve: (f: BusFrame) => void }> = [];
  readonly connected: Promise<void>;

  constructor(target: { path: string } | { host: string; port: number }) {
    this.socket = net.connect(target as net.NetConnectOpts);
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => {}); // a closed master is an expected event in tests
    this.socket.on('data', (chunk: Buffer) => {
      for (const frame of this.parser.push(chunk)) {
        this.frames.push(frame);
        this.waiters = this.waiters.filter((w) => {
          if (!w.test(frame)) return true;
          w.resolve(frame);
          return false;
        });
      }
    });
  }

  /** Frames whose tag matches (exact string, prefix ending in '/', or RegExp). */
  matching(tag: string | RegExp): BusFrame[] {
    return this.frames.filter((f) => tagMatches(f.tag, tag));
  }

  /** First frame (already seen or future) whose tag matches; rejects after timeoutMs. */
  waitFor(tag: string | RegExp, timeoutMs = 2000): Promise<BusFrame> {
    const seen = this.frames.find((f) => tagMatches(f.tag, tag));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no event ${String(tag)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (f: BusFrame) => {
        clearTimeout(timer);
        resolve(f);
      };
      this.waiters.push({ test: (f) => tagMatches(f.tag, tag), resolve: done });
    });
  }

  get closed(): boolean {
    return this.socket.destroyed || this.socket.readableEnded;
  }

  close(): void {
    this.socket.destroy();
  }
}

function tagMatches(tag: string, want: string | RegExp): boolean {
  if (want instanceof RegExp) return want.test(tag);
  return want.endsWith('/') ? tag.startsWith(want) : tag === want;
}

/**
 * A raw request-channel client: a DEALER that sends `[correlation, '', payload]`
 * (or a REQ sending `['', payload]`) and resolves with the reply frames.
 */
export class RawRequester {
  private readonly dealer = new Dealer({ linger: 0 });
  private readonly pending = new Map<string, (frames: Buffer[]) => void>();
  private next = 0;

  constructor(address: string) {
    this.dealer.connect(address);
    void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const frames of this.dealer) {
        const key = frames[0]?.toString('hex') ?? '';
        const resolve = this.pending.get(key);
        if (resolve) {
          this.pending.delete(key);
          resolve(frames);
        }
      }
    } catch {
      // closed
    }
  }

  /** Send payload bytes with a correlation frame (and optional extra envelope frames); resolve with all reply frames. */
  requestFrames(payload: Buffer, timeoutMs = 2000, extraEnvelope: Buffer[] = []): Promise<Buffer[]> {
    const corr = Buffer.alloc(4);
    corr.writeUInt32BE(++this.next);
    const key = corr.toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(key, (frames) => {
        clearTimeout(timer);
        resolve(frames);
      });
      this.dealer.send([corr, ...extraEnvelope, Buffer.alloc(0), payload]).catch(reject);
    });
  }

  /** Send raw payload bytes, resolve with the raw reply payload. */
  async requestRaw(payload: Buffer, timeoutMs = 2000): Promise<Buffer> {
    const frames = await this.requestFrames(payload, timeoutMs);
    return frames[frames.length - 1];
  }

  /** Send `{enc: 'clear', load, version: 2}`, resolve with the decoded reply. */
  async request(load: Record<string, unknown>, timeoutMs = 2000): Promise<any> {
    return decode(await this.requestRaw(encode({ enc: 'clear', load, version: 2 }), timeoutMs));
  }

  close(): void {
    this.dealer.close();
  }
}

/** One request over a fresh REQ socket (envelope `['', payload]`), the way Salt's own client talks. */
export async function reqOnce(address: string, payload: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const req = new Request({ linger: 0, receiveTimeout: timeoutMs });
  try {
    req.connect(address);
    await req.send(payload);
    const [reply] = await req.receive();
    return reply;
  } finally {
    req.close();
  }
}
