import { performance } from 'node:perf_hooks';

/**
 * When the event bus's socket is read. Each read(2) and the wakeup around
 * it cost about as much, on a small VM, as decoding the event it brings, so
 * the bus is not read once per event when it need not be:
 *
 * - nobody waiting on it (a stream of local_async jobs): once per idleMs,
 *   its frames only cut apart;
 * - someone waiting: an event after a quiet spell at once, and a burst (a
 *   fleet's returns) once per busyMs.
 *
 * A read that fills the buffer always reads on: more is waiting.
 */
export class ReadPacing {
  private timer: NodeJS.Timeout | undefined;
  private lastReadAt = Number.NEGATIVE_INFINITY;

  /** `resume` starts reading again after a pause. */
  constructor(
    private readonly idleMs: number,
    private readonly busyMs: number,
    private readonly resume: () => void,
  ) {}

  /** After a read that `filled` the buffer or not: whether to read on (true) or pause until the pause ends (false). */
  readOn(filled: boolean, waitedOn: boolean): boolean {
    if (filled) return true;
    const pauseMs = waitedOn ? this.burstPause() : this.idleMs;
    if (pauseMs === 0) return true;
    this.timer ??= setTimeout(this.pauseEnded, pauseMs);
    return false;
  }

  /**
   * What the read after a pause finds was sent during the burst: it counts
   * as read now, so that the read after it pauses again. Otherwise the pause
   * itself would pass for a quiet spell, and every pause would be followed
   * by a read of the one or two events that came since (twice the reads).
   */
  private readonly pauseEnded = (): void => {
    this.lastReadAt = performance.now();
    this.resumeNow();
  };

  /** End a pause now (a new subscriber, or a waiter about to decide); nothing when not paused. */
  resumeNow(): void {
    if (!this.timer) return;
    this.cancel();
    this.resume();
  }

  /** Forget a pause (the connection is gone). */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** No pause after a quiet spell, busyMs within a burst. */
  private burstPause(): number {
    const now = performance.now();
    const inBurst = now - this.lastReadAt < this.busyMs;
    this.lastReadAt = now;
    return inBurst ? this.busyMs : 0;
  }
}
