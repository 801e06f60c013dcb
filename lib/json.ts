/**
 * JSON in and out with the integers Salt handles: Python's json keeps every
 * digit of an integer, JavaScript's JSON rounds past 2^53.
 *
 * parseJson: JSON.parse, except that integer literals past 2^53 become
 * BigInt (exact), as Python's json.loads gives int. Python reads `1e20` and
 * `1.0` as floats: so do we.
 *
 * toJson: the JSON text of the values the Salt codec produces.
 *
 * JSON.stringify can't be used as is: it throws on BigInt (minion returns
 * carry integers past 2^53: sizes, inodes, counters), writes a Buffer as
 * `{"type":"Buffer","data":[...]}` and a Map as `{}`. A replacer can't help
 * with BigInt either (it can only return a string, not bare digits, and
 * JSON.rawJSON is not in Node 20), so this walks the value itself and leaves
 * strings and numbers to JSON.stringify.
 *
 * - bigint: bare digits, exact.
 * - Buffer / Uint8Array (msgpack bin): the UTF-8 text if the bytes are valid
 *   UTF-8, else base64 (README: Differences from Python's rest_wsgi).
 * - Map: an object, keys as Python's json.dumps writes them (1 → "1",
 *   true → "true", null → "null").
 * - Date: ISO string. (The codec already gives Salt's datetime ext as a string.)
 * - RawJson: its text as is (a minion's return carried from the event's
 *   msgpack to JSON by lib/salt/msgpack-json.ts, never made into objects).
 * - undefined, functions, symbols: null in arrays, left out of objects.
 * - NaN / Infinity: null (as JSON.stringify).
 * - A value that contains itself: TypeError (a bug, never a codec value).
 */
import { isUtf8 } from 'node:buffer';

/**
 * A value whose JSON text is made already: toJson, memberJson and the
 * answer's writer (lib/http/response.ts) splice `json` in as it is. The
 * maker promises that `json` is the text toJson would give for the value
 * it stands for (lib/salt/msgpack-json.ts: a return's msgpack, transcoded).
 */
export class RawJson {
  constructor(readonly json: string) {}

  /** For JSON.stringify, which cannot splice text: the value itself (integers past 2^53 rounded, as JSON.parse does). */
  toJSON(): unknown {
    return JSON.parse(this.json);
  }
}

/** The JSON text of `value`. */
export function toJson(value: unknown): string {
  // Most results hold nothing JSON.stringify gets wrong: let it do the work
  // (it is ~10x faster than walking by hand).
  if (isPlainJson(value)) return JSON.stringify(value) ?? 'null';
  const parts: string[] = [];
  write(value, parts, new Set());
  return parts.join('');
}

/**
 * The JSON text of `value` as a member of an object, or undefined when it
 * has none there (undefined, a function, a symbol, a toJSON() giving one of
 * those): toJson leaves such a member out. The streaming writer's piece.
 */
export function memberJson(value: unknown): string | undefined {
  if (isPlainJson(value)) return JSON.stringify(value);
  const parts: string[] = [];
  return write(value, parts, new Set()) ? parts.join('') : undefined;
}

/** The text of a Map key or object key, as toJson writes it (without quotes). */
export function keyText(key: unknown): string {
  if (typeof key === 'string') return key;
  if (key instanceof Uint8Array) return bytesToText(key);
  return String(key);
}

const MAX_PLAIN_DEPTH = 200;

/**
 * Whether JSON.stringify writes `value` as toJson must: nothing but strings,
 * numbers, booleans, null, undefined, arrays and plain objects. Stops at the
 * first thing that isn't. Past MAX_PLAIN_DEPTH it says no, and the walk by
 * hand (which detects cycles) takes over.
 */
function isPlainJson(value: unknown, depth = 0): boolean {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth > MAX_PLAIN_DEPTH) return false;
  // Members that are strings or `true` (a fleet's minion list, its
  // test.ping returns) are passed over here rather than in a call each.
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item !== 'string' && typeof item !== 'boolean' && !isPlainJson(item, depth + 1)) return false;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  for (const key in value) {
    const item: unknown = (value as Record<string, unknown>)[key];
    if (typeof item !== 'string' && typeof item !== 'boolean' && !isPlainJson(item, depth + 1)) return false;
  }
  return true;
}

/** Text of bytes: UTF-8 when they are valid UTF-8, else base64. */
export function bytesToText(bytes: Uint8Array): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return isUtf8(buf) ? buf.toString('utf8') : buf.toString('base64');
}

/** Writes `value`; returns false when it has no JSON form (undefined, function, symbol). */
function write(value: unknown, out: string[], seen: Set<object>): boolean {
  switch (typeof value) {
    case 'string':
      out.push(JSON.stringify(value));
      return true;
    case 'number':
      out.push(Number.isFinite(value) ? String(value) : 'null');
      return true;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return true;
    case 'bigint':
      out.push(value.toString());
      return true;
    case 'undefined':
    case 'function':
    case 'symbol':
      return false;
  }
  if (value === null) {
    out.push('null');
    return true;
  }
  const obj = value as object;
  if (obj instanceof RawJson) {
    out.push(obj.json);
    return true;
  }
  if (obj instanceof Uint8Array) {
    out.push(JSON.stringify(bytesToText(obj)));
    return true;
  }
  if (obj instanceof Date) {
    out.push(Number.isNaN(obj.getTime()) ? 'null' : JSON.stringify(obj.toISOString()));
    return true;
  }
  if (seen.has(obj)) throw new TypeError('Converting circular structure to JSON');
  if (isPlainJson(obj)) {
    out.push(JSON.stringify(obj));
    return true;
  }
  seen.add(obj);
  if (Array.isArray(obj)) {
    out.push('[');
    for (let i = 0; i < obj.length; i++) {
      if (i > 0) out.push(',');
      if (!write(obj[i], out, seen)) out.push('null');
    }
    out.push(']');
  } else if (obj instanceof Map) {
    writeEntries(obj.entries(), out, seen);
  } else if (obj instanceof Set) {
    out.push('[');
    let first = true;
    for (const item of obj) {
      if (!first) out.push(',');
      first = false;
      if (!write(item, out, seen)) out.push('null');
    }
    out.push(']');
  } else if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    if (!write((obj as { toJSON(): unknown }).toJSON(), out, seen)) out.push('null');
  } else {
    writeEntries(Object.entries(obj), out, seen);
  }
  seen.delete(obj);
  return true;
}

function writeEntries(entries: Iterable<[unknown, unknown]>, out: string[], seen: Set<object>): void {
  out.push('{');
  let first = true;
  for (const [key, item] of entries) {
    const mark = out.length;
    out.push(first ? '' : ',', JSON.stringify(keyText(key)), ':');
    if (write(item, out, seen)) first = false;
    else out.length = mark; // no JSON form: the key goes too
  }
  out.push('}');
}

/** An integer literal this long may be past 2^53 (9007199254740992 has 16 digits). */
const MAYBE_BIG_INTEGER = /\d{16}/;

/**
 * JSON.parse, keeping integers past 2^53 exact as BigInt. Throws JSON.parse's
 * SyntaxError for invalid text. Like JSON.parse, a `__proto__` key becomes an
 * own property, never the prototype.
 */
export function parseJson(text: string): unknown {
  const value = JSON.parse(text) as unknown; // validates, and is the answer unless a long integer may be in it
  if (!MAYBE_BIG_INTEGER.test(text)) return value;
  return new ExactParser(text).parse();
}

/**
 * A JSON reader for text JSON.parse has already accepted (so it needn't
 * report errors): strings go through JSON.parse, integers too large for a
 * double become BigInt.
 */
class ExactParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parse(): unknown {
    const value = this.value();
    this.skipSpace();
    if (this.pos !== this.text.length) throw new SyntaxError('Unexpected data after JSON');
    return value;
  }

  private skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  private value(): unknown {
    this.skipSpace();
    const t = this.text;
    const c = t[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (t.startsWith('true', this.pos)) return this.literal(4, true);
    if (t.startsWith('false', this.pos)) return this.literal(5, false);
    if (t.startsWith('null', this.pos)) return this.literal(4, null);
    return this.number();
  }

  private literal<T>(length: number, value: T): T {
    this.pos += length;
    return value;
  }

  private object(): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    this.pos++; // {
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return obj;
    }
    for (;;) {
      this.skipSpace();
      const key = this.string();
      this.skipSpace();
      this.pos++; // :
      const item = this.value();
      if (key === '__proto__') Object.defineProperty(obj, key, { value: item, writable: true, enumerable: true, configurable: true });
      else obj[key] = item;
      this.skipSpace();
      if (this.text[this.pos++] === '}') return obj; // else ','
    }
  }

  private array(): unknown[] {
    const arr: unknown[] = [];
    this.pos++; // [
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.value());
      this.skipSpace();
      if (this.text[this.pos++] === ']') return arr; // else ','
    }
  }

  private string(): string {
    const t = this.text;
    const start = this.pos;
    let i = start + 1;
    let escaped = false;
    for (;;) {
      const c = t.charCodeAt(i);
      if (c === 0x5c /* backslash */) {
        escaped = true;
        i += 2;
      } else if (c === 0x22 /* " */) break;
      else i++;
    }
    this.pos = i + 1;
    return escaped ? (JSON.parse(t.slice(start, i + 1)) as string) : t.slice(start + 1, i);
  }

  private number(): number | bigint {
    const re = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
    re.lastIndex = this.pos;
    const m = re.exec(this.text)!;
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (m[1] === undefined && m[2] === undefined && !Number.isSafeInteger(n)) return BigInt(m[0]);
    return n;
  }
}
