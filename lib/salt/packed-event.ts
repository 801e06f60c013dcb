/**
 * An event from the bus whose data stays packed until someone reads it:
 * `data` decodes it all (once), as before; fieldsOf() reads only the
 * fields the wait for a job's returns needs, and a return that is a map or
 * a list goes to the answer as its JSON text (./msgpack-json.ts), never as
 * objects. A fleet's returns are then read, not decoded and written again.
 *
 * An event goes packed only when decoding it could not fail nor give
 * anything but plain values (./codec.ts with msgpackr: no extension but
 * Salt's datetime, no key that is a container or bin, nothing after the
 * value); any other is decoded at once, as before, and dropped if it can't be.
 */
import { RawJson } from '../json.js';
import { isPlainObject } from '../objects.js';
import { keepShape } from '../shapes.js';
import { decode } from './codec.js';
import type { SaltEvent } from './event-retention.js';
import { childCount, itemSize, skipValue, strBytes, type Span } from './frame-scanner.js';
import { DATETIME_EXT } from './codec.js';
import { NotTranscodable, msgpackToJson } from './msgpack-json.js';

/** Where a str item's bytes lie (strBytes), reused: read at once by the one caller at a time. */
const STR_BYTES: Span = { start: 0, end: 0 };

/** The fields of a job's events read without decoding the rest (salt/master.py: the `new` event, _return's). */
export type JobField = 'minions' | 'missing' | 'id' | 'return' | 'out' | 'retcode' | 'jid';
const FIELDS: readonly JobField[] = ['minions', 'missing', 'id', 'return', 'out', 'retcode', 'jid'];
const NAMES = FIELDS.map((f) => Buffer.from(f));
/** Each field's place in FIELDS: a property read per lookup rather than a search. */
const INDEX: Readonly<Record<JobField, number>> = { minions: 0, missing: 1, id: 2, return: 3, out: 4, retcode: 5, jid: 6 };

/** An event's top-level fields, however it came. */
export interface EventFields {
  has(field: JobField): boolean;
  /** The field's value as decoding the event gives it. */
  get(field: JobField): unknown;
  /** The field's value as an answer holds it: a map or list as RawJson, its text; anything else as get(). */
  answer(field: JobField): unknown;
  /** Whether the field is a list of exactly `ids`, in order (the `new` event's minions, compared where they lie). */
  sameStrings(field: JobField, ids: readonly string[]): boolean;
}

/** The fields of `event`'s data, or undefined when its data is not a map. */
export function fieldsOf(event: SaltEvent): EventFields | undefined {
  if (event instanceof PackedEvent && event.packed()) return event;
  const data: unknown = event.data;
  return isPlainObject(data) ? new DecodedFields(data) : undefined;
}

class DecodedFields implements EventFields {
  constructor(private readonly data: Record<string, unknown>) {}
  has(field: JobField): boolean {
    return field in this.data;
  }
  get(field: JobField): unknown {
    return this.data[field];
  }
  answer(field: JobField): unknown {
    return this.data[field];
  }
  sameStrings(field: JobField, ids: readonly string[]): boolean {
    return sameIds(this.data[field], ids);
  }
}

function sameIds(value: unknown, ids: readonly string[]): boolean {
  if (!Array.isArray(value) || value.length !== ids.length) return false;
  for (let i = 0; i < ids.length; i++) if (value[i] !== ids[i]) return false;
  return true;
}

export class PackedEvent implements SaltEvent, EventFields {
  readonly packedBytes: number;
  /** The packed data, until `data` decodes it. */
  private bytes: Buffer | undefined;
  private decoded: unknown;

  /**
   * The event of the data at `buf[start..end)`, kept packed (in a copy of
   * its own unless `owned`: `buf` may be a read buffer used again), or
   * undefined when the data is not packable() and must be decoded now.
   */
  static from(tag: string, buf: Buffer, start: number, end: number, owned: boolean): PackedEvent | undefined {
    const at = [-1, -1, -1, -1, -1, -1, -1];
    if (!scanned(buf, start, end, at)) return undefined;
    if (owned && start === 0 && end === buf.length) return new PackedEvent(tag, buf, at);
    const copy = Buffer.allocUnsafe(end - start);
    buf.copy(copy, 0, start, end);
    return new PackedEvent(tag, copy, at);
  }

  /** `at`: where each of FIELDS' values starts in `bytes` (-1: absent). */
  private constructor(
    readonly tag: string,
    bytes: Buffer,
    private readonly at: number[],
  ) {
    this.bytes = bytes;
    this.packedBytes = bytes.length;
  }

  // biome-ignore lint/suspicious/noExplicitAny: as SaltEvent's
  get data(): any {
    if (this.bytes) {
      this.decoded = decode(this.bytes);
      this.bytes = undefined;
    }
    return this.decoded;
  }

  set data(value: unknown) {
    this.decoded = value;
    this.bytes = undefined;
  }

  /** Still packed, and a map: its fields can be read here. */
  packed(): boolean {
    if (!this.bytes) return false;
    const b = this.bytes[0];
    return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
  }

  has(field: JobField): boolean {
    if (!this.bytes) return field in this.data;
    return this.at[INDEX[field]] >= 0;
  }

  get(field: JobField): unknown {
    const bytes = this.bytes;
    if (!bytes) return this.data[field];
    const pos = this.at[INDEX[field]];
    if (pos < 0) return undefined;
    const b = bytes[pos];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b === 0xc0) return null;
    if (b === 0xc2 || b === 0xc3) return b === 0xc3;
    if (b >= 0xa0 && b <= 0xbf) {
      const text = shortText(bytes, pos + 1, pos + 1 + (b & 0x1f));
      if (text !== undefined) return text;
    }
    if (b >= 0xca && b <= 0xd3) return decode(bytes, pos, pos + itemSize(bytes, pos, bytes.length));
    if (b === 0x90) return []; // the `new` event's `missing`, mostly
    return this.data[field]; // anything else, as the codec decodes it
  }

  sameStrings(field: JobField, ids: readonly string[]): boolean {
    const bytes = this.bytes;
    if (!bytes) return sameIds(this.data[field], ids);
    let pos = this.at[INDEX[field]];
    if (pos < 0) return false;
    const b = bytes[pos];
    let count: number;
    if (b >= 0x90 && b <= 0x9f) [count, pos] = [b & 0x0f, pos + 1];
    else if (b === 0xdc) [count, pos] = [bytes.readUInt16BE(pos + 1), pos + 3];
    else if (b === 0xdd) [count, pos] = [bytes.readUInt32BE(pos + 1), pos + 5];
    else return false;
    if (count !== ids.length) return false;
    for (let i = 0; i < count; i++) {
      pos = asciiAt(bytes, pos, ids[i]);
      if (pos < 0) return sameIds(this.data[field], ids); // not ASCII both: as decoded
    }
    return true;
  }

  answer(field: JobField): unknown {
    const bytes = this.bytes;
    if (!bytes) return this.data[field];
    const pos = this.at[INDEX[field]];
    const b = pos < 0 ? 0 : bytes[pos];
    if (!((b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf))) return this.get(field);
    try {
      return new RawJson(msgpackToJson(bytes, pos, skipValue(bytes, pos, bytes.length)));
    } catch (err) {
      if (!(err instanceof NotTranscodable)) throw err;
      return this.data[field];
    }
  }
}

// A fleet's events all die with its answer: one kept, so that its shape outlives them (lib/shapes.ts).
keepShape(PackedEvent.from('', Buffer.from([0x80]), 0, 1, true)!);

/**
 * Where the str item at `pos` ends if it holds `id`'s characters, ASCII
 * (ids are): -1 if not (or not ASCII, or not a str: then decoding decides).
 */
function asciiAt(buf: Buffer, pos: number, id: string): number {
  const str = STR_BYTES;
  if (!strBytes(buf, pos, str)) return -1;
  const { start } = str;
  const length = str.end - start;
  if (length !== id.length || str.end > buf.length) return -1;
  for (let i = 0; i < length; i++) {
    const c = id.charCodeAt(i);
    if (c >= 0x80 || buf[start + i] !== c) return -1;
  }
  return start + length;
}

/** A string of ASCII bytes (ids, jids), which every decoder reads alike; undefined for any other. */
function shortText(buf: Buffer, start: number, end: number): string | undefined {
  for (let i = start; i < end; i++) if (buf[i] >= 0x80) return undefined;
  return (buf as unknown as Latin1Slicer).latin1Slice(start, end);
}

/** Buffer's own latin1 reader (what toString('latin1') calls, without its argument checks). */
interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/**
 * Whether `buf[start..end)` is packable() (below), writing where each of
 * FIELDS' values starts, relative to `start`, to `at` when it is a map: one
 * walk over the data.
 */
function scanned(buf: Buffer, start: number, end: number, at: number[]): boolean {
  try {
    const b = buf[start];
    if (!((b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf)) return checked(buf, start, end) === end;
    const size = itemSize(buf, start, end);
    if (size <= 0) return false;
    const count = childCount(buf, start, b) / 2;
    let pos = start + size;
    for (let i = 0; i < count; i++) {
      if (pos >= end || !scalarKey(buf[pos])) return false;
      const field = fieldAt(buf, pos);
      pos = checked(buf, pos, end);
      if (pos < 0) return false;
      if (field >= 0) at[field] = pos - start; // a key that comes twice: its last value, as decoding gives
      pos = checked(buf, pos, end);
      if (pos < 0) return false;
    }
    return pos === end;
  } catch {
    return false; // too deep for the stack: the codec decides
  }
}

/** Which of FIELDS the key at `pos` is (a string of the same bytes, any str encoding), or -1. */
function fieldAt(buf: Buffer, pos: number): number {
  const str = STR_BYTES;
  if (!strBytes(buf, pos, str)) return -1;
  const { start } = str;
  const length = str.end - start;
  next: for (let f = 0; f < NAMES.length; f++) {
    const name = NAMES[f];
    if (name.length !== length) continue;
    for (let i = 0; i < length; i++) if (buf[start + i] !== name[i]) continue next;
    return f;
  }
  return -1;
}

/**
 * Whether `buf[start..end)` is one msgpack value the codec decodes without
 * failing, into plain values only: no extension but Salt's datetime (ext
 * 79's inner bytes may be anything), no 0xc1, no key that is a container,
 * bin or an extension, and nothing after it.
 */
export function packable(buf: Buffer, start: number, end: number): boolean {
  return scanned(buf, start, end, [-1, -1, -1, -1, -1, -1, -1]);
}

/** End of the value at `pos` if packable() accepts it, else -1. Single-byte items and short strings, the most, without a call. */
function checked(buf: Buffer, pos: number, end: number): number {
  if (pos >= end) return -1;
  const b = buf[pos];
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return pos + 1;
  if (b >= 0xa0 && b <= 0xbf) return pos + 1 + (b & 0x1f) <= end ? pos + 1 + (b & 0x1f) : -1;
  const size = itemSize(buf, pos, end);
  if (size <= 0) return -1;
  if (isExt(b)) return extTypeAt(buf, pos, b) === DATETIME_EXT ? pos + size : -1;
  const children = childCount(buf, pos, b);
  if (children === 0) return pos + size;
  const isMap = (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
  pos += size;
  for (let i = 0; i < children; i++) {
    if (isMap && i % 2 === 0 && (pos >= end || !scalarKey(buf[pos]))) return -1;
    pos = checked(buf, pos, end);
    if (pos < 0) return -1;
  }
  return pos;
}

function isExt(b: number): boolean {
  return (b >= 0xd4 && b <= 0xd8) || (b >= 0xc7 && b <= 0xc9);
}

function extTypeAt(buf: Buffer, pos: number, b: number): number {
  if (b >= 0xd4) return buf.readInt8(pos + 1);
  return buf.readInt8(pos + (b === 0xc7 ? 2 : b === 0xc8 ? 3 : 5));
}

/** A key the codec makes a property name: a string, a number, a boolean or nil. */
function scalarKey(b: number): boolean {
  return (
    b <= 0x7f ||
    b >= 0xe0 ||
    (b >= 0xa0 && b <= 0xbf) ||
    b === 0xc0 ||
    b === 0xc2 ||
    b === 0xc3 ||
    (b >= 0xca && b <= 0xd3) ||
    (b >= 0xd9 && b <= 0xdb)
  );
}
