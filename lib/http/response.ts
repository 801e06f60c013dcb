/**
 * Writing an answer in pieces: the JSON of a result is made member by
 * member (a minion's return at a time) and written with backpressure, never
 * as one string. A string can't be longer than V8's ~512 MiB, and the whole
 * text, its byte length and the copy res.end() makes would each be as big as
 * the answer: 1,000 returns of 1 MiB are a 1 GiB answer.
 *
 * An answer under PIECE_BYTES goes out as before, with Content-Length; a
 * larger one goes out without it, as it is made (HTTP/1.1 chunked transfer
 * encoding; an HTTP/1.0 client reads it to the connection's end). Status and
 * headers are decided before the first byte: a failure after it can only cut
 * the connection, which the client sees as a truncated answer.
 *
 * A short answer (a refusal, GET) goes out at once by send().
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AnswerAbortedError, SendTimeoutError } from '../errors.js';
import { RawJson, keyText, memberJson, toJson } from '../json.js';
import { endAfterDrainingBody } from './linger.js';

/** Pieces are gathered up to this many characters before each write. */
export const PIECE_BYTES = 64 * 1024;
/**
 * `rest_wsgi: send_timeout`: what an answer hands the connection must be
 * taken within this, else the connection is destroyed (nginx's
 * send_timeout), so that a reader that stops reading holds nothing here.
 */
export const DEFAULT_SEND_TIMEOUT_MS = 60_000;

/** Containers this deep and above are written member by member; deeper ones whole. */
const SPLIT_DEPTH = 4;

/** A container whose JSON is surely under this is written whole: one JSON.stringify beats a walk. */
const WHOLE_CHARS = 1024 * 1024;

/**
 * The pieces of the JSON text of `value`: equal, joined, to toJson(value).
 * Plain objects, arrays, Maps and Sets down to SPLIT_DEPTH whose JSON may be
 * past WHOLE_CHARS are walked here, their other members gathered into
 * pieces of about PIECE_BYTES; every other value is toJson's own text.
 */
export function* jsonPieces(value: unknown, depth = 0, seen = new Set<object>()): Generator<string> {
  if (!walked(value, depth)) {
    yield memberJson(value) ?? 'null';
    return;
  }
  if (seen.has(value)) throw new TypeError('Converting circular structure to JSON');
  seen.add(value);
  const isList = Array.isArray(value) || value instanceof Set;
  let piece = isList ? '[' : '{';
  let first = true;
  if (isList) {
    for (const item of value as Iterable<unknown>) {
      if (!first) piece += ',';
      first = false;
      if (!memberless(item) && walked(item, depth + 1)) {
        yield piece;
        piece = '';
        yield* jsonPieces(item, depth + 1, seen);
        continue;
      }
      piece += memberless(item) ? 'null' : (memberJson(item) ?? 'null');
      if (piece.length >= PIECE_BYTES) {
        yield piece;
        piece = '';
      }
    }
  } else {
    const entries: Iterable<[unknown, unknown]> = value instanceof Map ? value.entries() : Object.entries(value);
    for (const [key, item] of entries) {
      if (memberless(item)) continue; // toJson leaves it out
      const walk = walked(item, depth + 1);
      const whole = walk ? undefined : memberJson(item);
      if (!walk && whole === undefined) continue; // a toJSON() that gave nothing
      piece += `${first ? '' : ','}${JSON.stringify(keyText(key))}:`;
      first = false;
      if (walk) {
        yield piece;
        piece = '';
        yield* jsonPieces(item, depth + 1, seen);
        continue;
      }
      piece += whole;
      if (piece.length >= PIECE_BYTES) {
        yield piece;
        piece = '';
      }
    }
  }
  yield piece + (isList ? ']' : '}');
  seen.delete(value as object);
}

/** Whether `value` is walked member by member: a big enough container, high enough. */
function walked(value: unknown, depth: number): value is object {
  return depth < SPLIT_DEPTH && value !== null && typeof value === 'object' && isWalked(value) && !shorterThan(value, WHOLE_CHARS);
}

/**
 * Whether the JSON of `value` is surely shorter than `limit` characters: a
 * count that stops as soon as it passes the limit (each container costs at
 * least 2, so a cycle ends it too).
 */
function shorterThan(value: unknown, limit: number): boolean {
  let left = limit;
  const stack: unknown[] = [value];
  while (stack.length > 0 && left >= 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object') left -= scalarChars(v);
    else if (v instanceof Uint8Array)
      left -= 2 * v.length + 2; // base64 or UTF-8 text, escaped at worst
    else if (v instanceof RawJson) left -= v.json.length;
    else if (Array.isArray(v)) {
      left -= v.length + 2;
      // Members that are not containers (a fleet's minion list, its
      // test.ping returns) are counted here, not stacked.
      for (let i = 0; i < v.length && left >= 0; i++) {
        const item: unknown = v[i];
        if (item === null || typeof item !== 'object') left -= scalarChars(item);
        else stack.push(item);
      }
    } else if (v instanceof Map || v instanceof Set) {
      left -= 2 * v.size + 2;
      if (left >= 0) for (const [k, item] of v.entries()) stack.push(k, item);
    } else if (isWalked(v)) {
      left -= 2;
      for (const k in v) {
        left -= k.length + 4;
        if (left < 0) break;
        const item: unknown = (v as Record<string, unknown>)[k];
        if (item === null || typeof item !== 'object') left -= scalarChars(item);
        else stack.push(item);
      }
    } else left -= 64; // a Date, a toJSON(): small in what the codec gives
  }
  return left >= 0;
}

/** The characters of a string's or other scalar's JSON (a string's escapes aside). */
function scalarChars(value: unknown): number {
  if (typeof value === 'string') return value.length + 2;
  return typeof value === 'boolean' ? 5 : 24; // null, numbers, bigints...
}

/** Plain objects, arrays, Maps and Sets: the containers walked member by member. */
function isWalked(value: object): boolean {
  if (Array.isArray(value) || value instanceof Map || value instanceof Set) return true;
  const proto = Object.getPrototypeOf(value);
  return (proto === Object.prototype || proto === null) && typeof (value as { toJSON?: unknown }).toJSON !== 'function';
}

/** A member toJson leaves out of an object (null in an array). */
function memberless(value: unknown): boolean {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol';
}

/**
 * Write `body` as the JSON answer with `status` and `headers` (set with
 * setHeader, so that wrappers can read them back), in pieces, waiting for
 * the connection to take each one. Rejects with AnswerAbortedError if the
 * connection closes first, or with the serializer's error (after the first
 * byte, the connection is then destroyed by the caller). Resolves with the
 * answer's length in characters.
 */
export function writeJsonAnswer(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  sendTimeoutMs = DEFAULT_SEND_TIMEOUT_MS,
): Promise<number> {
  return writePieces(res, status, jsonPieces(body), JSON_TYPE, headers, sendTimeoutMs);
}

const JSON_TYPE = 'application/json';

/**
 * Write the answer whose text is `pieces` joined, as writeJsonAnswer does
 * (gathered to PIECE_BYTES, each write waiting for the connection, a
 * Content-Length when it all fits in one piece), with `contentType`. A
 * connection that takes nothing for `sendTimeoutMs` is destroyed, during
 * the answer or after its end, and the wait rejects (SendTimeoutError).
 */
export async function writePieces(
  res: ServerResponse,
  status: number,
  pieces: Iterable<string>,
  contentType: string,
  headers: Record<string, string> = {},
  sendTimeoutMs = DEFAULT_SEND_TIMEOUT_MS,
): Promise<number> {
  let gathered: string[] = [];
  let gatheredLength = 0;
  let started = false;
  let written = 0;
  for (const piece of pieces) {
    gathered.push(piece);
    gatheredLength += piece.length;
    written += piece.length;
    if (gatheredLength < PIECE_BYTES) continue;
    if (!started) {
      start(res, status, headers, contentType);
      started = true;
    }
    const text = gathered.length === 1 ? gathered[0] : gathered.join('');
    gathered = [];
    gatheredLength = 0;
    await write(res, text, sendTimeoutMs);
  }
  const rest = gathered.join('');
  if (!started) {
    // Small: all of it is here, its length known.
    start(res, status, headers, contentType, Buffer.byteLength(rest));
    res.end(rest);
    return written;
  }
  res.end(rest);
  destroyUnlessTaken(res, sendTimeoutMs);
  if (written >= LARGE_ANSWER_CHARS) collectAfterLargeAnswer();
  return written;
}

/**
 * The answer's last bytes, handed over by end(): unless the connection takes
 * them within `ms`, `onStall` (default: the connection is destroyed).
 */
export function destroyUnlessTaken(res: ServerResponse, ms: number, onStall = (): void => void res.destroy()): void {
  if (res.writableFinished || res.destroyed) return;
  const timer = setTimeout(onStall, ms);
  const done = (): void => clearTimeout(timer);
  res.once('finish', done);
  res.once('close', done);
}

/** Past this, an answer's returns are many times what the server holds at rest. */
const LARGE_ANSWER_CHARS = 64 * 1024 * 1024;

/**
 * Give the memory of a large answer's returns back now: they are garbage
 * once written, but with nothing else allocating, V8 would collect them only
 * when its memory reducer gets to it, seconds later. Only when the process
 * exposes gc() (node --expose-gc; the command does).
 */
function collectAfterLargeAnswer(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc === 'function') setImmediate(gc);
}

function start(res: ServerResponse, status: number, headers: Record<string, string>, contentType: string, length?: number): void {
  if (res.destroyed) throw new AnswerAbortedError('The connection closed before the answer');
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', contentType);
  if (length !== undefined) res.setHeader('Content-Length', length);
  res.writeHead(status);
}

/**
 * Write `text`; resolve once the connection wants more. If it takes nothing
 * for `sendTimeoutMs`, it is destroyed and the wait rejects.
 */
export function write(res: ServerResponse, text: string, sendTimeoutMs = DEFAULT_SEND_TIMEOUT_MS): Promise<void> {
  if (res.destroyed) return Promise.reject(new AnswerAbortedError('The connection closed during the answer'));
  if (res.write(text)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const stalled = setTimeout(() => {
      done();
      res.destroy();
      reject(new SendTimeoutError(`The reader took nothing of the answer for ${sendTimeoutMs / 1000} s (send_timeout): connection closed`));
    }, sendTimeoutMs);
    const done = (): void => {
      clearTimeout(stalled);
      res.off('drain', onDrain);
      res.off('close', onDrain);
    };
    const onDrain = (): void => {
      done();
      if (res.destroyed && !res.writableFinished) reject(new AnswerAbortedError('The connection closed during the answer'));
      else resolve();
    };
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

/**
 * A short answer (a refusal, GET): compact JSON with its type and byte
 * length, headers set one by one; an answer sent before the body was read
 * (413) ends only once the body is drained (lib/http/linger.ts).
 */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
  lingerOn?: IncomingMessage,
): void {
  if (res.headersSent || res.destroyed) return;
  sendText(res, status, toJson(body), JSON_TYPE, headers, lingerOn);
}

/** send() of an answer already made into `text` of type `contentType`. */
export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType: string,
  headers: Readonly<Record<string, string>> = {},
  lingerOn?: IncomingMessage,
): void {
  if (res.headersSent || res.destroyed) return;
  // setHeader rather than writeHead(status, headers): wrappers (an access
  // log, middleware) can read them back with getHeader.
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(status);
  if (lingerOn) endAfterDrainingBody(lingerOn, res, text);
  else res.end(text); // Node leaves the body out for HEAD
}
