/**
 * JSON text of the values the Salt codec produces.
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
 *   UTF-8, else base64 (CONTRACT.md, "Responses").
 * - Map: an object, keys as Python's json.dumps writes them (1 → "1",
 *   true → "true", null → "null").
 * - Date: ISO string. (The codec already gives Salt's datetime ext as a string.)
 * - undefined, functions, symbols: null in arrays, left out of objects.
 * - NaN / Infinity: null (as JSON.stringify).
 * - A value that contains itself: TypeError (a bug, never a codec value).
 */
import { isUtf8 } from 'node:buffer';

/** The JSON text of `value`. */
export function toJson(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, new Set());
  return parts.join('');
}

/** Text of bytes: UTF-8 when they are valid UTF-8, else base64. */
export function bytesToText(bytes: Uint8Array): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return isUtf8(buf) ? buf.toString('utf8') : buf.toString('base64');
}

function keyText(key: unknown): string {
  if (typeof key === 'string') return key;
  if (key instanceof Uint8Array) return bytesToText(key);
  return String(key);
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
  if (obj instanceof Uint8Array) {
    out.push(JSON.stringify(bytesToText(obj)));
    return true;
  }
  if (obj instanceof Date) {
    out.push(Number.isNaN(obj.getTime()) ? 'null' : JSON.stringify(obj.toISOString()));
    return true;
  }
  if (seen.has(obj)) throw new TypeError('Converting circular structure to JSON');
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
