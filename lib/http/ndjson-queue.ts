/**
 * What a streamed answer (./ndjson.ts) has made but its connection has not
 * taken yet. Its minion lines come from the event bus, which all requests
 * share and which can't wait for one reader: a line the connection can't
 * take now waits here, in order, and is handed over as the connection
 * drains. Waiting here, not in the socket's own buffer, it can be counted
 * and let go of: what waits is capped (`maxUnsentBytes`: past it push()
 * refuses the next line and the writer cuts the answer) and must move
 * (`sendTimeoutMs`: a connection that takes nothing for that long is
 * destroyed, as nginx's send_timeout closes one). README: Streamed answers.
 */
import type { ServerResponse } from 'node:http';
import { AnswerAbortedError } from '../errors.js';
import { PIECE_BYTES, destroyUnlessTaken } from './response.js';

export interface QueueLimits {
  /** Bytes of lines that may wait unsent before the next line cuts the answer; 0: no cap. */
  maxUnsentBytes: number;
  /** What the connection was handed must be taken within this, ms, else it is destroyed. */
  sendTimeoutMs: number;
}

/** The limits of the handler's options (`rest_wsgi: ndjson_max_unsent_bytes`, `send_timeout`); RangeError if they can't be used. */
export function queueLimits(maxUnsentBytes: unknown, sendTimeoutMs: unknown): QueueLimits {
  if (!Number.isInteger(maxUnsentBytes) || (maxUnsentBytes as number) < 0) {
    throw new RangeError(`ndjson_max_unsent_bytes must be a whole number of bytes (0: no cap), got ${String(maxUnsentBytes)}`);
  }
  if (typeof sendTimeoutMs !== 'number' || !(sendTimeoutMs > 0) || !Number.isFinite(sendTimeoutMs)) {
    throw new RangeError(`send_timeout must be a positive number of ms, got ${String(sendTimeoutMs)}`);
  }
  return { maxUnsentBytes: maxUnsentBytes as number, sendTimeoutMs };
}

/** What every streamed answer of a handler has waiting, for its stats and metrics. */
export interface UnsentTally {
  bytes: number;
}

export class LineQueue {
  /** Bytes of the lines waiting here (not those the connection already holds). */
  bytes = 0;
  /** The connection holds more than its high-water mark: lines wait here until it drains. */
  private blocked = false;
  private lines: string[] = [];
  private head = 0;
  private stall: NodeJS.Timeout | undefined;
  private waiters: Array<{ resolve(): void; reject(err: unknown): void }> = [];
  private closed = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly limits: QueueLimits,
    private readonly tally: UnsentTally,
    /** The connection took nothing for sendTimeoutMs (it is destroyed next). */
    private readonly onStall: () => void,
  ) {}

  /** Whether the connection is taking what it is handed, nothing waiting. */
  get flowing(): boolean {
    return !this.blocked;
  }

  /**
   * Hand `text` to the connection, or queue it behind what waits; false
   * (nothing queued) when what waits is already at the cap: one line may
   * take it past the cap, the next is refused.
   */
  push(text: string): boolean {
    const max = this.limits.maxUnsentBytes;
    if (this.blocked && max > 0 && this.bytes >= max) return false;
    this.append(text);
    return true;
  }

  /** push() without the cap: the pieces of a result written with backpressure, the error line. */
  append(text: string): void {
    if (this.closed) return;
    if (!this.blocked) {
      this.hand(text);
      return;
    }
    const bytes = Buffer.byteLength(text);
    this.lines.push(text);
    this.bytes += bytes;
    this.tally.bytes += bytes;
  }

  /** Hand `text` to the connection now, whatever it holds (the cut's error line, once what waited was let go). */
  force(text: string): void {
    if (!this.closed) this.hand(text);
  }

  /** Resolves once nothing waits and the connection wants more; rejects if it closes first. */
  whenFlowing(): Promise<void> {
    if (this.closed) return Promise.reject(new AnswerAbortedError('The connection closed during the answer'));
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Let go of every line waiting (the answer was cut): what the connection holds stays hers. */
  drop(): void {
    this.tally.bytes -= this.bytes;
    this.bytes = 0;
    this.lines = [];
    this.head = 0;
  }

  /** The answer's last bytes were handed over (res.end()): they too must be taken within sendTimeoutMs. */
  ended(): void {
    if (this.closed) return;
    this.disarm(); // one timer from here on: the end's, as a JSON answer's
    destroyUnlessTaken(this.res, this.limits.sendTimeoutMs, this.onStall);
  }

  /** The connection closed: let go of everything, end the waits. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.disarm();
    this.res.off('drain', this.onDrain);
    const err = new AnswerAbortedError('The connection closed during the answer');
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  private hand(text: string): void {
    if (this.res.write(text)) return;
    if (!this.blocked) this.res.once('drain', this.onDrain);
    this.blocked = true;
    this.armStall();
  }

  /** The connection took all it held: hand it what waits, a piece at a time, until it is full again or nothing waits. */
  private readonly onDrain = (): void => {
    while (this.head < this.lines.length) {
      const piece = this.take();
      if (!this.res.write(piece)) {
        this.res.once('drain', this.onDrain);
        this.stall?.refresh(); // it took something: the timeout starts again
        return;
      }
    }
    this.blocked = false;
    this.disarm();
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
  };

  /** The next lines, joined up to about PIECE_BYTES (one write, one chunk). */
  private take(): string {
    const lines = this.lines;
    let piece = '';
    do {
      piece += lines[this.head];
      lines[this.head++] = ''; // handed over: not held here any more
    } while (this.head < lines.length && piece.length < PIECE_BYTES);
    if (this.head === lines.length) {
      this.lines = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= lines.length) {
      // A reader that keeps just behind never empties the queue: its handed-over slots go.
      this.lines = lines.slice(this.head);
      this.head = 0;
    }
    const bytes = Buffer.byteLength(piece);
    this.bytes -= bytes;
    this.tally.bytes -= bytes;
    return piece;
  }

  private armStall(): void {
    if (this.stall) this.stall.refresh();
    else this.stall = setTimeout(this.onStall, this.limits.sendTimeoutMs);
  }

  private disarm(): void {
    clearTimeout(this.stall);
    this.stall = undefined;
  }
}
