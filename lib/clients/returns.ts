/**
 * Waiting for a published job's returns, as LocalClient.get_iter_returns
 * does (salt/client/__init__.py), but driven by events and timers instead of
 * a 10 ms polling loop:
 *
 * - every `salt/job/<jid>/...` event with a `return` counts its minion as
 *   found; one with `minions` (the `new` event) adds expected minions;
 * - once `timeout` has passed, `saltutil.find_job` is published to the
 *   minions still silent; one answering non-empty is still running the job,
 *   which pushes its own deadline `timeout` further and asks again after
 *   `gather_job_timeout`;
 * - the wait ends when every expected minion returned, or when no find_job
 *   round found a runner within `gather_job_timeout` and every silent
 *   minion's deadline has passed.
 *
 * A silent minion thus costs `timeout + gather_job_timeout`.
 *
 * On a master of masters (./syndic.ts) the minions come from the syndics'
 * `new` events: the wait ends on all returned only once some minion was
 * expected and `syndic_wait` has passed, and each find_job round waits
 * `syndic_wait` more (get_iter_returns' `order_masters` branches).
 */
import { performance } from 'node:perf_hooks';
import type { SaltEvent } from '../salt/event-bus.js';
import { fieldsOf, type EventFields } from '../salt/packed-event.js';
import { stringsIn } from '../objects.js';
import { abortError, busLostError, logAbandoned, watchWait, type ClientContext } from './context.js';
import { FindJobRound, type FindJobAnswers, type FindJobPublish } from './find-job-round.js';
import { IDLE_CONTEXT, JobWatch, KEPT_WATCH, type JobListener } from './job-watch.js';
import { MinionStates } from './minion-states.js';
import type { ResultBudget } from './result-budget.js';
import { keepShape } from '../shapes.js';
import { syndicWaitMs } from './syndic.js';

/** One minion's return as get_iter_returns yields it (`{"ret", "out", "retcode", "jid"}`). */
export interface MinionReturn {
  ret: unknown;
  out?: unknown;
  retcode?: unknown;
  jid?: unknown;
}

/**
 * Who is given a wait's returns: on a fleet's path an object of a class, the
 * same call target for every job (as JobListener: a closure made per job is
 * a new one, and V8's code optimized for the first job's returns starts over).
 */
export interface ReturnListener {
  onReturn(id: string, ret: MinionReturn, event: SaltEvent): void;
}

export interface CollectOptions {
  jid: string;
  /** The minions the publish reply named. */
  minions: readonly string[];
  timeoutMs: number;
  gatherJobTimeoutMs: number;
  /** Publish `saltutil.find_job` for this job to `targets` as job `jid` (already listened to); the jid the master gave it, or null when nothing was published. */
  findJob: FindJobPublish;
  /**
   * Given each return as it arrives (twice for a minion that returns
   * twice). The caller keeps what it needs of it: the wait keeps only
   * whether each minion returned, so that a fleet's returns are held once.
   */
  listener: ReturnListener;
  /** The request went away: reject at once (logged with the jid; the job keeps running). */
  signal?: AbortSignal;
  /** Stop waiting and resolve with what came so far (batch: failhard, or done). */
  stop?: AbortSignal;
  /** The job's events heard since before it was published; closed when the wait ends. Default: listen from now on. */
  watch?: JobWatch;
  /** What the call may hold of returns; past it the wait fails with 507. */
  budget?: ResultBudget;
  /**
   * A return that is a map or a list comes as the answer's JSON text
   * (RawJson, lib/json.ts), carried from the event's bytes: for a caller
   * that only writes it out. Otherwise it comes decoded.
   */
  rawReturns?: boolean;
}

export interface CollectResult {
  /** Expected minions (publish reply, `new` event, find_job findings) that never returned. */
  silent: string[];
  /** Minions the master reported missing (list targets naming unknown ids). */
  missing: Set<string>;
}

/** Wait for the returns of job `jid`. Rejects on abort (the job keeps running) or when the bus drops. */
export function collectReturns(ctx: ClientContext, options: CollectOptions): Promise<CollectResult> {
  return new Promise<CollectResult>((resolve, reject) => new ReturnsWait(ctx, options, resolve, reject).start());
}

/**
 * One wait's state. Everything on a return's way costs O(1): a fleet of
 * 20,000 must not pay for its size on each of its 20,000 returns (what is
 * kept of each minion: ./minion-states.ts; its return: the caller's).
 */
class ReturnsWait implements FindJobAnswers, JobListener {
  private readonly states: MinionStates;
  private readonly missing = new Set<string>();
  private readonly syndicWait: number;
  private readonly syndicWaitAt: number;
  private readonly returnTag: string;
  private readonly watch: JobWatch;
  private timeoutAt: number;
  /** True so that find_job is asked at least once. */
  private minionsRunning = true;
  private findJobPending = false;
  /** A timer's decision waits for the bus to hand over what it has unread. */
  private deciding = false;
  /** Written again in start(): see there. */
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private round: FindJobRound | undefined;
  private unwatch: () => void = () => {};

  constructor(
    private readonly ctx: ClientContext,
    private readonly options: CollectOptions,
    private readonly resolve: (result: CollectResult) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.syndicWait = syndicWaitMs(ctx.opts);
    const t = now();
    this.syndicWaitAt = t + this.syndicWait;
    this.timeoutAt = t + options.timeoutMs;
    this.returnTag = `salt/job/${options.jid}/ret/`;
    this.states = new MinionStates(options.timeoutMs);
    this.states.expectAll(options.minions, t);
    this.watch = options.watch ?? new JobWatch(ctx, options.jid);
  }

  start(): void {
    // Written twice (here and where declared): V8 then holds the field as one that changes, and
    // doesn't throw away the code optimized for a fleet's returns when the first wait settles.
    this.settled = false;
    const { ctx, options } = this;
    const { jid, signal } = options;
    if (signal?.aborted) {
      // It went away while the publish was on its way: the job runs all the same.
      this.watch.close();
      logAbandoned(ctx, jid);
      this.reject(abortError(signal));
      return;
    }
    if (!ctx.bus.connected) {
      this.watch.close();
      this.reject(busLostError(jid, `the returns of job ${jid}`));
      return;
    }
    this.unwatch = watchWait(
      ctx,
      signal,
      () => this.fail(busLostError(jid, `the returns of job ${jid}`)),
      () => {
        logAbandoned(ctx, jid);
        this.fail(abortError(signal!));
      },
    );
    options.stop?.addEventListener('abort', this.finish, { once: true });
    // The returns heard before the master's reply come first, and may settle the wait here.
    this.watch.listen(this);
    if (this.settled) return;
    if (options.stop?.aborted || this.complete()) this.finish();
    else this.schedule();
  }

  /**
   * Every expected minion returned; on a master of masters, also some
   * minion was expected and syndic_wait has passed (more syndics may yet
   * name theirs until then).
   */
  private complete(): boolean {
    if (this.states.pendingCount > 0) return false;
    return this.syndicWait === 0 || (this.states.expectedCount > 0 && now() > this.syndicWaitAt);
  }

  /** All returned: done, or (a master of masters) a look when syndic_wait ends. */
  private allReturned(): void {
    if (this.complete()) this.finish();
    else this.rescheduleIfIdle();
  }

  /** A deadline moved or a look is due: replan, unless find_job or a decision is under way (they replan). */
  private rescheduleIfIdle(): void {
    if (!this.findJobPending && !this.deciding) this.schedule();
  }

  /** A job event (JobListener): a method, not a closure per wait, so that every job's is the same call target. */
  onJobEvent(event: SaltEvent): void {
    if (this.settled) return;
    // Only the fields read here are decoded (lib/salt/packed-event.ts).
    const data = fieldsOf(event);
    if (!data) return;
    if (data.has('minions')) {
      this.heardMinions(data);
      return;
    }
    // Only the job's returns count (a syndic's forwarded events are heard for their `minions`).
    if (!event.tag.startsWith(this.returnTag) || !data.has('return')) return;
    const id = data.get('id');
    if (typeof id !== 'string') return;
    const { jid, budget } = this.options;
    if (budget) {
      try {
        budget.charge(event.packedBytes ?? 0, jid);
      } catch (err) {
        this.fail(err); // the returns held so far go with the wait
        return;
      }
    }
    const ret: MinionReturn = { ret: this.options.rawReturns ? data.answer('return') : data.get('return') };
    if (data.has('out')) ret.out = data.get('out');
    if (data.has('retcode')) ret.retcode = data.get('retcode');
    if (data.has('jid')) {
      // The job's own jid string rather than each return's copy of it, which
      // a caller keeping `ret` would keep once per minion.
      const itsJid = data.get('jid');
      ret.jid = itsJid === jid ? jid : itsJid;
    }
    this.states.returned(id);
    this.options.listener.onReturn(id, ret, event);
    if (this.states.pendingCount === 0) this.allReturned();
  }

  /**
   * The `new` event names the minions the publish reply named
   * (salt/master.py: ClearFuncs.publish): compared where they lie in the
   * event, cheaper than decoding 10,000 ids and a lookup each. A syndic's
   * names more.
   */
  private heardMinions(data: EventFields): void {
    if (!data.sameStrings('minions', this.options.minions)) {
      const t = now();
      for (const id of stringsIn(data.get('minions'))) this.states.expect(id, t);
    }
    for (const id of stringsIn(data.get('missing'))) this.missing.add(id);
  }

  findJobFailed(id: string): void {
    if (this.settled) return;
    this.states.forget(id);
    if (this.states.pendingCount === 0) this.allReturned();
  }

  minionsNamed(ids: string[]): void {
    if (this.settled) return;
    const t = now();
    for (const id of ids) this.states.expect(id, t);
  }

  stillRunning(id: string): void {
    if (this.settled) return;
    const t = now();
    this.states.expect(id, t);
    this.states.stillRunning(id, t);
    this.minionsRunning = true;
    // A deadline moved: the next look is due later than planned.
    this.rescheduleIfIdle();
  }

  private startFindJob(): void {
    // Only the minions still pending: those that returned are not asked.
    const targets = this.states.pending();
    this.minionsRunning = false;
    this.findJobPending = true;
    this.round?.close();
    const round = new FindJobRound(this.ctx, this);
    this.round = round;
    round.publish(this.options.findJob, targets).then(
      (open) => {
        if (this.settled) return;
        this.findJobPending = false;
        if (!open) return;
        // get_iter_returns starts the gather_job_timeout once the publish
        // returned; a master of masters waits syndic_wait more.
        this.timeoutAt = now() + this.options.gatherJobTimeoutMs + this.syndicWait;
        this.schedule();
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** The last deadline of a pending minion (or the round's end): O(minions), once per timer. */
  private latestDeadline(): number {
    return this.minionsRunning ? this.timeoutAt : this.states.latestDeadline(this.timeoutAt);
  }

  /** Next look: when find_job is due, or when the last deadline passes (Salt's comparisons are strict, hence the extra millisecond). */
  private schedule(): void {
    clearTimeout(this.timer);
    let at = this.latestDeadline();
    // All returned on a master of masters: syndic_wait's end is a look too.
    if (this.states.pendingCount === 0 && this.states.expectedCount > 0 && this.syndicWaitAt < at) at = this.syndicWaitAt;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - now()) + 1);
  }

  /**
   * A deadline passed. Before giving up on anyone (find_job, or the end),
   * the bus hands over what it has read or holds unread: a return the
   * master sent before the deadline must count, even when the bus is
   * behind (a burst of returns from a large fleet).
   */
  private readonly onTimer = (): void => {
    if (this.settled || this.findJobPending) return;
    this.deciding = true;
    this.ctx.bus.settle().then(() => {
      this.deciding = false;
      if (!this.settled && !this.findJobPending) this.decide();
    });
  };

  /** After a deadline, with the bus settled: done, a find_job round, or a later look. */
  private decide(): void {
    if (this.complete()) {
      this.finish();
      return;
    }
    const t = now();
    if (t > this.timeoutAt && this.minionsRunning) this.startFindJob();
    else if (!this.minionsRunning && t > this.latestDeadline()) this.finish();
    else this.schedule();
  }

  private release(): void {
    this.settled = true;
    this.options.stop?.removeEventListener('abort', this.finish);
    clearTimeout(this.timer);
    this.watch.close();
    this.round?.close();
    this.round = undefined;
    this.unwatch();
  }

  private readonly finish = (): void => {
    if (this.settled) return;
    this.release();
    this.resolve({ silent: this.states.pending(), missing: this.missing });
  };

  private fail(err: unknown): void {
    if (this.settled) return;
    this.release();
    this.reject(err);
  }
}

function now(): number {
  return performance.now();
}

// A wait and its returns die with their job: one of each kept, so that their
// shapes outlive them (lib/shapes.ts). A return is `{ret}` and then, as
// onJobEvent adds them, `retcode` and `jid` (every minion's return has them),
// `out` before them when the function names an outputter.
keepShape(
  new ReturnsWait(
    IDLE_CONTEXT,
    {
      jid: '',
      minions: [],
      timeoutMs: 0,
      gatherJobTimeoutMs: 0,
      findJob: async () => null,
      listener: { onReturn() {} },
      watch: KEPT_WATCH,
    },
    () => {},
    () => {},
  ),
);
for (const out of [undefined, 'nested']) {
  const ret: MinionReturn = { ret: true };
  if (out !== undefined) ret.out = out;
  ret.retcode = 0;
  ret.jid = '';
  keepShape(ret);
}
