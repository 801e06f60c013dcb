/**
 * A request's body: read within a size limit and time limits, then parsed
 * as JSON the way Python's json module reads it.
 *
 * The time limits are checked by one sweep shared by every body being read,
 * not by two timers per request: almost every body is whole before a timer
 * could matter, and creating and clearing timers was a visible part of the
 * CPU a request costs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { BadRequestError, BodyTimeoutError, ClientGoneError, PayloadTooLargeError } from '../errors.js';
import { parseJson } from '../json.js';

/**
 * JSON nested deeper than this is refused (400) before anything looks at it:
 * Salt's msgpack packs at most 511 levels, and our own packing and checks
 * recurse. No Salt command comes near it.
 */
export const MAX_JSON_DEPTH = 512;

export const TOO_DEEP_MESSAGE = `400: JSON nested deeper than ${MAX_JSON_DEPTH} levels`;

export interface BodyLimits {
  /** Largest body read, bytes: past it, 413. */
  maxBytes: number;
  /** The whole body must arrive within this, ms, from when reading starts. */
  totalMs: number;
  /** No more than this may pass between two pieces of the body, ms. */
  idleMs: number;
}

/** A body being read, as the sweep sees it. */
interface Reading {
  startedAt: number;
  lastDataAt: number;
  fail(err: Error): void;
}

export class BodyReader {
  private readonly readings = new Set<Reading>();
  private sweeper: NodeJS.Timeout | undefined;
  /** How often the time limits are checked: a quarter of the shorter one, so a 408 is at most 25% late. */
  private readonly sweepMs: number;

  constructor(private readonly limits: BodyLimits) {
    this.sweepMs = Math.max(5, Math.min(1000, Math.floor(Math.min(limits.totalMs, limits.idleMs) / 4)));
  }

  /**
   * The body as bytes, reading at most `maxBytes` of them: a declared
   * Content-Length over the limit is refused before reading, and a stream
   * passing the limit stops being collected at once (what still arrives is
   * discarded by Node, never kept). A body that takes longer than `totalMs`,
   * or pauses longer than `idleMs`, is a 408: a client trickling its body
   * can't hold the request.
   */
  read(req: IncomingMessage, res: ServerResponse): Promise<Buffer> {
    const { maxBytes } = this.limits;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBytes) return Promise.reject(new PayloadTooLargeError());
    if (req.readableEnded) return Promise.reject(new BadRequestError('Request body already read'));

    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const now = performance.now();
      const reading: Reading = {
        startedAt: now,
        lastDataAt: now,
        fail: (err) => {
          cleanup();
          chunks.length = 0;
          reject(err);
        },
      };
      const cleanup = () => {
        this.readings.delete(reading);
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onGone);
        res.off('close', onGone);
      };
      const onData = (chunk: Buffer) => {
        reading.lastDataAt = performance.now();
        size += chunk.length;
        if (size > maxBytes) {
          reading.fail(new PayloadTooLargeError());
          return;
        }
        chunks.push(chunk);
      };
      const onEnd = () => {
        cleanup();
        resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
      };
      const onGone = () => reading.fail(new ClientGoneError());
      this.readings.add(reading);
      // Unref'd: the request's socket keeps the process alive while a body is read.
      this.sweeper ??= setInterval(() => this.sweep(), this.sweepMs).unref();
      req.on('data', onData);
      req.once('end', onEnd);
      req.once('error', onGone);
      res.once('close', onGone);
    });
  }

  private sweep(): void {
    // Stopped here rather than when the last body is read: under load bodies
    // come and go all the time, and the interval would be made per request.
    if (this.readings.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = performance.now();
    const { totalMs, idleMs } = this.limits;
    for (const reading of this.readings) {
      if (now - reading.startedAt >= totalMs || now - reading.lastDataAt >= idleMs) reading.fail(new BodyTimeoutError());
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body's JSON (400 when it is not UTF-8, not JSON, or nested past MAX_JSON_DEPTH). */
export function parseBody(raw: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(raw); // also drops a leading BOM
  } catch {
    throw new BadRequestError('400: Request body is not valid UTF-8');
  }
  let body: unknown;
  try {
    // Integers past 2^53 stay exact (BigInt), as Python's json keeps them.
    // A `__proto__` key stays an own property, and parsed input is never
    // merged into other objects: it can't pollute prototypes.
    body = parseJson(text);
  } catch (err) {
    throw new BadRequestError(`400: ${jsonErrorMessage(err)}`);
  }
  // Nesting that deep needs two bytes a level.
  if (raw.length > 2 * MAX_JSON_DEPTH && deeperThan(body, MAX_JSON_DEPTH)) throw new BadRequestError(TOO_DEEP_MESSAGE);
  return body;
}

/**
 * V8's parser message on one line, without the excerpt of the input it
 * quotes for some errors (`Unexpected token 'x', "xyz..." is not valid JSON`):
 * the body may hold a password.
 */
function jsonErrorMessage(err: unknown): string {
  // Our exact-integer reader recursing on a 100,000-deep body.
  if (err instanceof RangeError) return `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
  const message = err instanceof Error ? err.message : String(err);
  // The excerpt follows the token and may span lines: keep only what is before it.
  const token = /^Unexpected token '[\s\S]{1,2}'(?=, )/.exec(message);
  if (token) return `${token[0]} in JSON`;
  // V8's other messages quote nothing of the input; anything else is not shown.
  return /^[^"\n]{1,200}$/.test(message) ? message : 'Invalid JSON';
}

/** Whether arrays and objects in `value` nest deeper than `max` (without recursion: the input may be 100,000 deep). */
export function deeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  const stack: object[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const item = stack.pop()!;
    const depth = depths.pop()!;
    if (depth > max) return true;
    const children: unknown[] = Array.isArray(item) ? item : Object.values(item);
    for (const child of children) {
      if (child !== null && typeof child === 'object') {
        stack.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}
