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
import { isPlainObject, stringsIn } from '../objects.js';
import { abortError, busLostError, logAbandoned, watchWait, type ClientContext } from './context.js';
import { JobWatch } from './job-watch.js';
import { newJid } from './jid.js';
import type { ResultBudget } from './result-budget.js';
import { syndicWaitMs } from './syndic.js';

/** One minion's return as get_iter_returns yields it (`{"ret", "out", "retcode", "jid"}`). */
export interface MinionReturn {
  ret: unknown;
  out?: unknown;
  retcode?: unknown;
  jid?: unknown;
}

export interface CollectOptions {
  jid: string;
  /** The minions the publish reply named. */
  minions: readonly string[];
  timeoutMs: number;
  gatherJobTimeoutMs: number;
  /** Publish `saltutil.find_job` for this job to `targets` as job `jid` (already listened to); the jid the master gave it, or null when nothing was published. */
  findJob(targets: string[], jid: string): Promise<string | null>;
  /**
   * Called for each return as it arrives (twice for a minion that returns
   * twice). The caller keeps what it needs of it: the wait keeps only
   * whether each minion returned, so that a fleet's returns are held once.
   */
  onReturn(id: string, ret: MinionReturn, event: SaltEvent): void;
  /** The request went away: reject at once (logged with the jid; the job keeps running). */
  signal?: AbortSignal;
  /** Stop waiting and resolve with what came so far (batch: failhard, or done). */
  stop?: AbortSignal;
  /** The job's events heard since before it was published; closed when the wait ends. Default: listen from now on. */
  watch?: JobWatch;
  /** What the call may hold of returns; past it the wait fails with 507. */
  budget?: ResultBudget;
}

export interface CollectResult {
  /** Expected minions (publish reply, `new` event, find_job findings) that never returned. */
  silent: string[];
  /** Minions the master reported missing (list targets naming unknown ids). */
  missing: Set<string>;
}

/** Wait for the returns of job `jid`. Rejects on abort (the job keeps running) or when the bus drops. */
export function collectReturns(ctx: ClientContext, options: CollectOptions): Promise<CollectResult> {
  return new Promise<CollectResult>((resolve, reject) => {
    const { jid, timeoutMs, gatherJobTimeoutMs, signal } = options;
    // Everything below costs O(1) per return and per minion added: a fleet
    // of 20,000 must not pay for its size on each of its 20,000 returns.
    // One map says it all for each minion: its deadline while it is pending
    // (`timeout` after it became expected, or after it last said through
    // find_job that it is still running the job), RETURNED once it returned,
    // RETURNED_UNEXPECTED if it returned before it was expected. Deadlines
    // are whole milliseconds: V8 keeps small integers in the map itself,
    // where a fraction would be one more heap object per minion. The returns
    // themselves are the caller's (onReturn).
    const expected = new Map<string, number>();
    let pendingCount = 0;
    /** Minions expected (returned or not): get_iter_returns' `len(minions)`. */
    let expectedCount = 0;
    const syndicWait = syndicWaitMs(ctx.opts);
    const syndicWaitAt = now() + syndicWait;
    const returnTag = `salt/job/${jid}/ret/`;
    const missing = new Set<string>();
    let timeoutAt = now() + timeoutMs;
    // True so that find_job is asked at least once.
    let minionsRunning = true;
    let findJobPending = false;
    /** A timer's decision waits for the bus to hand over what it has unread. */
    let deciding = false;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let findJobWatch: JobWatch | undefined;
    let extraFindJobWatch: JobWatch | undefined;
    const added = now();
    const minions = options.minions;
    for (let i = 0; i < minions.length; i++) expect(minions[i], added);
    const watch = options.watch ?? new JobWatch(ctx, jid);

    if (signal?.aborted) {
      // It went away while the publish was on its way: the job runs all the same.
      watch.close();
      logAbandoned(ctx, jid);
      reject(abortError(signal));
      return;
    }

    if (!ctx.bus.connected) {
      watch.close();
      reject(busLostError(jid, `the returns of job ${jid}`));
      return;
    }
    const unwatch = watchWait(
      ctx,
      signal,
      () => fail(busLostError(jid, `the returns of job ${jid}`)),
      () => {
        logAbandoned(ctx, jid);
        fail(abortError(signal!));
      },
    );
    options.stop?.addEventListener('abort', finish, { once: true });
    // The returns heard before the master's reply come first, and may settle the wait here.
    watch.listen(onJobEvent);
    if (settled) return;
    if (options.stop?.aborted) finish();
    else if (complete()) finish();
    else schedule();

    /** `id` is expected: pending unless it returned already; its deadline starts now (once). */
    function expect(id: string, t = now()): void {
      const state = expected.get(id);
      if (state === RETURNED_UNEXPECTED) {
        expected.set(id, RETURNED);
        expectedCount++;
      }
      if (state !== undefined) return;
      expected.set(id, deadline(t));
      pendingCount++;
      expectedCount++;
    }

    /**
     * Every expected minion returned; on a master of masters, also some
     * minion was expected and syndic_wait has passed (more syndics may yet
     * name theirs until then).
     */
    function complete(): boolean {
      if (pendingCount > 0) return false;
      return syndicWait === 0 || (expectedCount > 0 && now() > syndicWaitAt);
    }

    /** All returned: done, or (a master of masters) a look when syndic_wait ends. */
    function allReturned(): void {
      if (complete()) finish();
      else if (!findJobPending && !deciding) schedule();
    }

    /** A minion's deadline, `timeout` after `t`, in whole ms. */
    function deadline(t: number): number {
      return Math.ceil(t + timeoutMs);
    }

    /** `id` returned (expected or not, yet), or is no longer waited for (`forget`). */
    function done(id: string, forget = false): void {
      const state = expected.get(id);
      if (forget) {
        if (state === undefined) return;
        expected.delete(id);
        if (state !== RETURNED_UNEXPECTED) expectedCount--;
      } else if (state === undefined) expected.set(id, RETURNED_UNEXPECTED);
      else if (state > 0) expected.set(id, RETURNED);
      if (state !== undefined && state > 0) pendingCount--;
    }

    function onJobEvent(event: SaltEvent): void {
      if (settled) return;
      const data = event.data;
      if (!isPlainObject(data)) return;
      if ('minions' in data) {
        // The `new` event names the minions the publish reply named
        // (salt/master.py: ClearFuncs.publish): a comparison, cheaper than
        // a lookup per minion. A syndic's names more.
        if (!sameIds(data.minions, options.minions)) {
          const t = now();
          for (const id of stringsIn(data.minions)) expect(id, t);
        }
        for (const id of stringsIn(data.missing)) missing.add(id);
        return;
      }
      // Only the job's returns count (a syndic's forwarded events are heard for their `minions`).
      if (!event.tag.startsWith(returnTag) || !('return' in data) || typeof data.id !== 'string') return;
      const id = data.id;
      if (options.budget) {
        try {
          options.budget.charge(event.packedBytes ?? 0, jid);
        } catch (err) {
          fail(err); // the returns held so far go with the wait
          return;
        }
      }
      const ret: MinionReturn = { ret: data.return };
      if ('out' in data) ret.out = data.out;
      if ('retcode' in data) ret.retcode = data.retcode;
      // The job's own jid string rather than each return's copy of it, which
      // a caller keeping `ret` would keep once per minion.
      if ('jid' in data) ret.jid = data.jid === jid ? jid : data.jid;
      done(id);
      options.onReturn(id, ret, event);
      if (pendingCount === 0) allReturned();
    }

    function onFindJobEvent(event: SaltEvent): void {
      if (settled) return;
      const data = event.data;
      if (!isPlainObject(data)) return;
      const id = typeof data.id === 'string' ? data.id : undefined;
      // The minion failed to run find_job itself: stop waiting for it.
      if (typeof data.retcode === 'number' && data.retcode > 0 && id !== undefined) {
        ctx.logger.debug(`saltutil.find_job returned errors on minion ${id}`);
        done(id, true);
        if (pendingCount === 0) allReturned();
        return;
      }
      if ('minions' in data) {
        for (const m of stringsIn(data.minions)) expect(m);
        return;
      }
      // An (older) syndic's answer names the minions behind it.
      if ('syndic' in data) {
        for (const m of stringsIn(data.syndic)) expect(m);
        return;
      }
      if (!('return' in data) || id === undefined) return;
      const running = data.return;
      // `{}`: the job is not running there any more.
      if (isEmptyObject(running) || typeof running === 'string') return;
      if (isPlainObject(running) && 'return' in running && isEmptyObject(running.return)) return;
      expect(id);
      if ((expected.get(id) ?? 0) > 0) expected.set(id, deadline(now()));
      minionsRunning = true;
      // A deadline moved: the next look is due later than planned.
      if (!findJobPending && !deciding) schedule();
    }

    function startFindJob(): void {
      // Only the minions still pending: those that returned are not asked.
      const targets: string[] = [];
      expected.forEach((state, id) => {
        if (state > 0) targets.push(id);
      });
      minionsRunning = false;
      findJobPending = true;
      // Listened to before it is published: a quick minion's answer comes before the reply.
      closeFindJob();
      const ownJid = newJid();
      findJobWatch = new JobWatch(ctx, ownJid);
      findJobWatch.listen(onFindJobEvent);
      options.findJob(targets, ownJid).then(
        (findJid) => {
          if (settled) return;
          findJobPending = false;
          if (findJid !== null && findJid !== ownJid) {
            // A master that chose its own jid: its events from now on.
            extraFindJobWatch = new JobWatch(ctx, findJid);
            extraFindJobWatch.listen(onFindJobEvent);
          }
          if (settled) return;
          // get_iter_returns starts the gather_job_timeout once the publish
          // returned; a master of masters waits syndic_wait more.
          timeoutAt = now() + gatherJobTimeoutMs + syndicWait;
          schedule();
        },
        (err: unknown) => fail(err),
      );
    }

    /** The last deadline of a pending minion (or the round's end): O(minions), once per timer. */
    function latestDeadline(): number {
      let latest = timeoutAt;
      if (!minionsRunning) for (const state of expected.values()) if (state > latest) latest = state;
      return latest;
    }

    /** Next look: when find_job is due, or when the last deadline passes (Salt's comparisons are strict, hence the extra millisecond). */
    function schedule(): void {
      clearTimeout(timer);
      let at = latestDeadline();
      // All returned on a master of masters: syndic_wait's end is a look too.
      if (pendingCount === 0 && expectedCount > 0 && syndicWaitAt < at) at = syndicWaitAt;
      timer = setTimeout(onTimer, Math.max(0, at - now()) + 1);
    }

    /**
     * A deadline passed. Before giving up on anyone (find_job, or the end),
     * the bus hands over what it has read or holds unread: a return the
     * master sent before the deadline must count, even when the bus is
     * behind (a burst of returns from a large fleet).
     */
    function onTimer(): void {
      if (settled || findJobPending) return;
      deciding = true;
      ctx.bus.settle().then(() => {
        deciding = false;
        if (settled || findJobPending) return;
        if (complete()) {
          finish();
          return;
        }
        const t = now();
        if (t > timeoutAt && minionsRunning) {
          startFindJob();
          return;
        }
        if (!minionsRunning && t > latestDeadline()) {
          finish();
          return;
        }
        schedule();
      });
    }

    function release(): void {
      settled = true;
      options.stop?.removeEventListener('abort', finish);
      clearTimeout(timer);
      watch.close();
      closeFindJob();
      unwatch();
    }

    function closeFindJob(): void {
      findJobWatch?.close();
      extraFindJobWatch?.close();
      findJobWatch = extraFindJobWatch = undefined;
    }

    function finish(): void {
      if (settled) return;
      release();
      const silent: string[] = [];
      expected.forEach((state, id) => {
        if (state > 0) silent.push(id);
      });
      resolve({ silent, missing });
    }

    function fail(err: unknown): void {
      if (settled) return;
      release();
      reject(err);
    }
  });
}

/** An expected minion's state once it returned (deadlines, the pending minions', are positive). */
const RETURNED = -1;
/** A minion that returned before (or without) being expected. */
const RETURNED_UNEXPECTED = -2;

function now(): number {
  return performance.now();
}

function sameIds(value: unknown, ids: readonly string[]): boolean {
  if (!Array.isArray(value) || value.length !== ids.length) return false;
  for (let i = 0; i < ids.length; i++) if (value[i] !== ids[i]) return false;
  return true;
}

function isEmptyObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).length === 0;
}
