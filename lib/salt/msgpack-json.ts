/**
 * A minion's return from the event's msgpack straight to the answer's JSON
 * text, without the JavaScript objects in between: the text is exactly
 * what toJson (lib/json.ts) writes for what the codec (./codec.ts) decodes
 * from the same bytes. The rules that makes that so are the codec's and
 * toJson's, restated:
 *
 * - integers: their digits, past 2^53 too (the codec's BigInt);
 * - floats (32 and 64 bits): JavaScript's shortest form; NaN and Infinity: null;
 * - bin: its UTF-8 text if the bytes are UTF-8, else base64;
 * - map keys as the codec makes them strings (1 → "1", true → "true",
 *   nil → "null", `__proto__` → `__proto_`), in the order a JavaScript
 *   object has them: keys that are array indexes first, ascending, then the
 *   others as they came; a key that comes twice keeps its first place and
 *   its last value;
 * - Salt's ext 78 (datetime) and 79 (constant): decoded and written, one
 *   item at a time (rare, and their rules live in the codec).
 *
 * Where it cannot promise that text it throws NotTranscodable, and the
 * caller decodes instead: a string that is not UTF-8 (how the codec
 * decodes those is msgpackr's business), an extension msgpackr would read
 * as something else or refuse, a map key that is not a scalar.
 */
import { isUtf8 } from 'node:buffer';
import { bytesToText, toJson } from '../json.js';
import { CONSTANT_EXT, DATETIME_EXT, decode } from './codec.js';
import { itemSize, strBytes, type Span } from './frame-scanner.js';

/** Where a key's text lies (strBytes), reused: one per process, read at once. */
const KEY_BYTES: Span = { start: 0, end: 0 };

/** The bytes are not ones the transcoder can promise toJson's text for: decode them. */
export class NotTranscodable extends Error {}

/** toJson(decode(buf, start, end)), made from the bytes. Throws NotTranscodable (see above). */
export function msgpackToJson(buf: Buffer, start: number, end: number): string {
  const t = new Transcoder(buf, end);
  const next = t.value(start);
  if (next !== end) throw new NotTranscodable('not one msgpack value');
  // Joined, not built by `+=`: a rope of many small strings, each a heap
  // object, would cost a held return many times its length.
  return t.parts.join('');
}

/** Cap of a map checked for duplicate keys pair by pair; a larger one uses a Set. */
const PAIRWISE_KEYS = 12;

class Transcoder {
  readonly parts: string[] = [];
  /** Where the last key() ended. */
  private keyEnd = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly end: number,
  ) {}

  /** Writes the value at `pos`; returns where it ends. */
  value(pos: number): number {
    const buf = this.buf;
    const b = buf[pos];
    if (b <= 0x7f) {
      this.parts.push(String(b));
      return pos + 1;
    }
    if (b >= 0xe0) {
      this.parts.push(String(b - 0x100));
      return pos + 1;
    }
    if (b <= 0x8f) return this.map(pos + 1, b & 0x0f);
    if (b <= 0x9f) return this.array(pos + 1, b & 0x0f);
    if (b <= 0xbf) return this.str(pos + 1, b & 0x1f);
    switch (b) {
      case 0xc0:
        this.parts.push('null');
        return pos + 1;
      case 0xc2:
        this.parts.push('false');
        return pos + 1;
      case 0xc3:
        this.parts.push('true');
        return pos + 1;
      case 0xc4:
        return this.bin(pos + 2, buf[pos + 1]);
      case 0xc5:
        return this.bin(pos + 3, buf.readUInt16BE(pos + 1));
      case 0xc6:
        return this.bin(pos + 5, buf.readUInt32BE(pos + 1));
      case 0xd9:
        return this.str(pos + 2, buf[pos + 1]);
      case 0xda:
        return this.str(pos + 3, buf.readUInt16BE(pos + 1));
      case 0xdb:
        return this.str(pos + 5, buf.readUInt32BE(pos + 1));
      case 0xdc:
        return this.array(pos + 3, buf.readUInt16BE(pos + 1));
      case 0xdd:
        return this.array(pos + 5, buf.readUInt32BE(pos + 1));
      case 0xde:
        return this.map(pos + 3, buf.readUInt16BE(pos + 1));
      case 0xdf:
        return this.map(pos + 5, buf.readUInt32BE(pos + 1));
    }
    return this.scalar(pos, b);
  }

  /** Numbers and extensions: the items whose text is a number, or the codec's. */
  private scalar(pos: number, b: number): number {
    const size = this.size(pos);
    if (b >= 0xca && b <= 0xd3) {
      this.parts.push(numberText(this.buf, pos, b));
      return pos + size;
    }
    const type = extType(this.buf, pos, b);
    if (type !== DATETIME_EXT && type !== CONSTANT_EXT) throw new NotTranscodable(`msgpack item 0x${b.toString(16)}`);
    this.parts.push(toJson(decode(this.buf, pos, pos + size)));
    return pos + size;
  }

  private size(pos: number): number {
    const size = itemSize(this.buf, pos, this.end);
    if (size <= 0) throw new NotTranscodable('truncated msgpack');
    return size;
  }

  private str(pos: number, length: number): number {
    const end = pos + length;
    if (end > this.end) throw new NotTranscodable('truncated msgpack');
    this.parts.push(JSON.stringify(utf8(this.buf, pos, end)));
    return end;
  }

  private bin(pos: number, length: number): number {
    const end = pos + length;
    if (end > this.end) throw new NotTranscodable('truncated msgpack');
    this.parts.push(JSON.stringify(bytesToText(this.buf.subarray(pos, end))));
    return end;
  }

  private array(pos: number, count: number): number {
    this.parts.push('[');
    for (let i = 0; i < count; i++) {
      if (i > 0) this.parts.push(',');
      pos = this.value(pos);
    }
    this.parts.push(']');
    return pos;
  }

  /**
   * Written as it comes, which is the object's order unless a key is an
   * array index or comes twice: then written again in the object's order.
   */
  private map(pos: number, count: number): number {
    const start = pos;
    const mark = this.parts.length;
    const keys: string[] = new Array(count);
    let reordered = false;
    this.parts.push('{');
    for (let i = 0; i < count; i++) {
      const key = this.key(pos);
      keys[i] = key;
      reordered ||= isArrayIndex(key);
      this.parts.push(`${i > 0 ? ',' : ''}${JSON.stringify(key)}:`);
      pos = this.value(this.keyEnd);
    }
    this.parts.push('}');
    if (!reordered && !hasDuplicates(keys)) return pos;
    this.parts.length = mark;
    return this.mapInObjectOrder(start, count);
  }

  private mapInObjectOrder(pos: number, count: number): number {
    const members = new Map<string, string>();
    const parts = this.parts;
    for (let i = 0; i < count; i++) {
      const key = this.key(pos);
      const mark = parts.length;
      pos = this.value(this.keyEnd);
      members.set(key, parts.splice(mark).join(''));
    }
    const indexes = [...members.keys()].filter(isArrayIndex).sort((a, b) => Number(a) - Number(b));
    const ordered = [...indexes, ...[...members.keys()].filter((key) => !isArrayIndex(key))];
    parts.push(`{${ordered.map((key) => `${JSON.stringify(key)}:${members.get(key)}`).join(',')}}`);
    return pos;
  }

  /** The key at `pos` as the codec makes it a property name; keyEnd: where it ends. */
  private key(pos: number): string {
    const buf = this.buf;
    const str = KEY_BYTES;
    if (!strBytes(buf, pos, str)) return this.scalarKey(pos, buf[pos]);
    this.keyEnd = str.end;
    if (this.keyEnd > this.end) throw new NotTranscodable('truncated msgpack');
    const key = utf8(buf, str.start, this.keyEnd);
    return key === '__proto__' ? '__proto_' : key;
  }

  /** A key that is not a string: the codec's String() of it (msgpackr's asSafeString). */
  private scalarKey(pos: number, b: number): string {
    this.keyEnd = pos + 1;
    if (b <= 0x7f) return String(b);
    if (b >= 0xe0) return String(b - 0x100);
    if (b === 0xc0) return 'null';
    if (b === 0xc2) return 'false';
    if (b === 0xc3) return 'true';
    if (b < 0xca || b > 0xd3) throw new NotTranscodable(`map key 0x${b.toString(16)}`);
    this.keyEnd = pos + this.size(pos);
    return numberText(this.buf, pos, b, true);
  }
}

/**
 * The text of the number at `pos` (type `b`, 0xca-0xd3), as toJson writes
 * the codec's number or BigInt; as a key, as String() makes it (NaN, not null).
 */
function numberText(buf: Buffer, pos: number, b: number, asKey = false): string {
  let n: number;
  switch (b) {
    case 0xca:
      n = buf.readFloatBE(pos + 1);
      break;
    case 0xcb:
      n = buf.readDoubleBE(pos + 1);
      break;
    case 0xcc:
      return String(buf[pos + 1]);
    case 0xcd:
      return String(buf.readUInt16BE(pos + 1));
    case 0xce:
      return String(buf.readUInt32BE(pos + 1));
    case 0xcf:
      return buf.readBigUInt64BE(pos + 1).toString();
    case 0xd0:
      return String(buf.readInt8(pos + 1));
    case 0xd1:
      return String(buf.readInt16BE(pos + 1));
    case 0xd2:
      return String(buf.readInt32BE(pos + 1));
    default:
      return buf.readBigInt64BE(pos + 1).toString();
  }
  return asKey || Number.isFinite(n) ? String(n) : 'null';
}

/** The extension type of the ext item at `pos`, or -1 for any other item (0xc1: never used). */
function extType(buf: Buffer, pos: number, b: number): number {
  if (b >= 0xd4 && b <= 0xd8) return buf.readInt8(pos + 1);
  if (b === 0xc7) return buf.readInt8(pos + 2);
  if (b === 0xc8) return buf.readInt8(pos + 3);
  if (b === 0xc9) return buf.readInt8(pos + 5);
  return -1;
}

/**
 * UTF-8 text, when the bytes are UTF-8: then every decoder, the codec's
 * included, gives the same string. Replacement characters are where Node
 * found bytes that are not: those the codec may decode otherwise.
 */
export function utf8(buf: Buffer, start: number, end: number): string {
  const text = buf.toString('utf8', start, end);
  if (text.includes('\ufffd') && !isUtf8(buf.subarray(start, end))) throw new NotTranscodable('a string that is not UTF-8');
  return text;
}

/** A key a JavaScript object orders first: a canonical integer below 2^32 - 1. */
function isArrayIndex(key: string): boolean {
  const c = key.charCodeAt(0);
  if (!(c >= 0x30 && c <= 0x39) || key.length > 10) return false; // NaN for the empty key
  if (c === 0x30) return key.length === 1;
  for (let i = 1; i < key.length; i++) {
    const d = key.charCodeAt(i);
    if (d < 0x30 || d > 0x39) return false;
  }
  return Number(key) < 4294967295;
}

function hasDuplicates(keys: string[]): boolean {
  if (keys.length > PAIRWISE_KEYS) return new Set(keys).size !== keys.length;
  for (let i = 1; i < keys.length; i++) for (let j = 0; j < i; j++) if (keys[i] === keys[j]) return true;
  return false;
}
