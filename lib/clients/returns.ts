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
 */
import type { SaltEvent } from '../salt/event-bus.js';
import { isPlainObject } from './args.js';
import { abortError, busLostError, logAbandoned, watchWait, type ClientContext } from './context.js';

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
  /** Publish `saltutil.find_job` for this job to `targets`; the find_job's jid, or null when nothing was published. */
  findJob(targets: string[]): Promise<string | null>;
  /** Called for each return as it arrives. */
  onReturn?(id: string, ret: MinionReturn, event: SaltEvent): void;
  /** The request went away: reject at once (logged with the jid; the job keeps running). */
  signal?: AbortSignal;
  /** Stop waiting and resolve with what came so far (batch: failhard, or done). */
  stop?: AbortSignal;
}

export interface CollectResult {
  /** Returns by minion id, in arrival order. */
  returns: Map<string, MinionReturn>;
  /** Expected minions at the end (publish reply, `new` event, find_job findings). */
  minions: Set<string>;
  /** Minions the master reported missing (list targets naming unknown ids). */
  missing: Set<string>;
}

/** Wait for the returns of job `jid`. Rejects on abort (the job keeps running) or when the bus drops. */
export function collectReturns(ctx: ClientContext, options: CollectOptions): Promise<CollectResult> {
  return new Promise<CollectResult>((resolve, reject) => {
    const { jid, timeoutMs, gatherJobTimeoutMs, signal } = options;
    const minions = new Set(options.minions);
    const found = new Set<string>();
    const missing = new Set<string>();
    const returns = new Map<string, MinionReturn>();
    // A silent minion's deadline: `timeout` after it became expected, or
    // after it last said (through find_job) that it is still running the job.
    const minionTimeouts = new Map<string, number>();
    let timeoutAt = now() + timeoutMs;
    // True so that find_job is asked at least once.
    let minionsRunning = true;
    let findJobPending = false;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let unsubscribeFindJob: (() => void) | undefined;

    if (signal?.aborted) {
      // It went away while the publish was on its way: the job runs all the same.
      logAbandoned(ctx, jid);
      reject(abortError(signal));
      return;
    }

    if (!ctx.bus.connected) {
      reject(busLostError(`the returns of job ${jid}`));
      return;
    }
    let unsubscribeJob: (() => void) | undefined;
    const unwatch = watchWait(
      ctx,
      signal,
      () => fail(busLostError(`the returns of job ${jid}`)),
      () => {
        logAbandoned(ctx, jid);
        fail(abortError(signal!));
      },
    );
    options.stop?.addEventListener('abort', finish, { once: true });
    // Retained events of the job (a fast minion's return) may be replayed
    // during subscribe() itself, and may settle the wait there.
    const off = ctx.bus.subscribe(`salt/job/${jid}/`, onJobEvent);
    if (settled) off();
    else unsubscribeJob = off;
    if (options.stop?.aborted) finish();
    else evaluate();

    function onJobEvent(event: SaltEvent): void {
      if (settled) return;
      const data = event.data;
      if (!isPlainObject(data)) return;
      if ('minions' in data) {
        for (const id of asIds(data.minions)) minions.add(id);
        for (const id of asIds(data.missing)) missing.add(id);
        evaluate();
        return;
      }
      if (!('return' in data) || typeof data.id !== 'string') return;
      const id = data.id;
      found.add(id);
      const ret: MinionReturn = { ret: data.return };
      if ('out' in data) ret.out = data.out;
      if ('retcode' in data) ret.retcode = data.retcode;
      if ('jid' in data) ret.jid = data.jid;
      returns.set(id, ret);
      options.onReturn?.(id, ret, event);
      evaluate();
    }

    function onFindJobEvent(event: SaltEvent): void {
      if (settled) return;
      const data = event.data;
      if (!isPlainObject(data)) return;
      const id = typeof data.id === 'string' ? data.id : undefined;
      // The minion failed to run find_job itself: stop waiting for it.
      if (typeof data.retcode === 'number' && data.retcode > 0 && id !== undefined) {
        ctx.logger.debug(`saltutil.find_job returned errors on minion ${id}`);
        minions.delete(id);
        evaluate();
        return;
      }
      if ('minions' in data) {
        for (const m of asIds(data.minions)) minions.add(m);
        return;
      }
      if ('syndic' in data || !('return' in data) || id === undefined) return;
      const running = data.return;
      // `{}`: the job is not running there any more.
      if (isEmptyObject(running) || typeof running === 'string') return;
      if (isPlainObject(running) && 'return' in running && isEmptyObject(running.return)) return;
      minions.add(id);
      minionTimeouts.set(id, now() + timeoutMs);
      minionsRunning = true;
      evaluate();
    }

    function startFindJob(): void {
      const targets = [...minions].filter((m) => !found.has(m));
      minionsRunning = false;
      findJobPending = true;
      options.findJob(targets).then(
        (findJid) => {
          if (settled) return;
          findJobPending = false;
          unsubscribeFindJob?.();
          unsubscribeFindJob = undefined;
          if (findJid !== null) {
            const offFindJob = ctx.bus.subscribe(`salt/job/${findJid}/`, onFindJobEvent);
            if (settled) offFindJob();
            else unsubscribeFindJob = offFindJob;
          }
          if (settled) return;
          // get_iter_returns starts the gather_job_timeout once the publish returned.
          timeoutAt = now() + gatherJobTimeoutMs;
          evaluate();
        },
        (err: unknown) => fail(err),
      );
    }

    function evaluate(): void {
      if (settled) return;
      const t = now();
      let pending = 0;
      for (const m of minions) if (!found.has(m)) pending++;
      if (pending === 0) {
        finish();
        return;
      }
      for (const m of minions) {
        if (!found.has(m) && !minionTimeouts.has(m)) minionTimeouts.set(m, t + timeoutMs);
      }
      if (findJobPending) {
        clearTimeout(timer);
        return; // the publish reply re-evaluates
      }
      if (t > timeoutAt && minionsRunning) {
        startFindJob();
        return;
      }
      let latest = timeoutAt;
      if (!minionsRunning) {
        for (const m of minions) if (!found.has(m)) latest = Math.max(latest, minionTimeouts.get(m)!);
        if (t > latest) {
          finish();
          return;
        }
      }
      // Next look: when find_job is due, or when the last deadline passes
      // (Salt's comparisons are strict, hence the extra millisecond).
      clearTimeout(timer);
      timer = setTimeout(evaluate, Math.max(0, latest - t) + 1);
    }

    function release(): void {
      settled = true;
      options.stop?.removeEventListener('abort', finish);
      clearTimeout(timer);
      unsubscribeJob?.();
      unsubscribeFindJob?.();
      unwatch();
    }

    function finish(): void {
      if (settled) return;
      release();
      resolve({ returns, minions, missing });
    }

    function fail(err: unknown): void {
      if (settled) return;
      release();
      reject(err);
    }
  });
}

function now(): number {
  return performance.now();
}

function asIds(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function isEmptyObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).length === 0;
}
