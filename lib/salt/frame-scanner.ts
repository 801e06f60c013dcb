/**
 * Cuts a byte stream of back-to-back msgpack values into whole values, as
 * the master's event bus sends them (salt/transport/ipc.py, IPCMessagePublisher): frames arrive split and
 * joined at any byte.
 *
 * Rather than retry a decode from the start of a frame each time more bytes
 * come in (quadratic for a large frame trickling in), it walks item headers
 * and keeps its place between chunks, so every byte is looked at once and
 * only complete frames are handed on.
 */
import { FrameStreamError } from './errors.js';

/**
 * Room for a whole read of the event bus (64 KiB) after the part of a frame
 * the read before left: the buffer is not replaced in a fleet's burst. A new
 * buffer is a new object to V8's optimized code for the scanner and the
 * codec (msgpackr keeps a property on it), which then starts over.
 */
const INITIAL_CAPACITY = 128 * 1024;

export class FrameScanner {
  private buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  /** First byte of the frame being scanned. */
  private start = 0;
  /** Where the next item header starts. */
  private pos = 0;
  /** End of the bytes held. */
  private end = 0;
  /**
   * Items still to come in each open array/map, innermost at `depth - 1`.
   * A depth rather than push() and pop(): V8 trims an array that pop()
   * empties, and the next frame's push() would make its room again.
   */
  private readonly open: number[] = [];
  private depth = 0;

  constructor(private readonly maxFrameBytes = 256 * 1024 * 1024) {}

  /** Bytes of an unfinished frame held. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Forget any partial frame (the stream it came from is gone). */
  reset(): void {
    this.start = this.pos = this.end = 0;
    this.depth = 0;
    if (this.buf.length > INITIAL_CAPACITY) this.buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  }

  /**
   * Add a chunk; call `onFrame` with each frame it completes, as its place
   * `[start, end)` in an internal buffer that is reused: copy what you keep.
   * A place rather than a view: a view is one more object per event, and
   * the codec decodes straight from the buffer. Throws FrameStreamError when
   * the stream can't be msgpack or a frame passes the size limit (the
   * caller should drop the stream and reset()).
   */
  push(chunk: Uint8Array, onFrame: (buf: Buffer, start: number, end: number) => void): void {
    this.append(chunk);
    const open = this.open;
    while (this.pos < this.end) {
      const size = itemSize(this.buf, this.pos, this.end);
      if (size < 0) break; // header or payload not all here yet
      const type = this.buf[this.pos];
      if (size === 0) throw new FrameStreamError(`Not a msgpack stream (byte 0x${type.toString(16)})`);
      const children = childCount(this.buf, this.pos, type);
      this.pos += size;
      if (children > 0) {
        open[this.depth++] = children;
        continue;
      }
      // An item ended: close every container it completes.
      let frameDone = true;
      while (this.depth > 0) {
        if (--open[this.depth - 1] > 0) {
          frameDone = false;
          break;
        }
        this.depth--;
      }
      if (frameDone) {
        const start = this.start;
        this.start = this.pos;
        onFrame(this.buf, start, this.pos); // may reset(): then end is 0 and the loop stops
      }
    }
    if (this.end - this.start > this.maxFrameBytes) {
      throw new FrameStreamError(`Frame larger than ${this.maxFrameBytes} bytes`);
    }
    if (this.start === this.end) this.start = this.pos = this.end = 0;
  }

  private append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      let target = this.buf;
      // Slide the live bytes (part of a frame) to the front when they fit
      // with the chunk and are at most half the buffer: each slide then
      // copies less than the new bytes it makes room for. Otherwise grow
      // (doubling keeps copying linear overall).
      if (live + chunk.length > this.buf.length || live > this.buf.length / 2) {
        target = Buffer.allocUnsafe(Math.max(this.buf.length * 2, live + chunk.length));
      }
      this.buf.copy(target, 0, this.start, this.end);
      this.buf = target;
      this.pos -= this.start;
      this.end = live;
      this.start = 0;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}

/**
 * Bytes taken by the item at `pos` itself (header and payload, not its
 * children), -1 when they are not all in `buf[..end]`, 0 for the invalid 0xc1.
 */
export function itemSize(buf: Uint8Array, pos: number, end: number): number {
  const b = buf[pos];
  if (b <= 0x7f || b >= 0xe0) return 1; // fixint
  if (b <= 0x9f) return 1; // fixmap, fixarray
  if (b <= 0xbf) return need(1 + (b & 0x1f), pos, end); // fixstr
  const avail = end - pos;
  switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return 1; // nil, false, true
    case 0xc1:
      return 0;
    case 0xc4:
    case 0xd9:
      return avail < 2 ? -1 : need(2 + buf[pos + 1], pos, end); // bin8, str8
    case 0xc5:
    case 0xda:
      return avail < 3 ? -1 : need(3 + u16(buf, pos + 1), pos, end); // bin16, str16
    case 0xc6:
    case 0xdb:
      return avail < 5 ? -1 : need(5 + u32(buf, pos + 1), pos, end); // bin32, str32
    case 0xc7:
      return avail < 2 ? -1 : need(3 + buf[pos + 1], pos, end); // ext8
    case 0xc8:
      return avail < 3 ? -1 : need(4 + u16(buf, pos + 1), pos, end); // ext16
    case 0xc9:
      return avail < 5 ? -1 : need(6 + u32(buf, pos + 1), pos, end); // ext32
    case 0xca:
    case 0xce:
    case 0xd2:
      return need(5, pos, end); // float32, uint32, int32
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return need(9, pos, end); // float64, uint64, int64
    case 0xcc:
    case 0xd0:
      return need(2, pos, end); // uint8, int8
    case 0xcd:
    case 0xd1:
      return need(3, pos, end); // uint16, int16
    case 0xd4:
      return need(3, pos, end); // fixext1
    case 0xd5:
      return need(4, pos, end); // fixext2
    case 0xd6:
      return need(6, pos, end); // fixext4
    case 0xd7:
      return need(10, pos, end); // fixext8
    case 0xd8:
      return need(18, pos, end); // fixext16
    case 0xdc:
    case 0xde:
      return need(3, pos, end); // array16, map16
    default:
      return need(5, pos, end); // 0xdd array32, 0xdf map32
  }
}

/** Items that follow the container at `pos` (whose header is all there). */
export function childCount(buf: Uint8Array, pos: number, type: number): number {
  if (type >= 0x80 && type <= 0x8f) return 2 * (type & 0x0f);
  if (type >= 0x90 && type <= 0x9f) return type & 0x0f;
  switch (type) {
    case 0xdc:
      return u16(buf, pos + 1);
    case 0xdd:
      return u32(buf, pos + 1);
    case 0xde:
      return 2 * u16(buf, pos + 1);
    case 0xdf:
      return 2 * u32(buf, pos + 1);
    default:
      return 0;
  }
}

/**
 * How every frame the master's bus sends begins: `{"head": {}, "body": `
 * (salt/transport/frame.py: frame_msg_ipc; Salt's dict keeps that order).
 */
const BODY_KEY = Buffer.from([0xa4, ...Buffer.from('body')]); // fixstr 'body'
const BUS_FRAME_HEAD = Buffer.from([0x82, 0xa4, ...Buffer.from('head'), 0x80, ...BODY_KEY]);

/** A place in a buffer: bytes `[start, end)`. */
export interface Span {
  start: number;
  end: number;
}

/**
 * Find the raw bytes of the `body` of the `{head, body}` frame at
 * `buf[start..end)`, without decoding the rest: true, with their place
 * written to `body`, or false when the frame has none. body is bin; a str
 * body (older masters packed bytes as str) is taken as its raw bytes, which
 * keeps the packed data intact.
 */
export function frameBody(buf: Uint8Array, start: number, end: number, body: Span): boolean {
  // The master's frames: 12 bytes compared, and the walk below is never run
  // (nor compiled: V8 spent 20 ms of a fresh server's first fleet on it).
  if (bytesAt(buf, start, end, BUS_FRAME_HEAD)) return rawBytes(buf, start + BUS_FRAME_HEAD.length, end, body);
  return walkedBody(buf, start, end, body);
}

/** Whether `buf[pos..end)` begins with `bytes` (compared byte by byte: no string made per frame). */
function bytesAt(buf: Uint8Array, pos: number, end: number, bytes: Uint8Array): boolean {
  if (end - pos < bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (buf[pos + i] !== bytes[i]) return false;
  return true;
}

/** frameBody for any `{head, body}` map: its keys in any order, any head. */
function walkedBody(buf: Uint8Array, start: number, end: number, body: Span): boolean {
  const type = buf[start];
  let entries: number;
  let pos: number;
  if (type >= 0x80 && type <= 0x8f) [entries, pos] = [type & 0x0f, start + 1];
  else if (type === 0xde && end - start >= 3) [entries, pos] = [u16(buf, start + 1), start + 3];
  else if (type === 0xdf && end - start >= 5) [entries, pos] = [u32(buf, start + 1), start + 5];
  else return false;
  for (let i = 0; i < entries; i++) {
    const isBody = bytesAt(buf, pos, end, BODY_KEY);
    pos = skipValue(buf, pos, end);
    if (pos < 0) return false;
    if (isBody && rawBytes(buf, pos, end, body)) return true;
    pos = skipValue(buf, pos, end);
    if (pos < 0) return false;
  }
  return false;
}

/** The payload of a bin or str item at `pos`, written to `out`; false for any other item. */
function rawBytes(buf: Uint8Array, pos: number, end: number, out: Span): boolean {
  const size = itemSize(buf, pos, end);
  if (size <= 0) return false;
  const type = buf[pos];
  let header: number;
  if (type >= 0xa0 && type <= 0xbf) header = 1;
  else if (type === 0xc4 || type === 0xd9) header = 2;
  else if (type === 0xc5 || type === 0xda) header = 3;
  else if (type === 0xc6 || type === 0xdb) header = 5;
  else return false;
  out.start = pos + header;
  out.end = pos + size;
  return true;
}

/**
 * Where the payload of the str item at `pos` lies, written to `out` (any
 * str encoding: a key or an id may come in any); false for any other item.
 * `out.end` may be past the buffer's end: the caller knows where it ends.
 */
export function strBytes(buf: Uint8Array, pos: number, out: Span): boolean {
  const type = buf[pos];
  let start: number;
  let length: number;
  if (type >= 0xa0 && type <= 0xbf) [start, length] = [pos + 1, type & 0x1f];
  else if (type === 0xd9) [start, length] = [pos + 2, buf[pos + 1]];
  else if (type === 0xda) [start, length] = [pos + 3, u16(buf, pos + 1)];
  else if (type === 0xdb) [start, length] = [pos + 5, u32(buf, pos + 1)];
  else return false;
  out.start = start;
  out.end = start + length;
  return true;
}

/** Position after the complete value at `pos`, or -1 if it isn't complete. */
export function skipValue(buf: Uint8Array, pos: number, end: number): number {
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

function need(size: number, pos: number, end: number): number {
  return pos + size <= end ? size : -1;
}

function u16(buf: Uint8Array, at: number): number {
  return (buf[at] << 8) | buf[at + 1];
}

function u32(buf: Uint8Array, at: number): number {
  return buf[at] * 0x1000000 + ((buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]);
}
