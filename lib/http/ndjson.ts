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
 *   "status": 401, "code": "SRW_ERR_AUTHENTICATION", "return": "…"}`, the
 *   status and message of the JSON answer (lib/errors.ts's code), and the
 *   answer ends there as the JSON answer would;
 * - `{"heartbeat": true}` when nothing was written for heartbeatMs (15 s:
 *   under a proxy's idle timeout, nginx's 60 s), to be passed over.
 *
 * Folding the lines gives the JSON answer of the same request. The status
 * (200) goes out with the first line: until then a failing item is answered
 * as the JSON answer would be, status and all. Each line is made from its
 * return at once and handed to the connection with the minion lines made
 * within 10 ms (one write, not one a line): nothing holds the returns.
 * A line the connection can't take now waits, in order (./ndjson-queue.ts),
 * and what waits is capped: a reader that falls behind by `maxUnsentBytes`
 * gets, instead of the next line, the error line of ReaderTooSlowError
 * (507, with the jid), what waited is let go and the answer ends; the job
 * runs on. A reader that takes nothing for `sendTimeoutMs` is disconnected.
 * A line of one item's result is written in pieces, waiting for the
 * connection (as ./response.ts writes a JSON answer).
 */
import type { ServerResponse } from 'node:http';
import type { AnswerSink, ItemEnd } from '../clients/answer-sink.js';
import type { ItemReport } from '../clients/context.js';
import type { PreparedItem } from '../clients/netapi.js';
import { AnswerAbortedError, ClientGoneError, HttpError, ReaderTooSlowError, UNEXPECTED_ERROR_MESSAGE } from '../errors.js';
import { memberJson, toJson } from '../json.js';
import type { Hangup } from './hangup.js';
import { LineQueue, type QueueLimits, type UnsentTally } from './ndjson-queue.js';
import { DEFAULT_SEND_TIMEOUT_MS, PIECE_BYTES, jsonPieces } from './response.js';

export const NDJSON_TYPE = 'application/x-ndjson';
export const DEFAULT_HEARTBEAT_MS = 15_000;
const HEARTBEAT_LINE = '{"heartbeat":true}\n';

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

/** How an item is run (the handler's: with its audit record and metrics); `report` is filled in as it runs. */
export type ItemRunner = (
  item: PreparedItem,
  index: number,
  signal: AbortSignal | undefined,
  sink?: AnswerSink,
  report?: ItemReport,
) => Promise<unknown>;

const runPlain: ItemRunner = (item, _index, signal, sink, report) => item.run(signal, sink, report);

/** Why a streamed answer was cut short: its reader fell behind (the cap), or took nothing (the send timeout). */
export type CutReason = 'reader_behind' | 'send_timeout';

export interface StreamOptions {
  /** A line at least this often while nothing else is written, ms. */
  heartbeatMs: number;
  /** What may wait unsent and for how long (./ndjson-queue.ts); default 8 MiB and 60 s. */
  limits?: QueueLimits;
  /** Where the bytes waiting unsent are counted (the handler's stats). */
  tally?: UnsentTally;
  /** The answer was cut short; `message` says why, for the log. */
  onCut?(reason: CutReason, message: string): void;
  /** Item `index` is about to run. */
  onItem?(index: number): void;
  /** A failure once the stream began: the error as the JSON answer would answer it (its status and message; 500 if not an HttpError). */
  failure(err: unknown): unknown;
  /** Runs each item; default: item.run. */
  run?: ItemRunner;
}

/** 8 MiB: the default max_in_flight gives each request 8 MiB of the machine's memory (lib/http/settings.ts). */
export const DEFAULT_MAX_UNSENT_BYTES = 8 * 1024 * 1024;

/**
 * Run `items` in order, answering as newline-delimited JSON. Rejects, with
 * nothing written, when an item fails before the first line (the caller
 * answers as for JSON); once lines went out, a failure is an error line and
 * the answer's end. Rejects with ClientGoneError/AnswerAbortedError when the
 * client goes away (the waits end at once; the jobs run on).
 */
export async function streamAnswer(res: ServerResponse, items: PreparedItem[], hangup: Hangup, options: StreamOptions): Promise<void> {
  const out = new NdjsonWriter(res, hangup, options);
  const run = options.run ?? runPlain;
  let index = 0;
  try {
    for (; index < items.length; index++) {
      if (hangup.happened) throw new ClientGoneError();
      options.onItem?.(index);
      const item = items[index];
      const signal = item.waitsForJob ? out.signal : undefined;
      if (item.streamsMinions) await run(item, index, signal, out.sinkFor(index), out.report());
      else await out.result(index, await run(item, index, signal));
      out.check();
    }
  } catch (err) {
    if (!out.started || hangup.happened || res.destroyed || err instanceof AnswerAbortedError) {
      out.close();
      throw err;
    }
    // A cut answer ends with the cut, whatever the item's wait ended with.
    out.errorLine(index, options.failure(out.cutBy ?? err));
  }
  await out.end();
}

/**
 * The lines of one answer: the status on the first, a heartbeat when quiet,
 * minion lines through a LineQueue, and the cut once too many wait unsent.
 */
class NdjsonWriter {
  started = false;
  /** The answer was cut: its reader fell behind. */
  cutBy: ReaderTooSlowError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private midLine = false;
  /** A line that could not be written (a value with no JSON text): the answer ends there. */
  private broken: unknown;
  private readonly queue: LineQueue;
  private readonly limits: QueueLimits;
  /** Aborts the items' waits: the client went away, or the answer was cut. */
  private stop: AbortController | undefined;
  /** What the streamed item running now reported (its jid, for the cut's line). */
  private current: ItemReport | undefined;
  /**
   * Minion lines made and not yet handed over. A fleet's returns come some
   * twenty a millisecond: a write each would be a chunk of the answer and a
   * write(2) each, which on loopback costs the server more than everything
   * else a return takes. The lines of one read of the bus go out together,
   * once the read's events are all handed out (setImmediate: in the same
   * turn of the event loop, no wakeup of its own; in a burst the bus is
   * read once every busyReadMs, lib/salt/event-bus-options.ts), at once
   * past PIECE_BYTES, and before any other line. A 10 ms timer of their
   * own made each line up to 10 ms later than its read (npm run bench --
   * --only scale, the 10 s fleet: a line's median 16 ms after its return,
   * now 6).
   */
  private batch = '';
  private pendingFlush: NodeJS.Immediate | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly hangup: Hangup,
    private readonly options: StreamOptions,
  ) {
    this.limits = options.limits ?? { maxUnsentBytes: DEFAULT_MAX_UNSENT_BYTES, sendTimeoutMs: DEFAULT_SEND_TIMEOUT_MS };
    this.queue = new LineQueue(res, this.limits, options.tally ?? { bytes: 0 }, () => this.stalled());
    this.timer = setTimeout(() => this.heartbeat(), options.heartbeatMs);
    res.once('close', () => {
      this.close();
      this.queue.close();
    });
  }

  /** The signal of the items' waits: aborted when the client goes away, or with the cut. */
  get signal(): AbortSignal {
    if (!this.stop) {
      const stop = new AbortController();
      const hangup = this.hangup.signal;
      if (hangup.aborted) stop.abort();
      else hangup.addEventListener('abort', () => stop.abort(), { once: true });
      this.stop = stop;
    }
    return this.stop.signal;
  }

  /** A report for the streamed item about to run. */
  report(): ItemReport {
    this.current = {};
    return this.current;
  }

  /** Where item `index`'s minion entries go, each as its line. */
  sinkFor(index: number): AnswerSink {
    return {
      minion: (id, value) => this.lineOf(() => minionLine(index, id, 'return', value)),
      entry: (id, entry) => this.lineOf(() => minionLine(index, id, 'entry', entry)),
      done: (end: ItemEnd) => {
        this.lineOf(() => toJson({ item: index, done: true, ...end }));
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

  /** The line of item `index` failing with `answered` (an HttpError's status, code and message; else a 500), after what waits. */
  errorLine(index: number, answered: unknown): void {
    const line: Record<string, unknown> = { item: index, error: true, status: 500 };
    if (answered instanceof HttpError) {
      line.status = answered.status;
      line.code = answered.code;
      if (answered instanceof ReaderTooSlowError && answered.jid) line.jid = answered.jid;
    }
    line.return = answered instanceof HttpError ? answered.message : UNEXPECTED_ERROR_MESSAGE;
    const text = `${toJson(line)}\n`;
    this.flushBatch();
    // After the cut nothing waits: the line goes to the connection at once, behind what it holds.
    if (this.cutBy) this.queue.force(text);
    else void this.write(text).catch(() => {});
  }

  /** Throw what broke a line or cut the answer, if anything: the item then fails with it. */
  check(): void {
    if (this.cutBy !== undefined) throw this.cutBy;
    if (this.broken !== undefined) throw this.broken;
  }

  /** Once what waits is handed over (a cut answer: at once), the answer's end; it too must be taken within the send timeout. */
  async end(): Promise<void> {
    this.flushBatch();
    try {
      if (!this.cutBy) await this.queue.whenFlowing();
    } finally {
      this.close();
    }
    this.res.end();
    this.queue.ended();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    clearImmediate(this.pendingFlush);
    this.pendingFlush = undefined;
  }

  private lineOf(make: () => string): void {
    if (this.broken !== undefined || this.cutBy !== undefined || this.res.destroyed) return;
    let text: string;
    try {
      text = `${make()}\n`;
    } catch (err) {
      this.broken = err;
      return;
    }
    if (!this.started) this.start();
    this.timer?.refresh();
    this.batch += text;
    if (this.batch.length >= PIECE_BYTES) this.flushBatch();
    else this.pendingFlush ??= setImmediate(this.flushBatch);
  }

  /** The bus can't wait: the batch is queued, unless what waits is past the cap. */
  private readonly flushBatch = (): void => {
    clearImmediate(this.pendingFlush);
    this.pendingFlush = undefined;
    const text = this.batch;
    this.batch = '';
    if (text === '' || this.cutBy !== undefined || this.res.destroyed) return;
    if (!this.queue.push(text)) this.cut();
  };

  /** Too much waits unsent: let it go, stop the item's wait (from outside the bus's handler that gave the line). */
  private cut(): void {
    const err = new ReaderTooSlowError(this.queue.bytes, this.limits.maxUnsentBytes, this.current?.jid);
    this.cutBy = err;
    this.queue.drop();
    this.options.onCut?.('reader_behind', err.message);
    const stop = this.stop;
    queueMicrotask(() => stop?.abort(err));
  }

  /** The connection took nothing for the send timeout: it is destroyed, which ends the waits as a hang-up does. */
  private stalled(): void {
    const seconds = this.limits.sendTimeoutMs / 1000;
    this.options.onCut?.(
      'send_timeout',
      `The reader took nothing of this streamed answer for ${seconds} s (send_timeout): connection closed, ${this.queue.bytes} bytes unsent dropped`,
    );
    this.res.destroy();
  }

  private heartbeat(): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    // Not inside a result's line, written in pieces: that line's next piece
    // will come. Not to a reader that isn't reading: it would only wait.
    if (this.midLine || !this.queue.flowing) this.timer?.refresh();
    else void this.write(HEARTBEAT_LINE).catch(() => {});
  }

  /** Write `text` after what waits (the status first, once); resolves once the connection wants more. */
  private write(text: string): Promise<void> {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return Promise.reject(new AnswerAbortedError('The connection closed during the answer'));
    if (!this.started) this.start();
    this.timer?.refresh();
    this.flushBatch();
    if (this.cutBy) return Promise.reject(this.cutBy);
    this.queue.append(text);
    return this.queue.whenFlowing();
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

/**
 * toJson({item: index, minion: id, [key]: value}), written without making
 * the object: a fleet's lines are one per return, and a return held as its
 * JSON text (RawJson) would send the object through toJson's walk by hand.
 */
export function minionLine(index: number, id: string, key: 'return' | 'entry', value: unknown): string {
  const head = `{"item":${index},"minion":${JSON.stringify(id)}`;
  const member = memberJson(value);
  return member === undefined ? `${head}}` : `${head},"${key}":${member}}`;
}
