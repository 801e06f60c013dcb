/**
 * The streamed answer: `Accept: application/x-ndjson` on the same POST gets
 * the answer as newline-delimited JSON, one object a line, each written as
 * soon as it is known (README: Streamed answers):
 *
 * - local, local_subset, local_batch: a line per minion as its return
 *   arrives, `{"item": 0, "minion": "minion1", "return": true}` (`entry`
 *   instead of `return` for local_batch with `raw`), then a line per minion
 *   that never returned, as the JSON answer shows it, then the item's end,
 *   `{"item": 0, "done": true, "jid": …, "returned": N, "missing": M}`;
 * - any other client: one line, `{"item": 1, "return": …}`;
 * - an item failing once lines went out: `{"item": 1, "error": true,
 *   "status": 401, "return": "…"}`, the status and message of the JSON
 *   answer, and the answer ends there as the JSON answer would;
 * - `{"heartbeat": true}` when nothing was written for heartbeatMs (15 s:
 *   under a proxy's idle timeout, nginx's 60 s), to be passed over.
 *
 * Folding the lines gives the JSON answer of the same request. The status
 * (200) goes out with the first line: until then a failing item is answered
 * as the JSON answer would be, status and all. Each line is made from its
 * return and written at once: nothing holds the returns, and what waits in
 * memory is what the connection has not taken yet. A line of one item's
 * result is written in pieces, waiting for the connection (as
 * ./response.ts writes a JSON answer).
 */
import type { ServerResponse } from 'node:http';
import type { AnswerSink, ItemEnd } from '../clients/answer-sink.js';
import type { PreparedItem } from '../clients/netapi.js';
import { AnswerAbortedError, ClientGoneError, HttpError, UNEXPECTED_ERROR_MESSAGE } from '../errors.js';
import { toJson } from '../json.js';
import type { Hangup } from './hangup.js';
import { PIECE_BYTES, jsonPieces, write } from './response.js';

export const NDJSON_TYPE = 'application/x-ndjson';
export const DEFAULT_HEARTBEAT_MS = 15_000;
const HEARTBEAT_LINE = '{"heartbeat":true}\n';
/** Minion lines are written together at most this long after the first of them is made, ms. */
const BATCH_MS = 10;

/**
 * Whether an Accept header asks for the streamed answer: it names
 * application/x-ndjson with a weight above 0 and not below that of
 * application/json, when it names that too. Wildcards never choose it:
 * `*\/*` is the JSON answer.
 */
export function wantsNdjson(accept: string | string[] | undefined): boolean {
  if (accept === undefined) return false;
  const header = Array.isArray(accept) ? accept.join(',') : accept;
  if (!header.toLowerCase().includes(NDJSON_TYPE)) return false; // what nearly every request takes
  let ndjson = 0;
  let json = -1;
  for (const range of header.split(',')) {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    const weight = params.find((p) => /^q\s*=/.test(p));
    const q = weight === undefined ? 1 : Number(weight.slice(weight.indexOf('=') + 1).trim());
    if (!Number.isFinite(q)) continue;
    if (type === NDJSON_TYPE) ndjson = Math.max(ndjson, q);
    else if (type === 'application/json') json = Math.max(json, q);
  }
  return ndjson > 0 && ndjson >= json;
}

/** How an item is run (the handler's: with its audit record and metrics). */
export type ItemRunner = (item: PreparedItem, index: number, signal: AbortSignal | undefined, sink?: AnswerSink) => Promise<unknown>;

const runPlain: ItemRunner = (item, _index, signal, sink) => item.run(signal, sink);

export interface StreamOptions {
  /** A line at least this often while nothing else is written, ms. */
  heartbeatMs: number;
  /** Item `index` is about to run. */
  onItem?(index: number): void;
  /** A failure once the stream began: the error as the JSON answer would answer it (its status and message; 500 if not an HttpError). */
  failure(err: unknown): unknown;
  /** Runs each item; default: item.run. */
  run?: ItemRunner;
}

/**
 * Run `items` in order, answering as newline-delimited JSON. Rejects, with
 * nothing written, when an item fails before the first line (the caller
 * answers as for JSON); once lines went out, a failure is an error line and
 * the answer's end. Rejects with ClientGoneError/AnswerAbortedError when the
 * client goes away (the waits end at once; the jobs run on).
 */
export async function streamAnswer(res: ServerResponse, items: PreparedItem[], hangup: Hangup, options: StreamOptions): Promise<void> {
  const out = new NdjsonWriter(res, options.heartbeatMs);
  const run = options.run ?? runPlain;
  let index = 0;
  try {
    for (; index < items.length; index++) {
      if (hangup.happened) throw new ClientGoneError();
      options.onItem?.(index);
      const item = items[index];
      const signal = item.waitsForJob ? hangup.signal : undefined;
      if (item.streamsMinions) await run(item, index, signal, out.sinkFor(index));
      else await out.result(index, await run(item, index, signal));
      out.check();
    }
  } catch (err) {
    if (!out.started || hangup.happened || res.destroyed || err instanceof AnswerAbortedError) {
      out.close();
      throw err;
    }
    const answered = options.failure(err);
    const [status, message] = answered instanceof HttpError ? [answered.status, answered.message] : [500, UNEXPECTED_ERROR_MESSAGE];
    out.line(toJson({ item: index, error: true, status, return: message }));
  }
  out.close();
  res.end();
}

/** The lines of one answer: the status on the first, a heartbeat when quiet. */
class NdjsonWriter {
  started = false;
  private timer: NodeJS.Timeout | undefined;
  private midLine = false;
  /** A line that could not be written (a value with no JSON text): the answer ends there. */
  private broken: unknown;
  /**
   * Minion lines made and not yet written, joined by newlines. A fleet's
   * returns come some twenty a millisecond: a write each would be a chunk
   * of the answer and a write(2) each, which on loopback costs the server
   * more than everything else a return takes. They go out together
   * BATCH_MS after the first (a line is that much later at most), at once
   * past PIECE_BYTES, and before any other line.
   */
  private batch = '';
  private batchTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    heartbeatMs: number,
  ) {
    this.timer = setTimeout(() => this.heartbeat(), heartbeatMs);
    res.once('close', () => this.close());
  }

  /**
   * Where item `index`'s minion entries go, each as its line. Each line is
   * made at once; the lines made within BATCH_MS go out as one write (see
   * `batch`).
   */
  sinkFor(index: number): AnswerSink {
    return {
      minion: (id, value) => this.batched(() => toJson({ item: index, minion: id, return: value })),
      entry: (id, entry) => this.batched(() => toJson({ item: index, minion: id, entry })),
      done: (end: ItemEnd) => {
        this.batched(() => toJson({ item: index, done: true, ...end }));
        this.flushBatch(); // the item's end goes out when it ends
      },
    };
  }

  /** Item `index`'s result as one line, in pieces: it may be past what one string holds. */
  async result(index: number, value: unknown): Promise<void> {
    let piece = `{"item":${index},"return":`;
    this.midLine = true;
    for (const part of jsonPieces(value)) {
      piece += part;
      if (piece.length < PIECE_BYTES) continue;
      await this.write(piece);
      piece = '';
    }
    this.midLine = false;
    await this.write(`${piece}}\n`);
  }

  /** A line's text, once made; written at once whatever the connection holds (the bus can't wait). */
  line(text: string): void {
    this.flushBatch(); // the minion lines made before it come first
    void this.write(`${text}\n`).catch(() => {});
  }

  /** Throw what broke a line, if any: the item then fails as its JSON answer would (500). */
  check(): void {
    if (this.broken !== undefined) throw this.broken;
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
  }

  /** A minion line, made now, written with the batch. */
  private batched(make: () => string): void {
    if (this.broken !== undefined || this.res.destroyed) return;
    let text: string;
    try {
      text = make();
    } catch (err) {
      this.broken = err;
      return;
    }
    this.batch = this.batch === '' ? text : `${this.batch}\n${text}`;
    if (this.batch.length >= PIECE_BYTES) this.flushBatch();
    else this.batchTimer ??= setTimeout(() => this.flushBatch(), BATCH_MS);
  }

  private flushBatch(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    const text = this.batch;
    this.batch = '';
    if (text !== '' && !this.res.destroyed) this.line(text);
  }

  private heartbeat(): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    // Not inside a result's line, written in pieces: that line's next piece will come.
    if (this.midLine) this.timer?.refresh();
    else void this.write(HEARTBEAT_LINE).catch(() => {});
  }

  /** Write `text` (the status first, once); resolves once the connection wants more. */
  private write(text: string): Promise<void> {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return Promise.reject(new AnswerAbortedError('The connection closed during the answer'));
    if (!this.started) this.start();
    this.timer?.refresh();
    return write(res, text);
  }

  private start(): void {
    this.started = true;
    const res = this.res;
    res.setHeader('Content-Type', NDJSON_TYPE);
    res.setHeader('Cache-Control', 'no-cache');
    // nginx passes each line on as it comes instead of buffering the answer.
    res.setHeader('X-Accel-Buffering', 'no');
    res.writeHead(200);
  }
}
