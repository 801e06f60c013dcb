/**
 * The `local_batch` client: LocalClient.cmd_batch and salt/cli/batch.py.
 *
 * A presence `test.ping` (waited for as `cmd` waits) picks the minions that
 * answer; the job then runs on `batch` of them at a time (a count, or a
 * percentage of the answering minions), starting the next ones as returns
 * come in, `batch_wait` seconds after each return. Python yields one
 * `{minion: ret}` per return, in arrival order; this returns that list.
 * Minions that missed the presence ping are not run, and a minion of a batch
 * that never returns is given up on after `timeout` and find_job, as Batch.run
 * does; both come back as `{minion: false}` (Python prints the first and
 * yields `{minion: {}}` for the second), so that the result names every
 * targeted minion as `local` does (README: Differences from Python's rest_wsgi).
 */
import { performance } from 'node:perf_hooks';
import { BadRequestError } from '../errors.js';
import { toJson } from '../json.js';
import { positiveInteger } from '../numbers.js';
import { isPlainObject } from '../objects.js';
import { copyCredentials, durationMs, truthy, type Lowstate } from './fields.js';
import type { MasterOptions } from '../salt/config.js';
import { findJob, localCall, publishWatched, resultBudget, type LocalCall } from './local.js';
import { withBus, type ClientContext } from './context.js';
import { collectReturns, type MinionReturn } from './returns.js';
import type { SaltEvent } from '../salt/event-bus.js';

export interface BatchCall {
  local: LocalCall;
  /** `batch`: a count (`"2"`, 2) or a percentage (`"25%"`). Default `10%`. */
  batch: string | number;
  /** `batch_wait`, ms after a return before its slot is reused. */
  batchWaitMs: number;
  failhard: boolean;
  /** `raw`: yield the return events whole. */
  raw: boolean;
  /** The presence ping's timeouts, ms (else the item's own). */
  presencePingTimeoutMs: number;
  presencePingGatherJobTimeoutMs: number;
  /** batch_get_eauth: the only keywords the batch's publishes carry. */
  credentials: Record<string, unknown>;
}

/** Read (and check) a `local_batch` item. */
export function batchCall(low: Lowstate, opts: MasterOptions): BatchCall {
  const batch = low.batch ?? '10%';
  batchSize(batch, 1); // checks the form
  const credentials = copyCredentials(low, {});
  const local = localCall(low, opts);
  return {
    local,
    batch: batch as string | number,
    batchWaitMs: low.batch_wait === 0 || low.batch_wait === '0' ? 0 : durationMs(low, 'batch_wait', 0),
    failhard: truthy(low.failhard ?? opts.failhard ?? false),
    raw: truthy(low.raw),
    presencePingTimeoutMs: durationMs(low, 'batch_presence_ping_timeout', local.timeoutMs),
    presencePingGatherJobTimeoutMs: durationMs(low, 'batch_presence_ping_gather_job_timeout', local.gatherJobTimeoutMs),
    credentials,
  };
}

/**
 * salt/cli/batch.py get_bnum: how many minions run at once. A percentage
 * under one minion rounds up to one; otherwise it rounds down.
 */
export function batchSize(batch: unknown, minionCount: number): number {
  const invalid = () => {
    // toJson: it may hold a BigInt; cut short: it may be huge.
    const shown = toJson(batch);
    return new BadRequestError(
      `Invalid batch: ${shown.length > 100 ? `${shown.slice(0, 100)}...` : shown}; it must be a count such as "3" or a percentage such as "10%"`,
    );
  };
  if (typeof batch === 'string' && batch.includes('%')) {
    const text = batch.replace(/^%+|%+$/g, '').trim(); // Python's strip("%")
    const pct = /^\d+(\.\d*)?$|^\.\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isFinite(pct) || pct <= 0) throw invalid();
    const res = (pct / 100) * minionCount;
    return res < 1 ? Math.ceil(res) : Math.floor(res);
  }
  const n = positiveInteger(batch);
  if (n === undefined) throw invalid();
  return n;
}

function now(): number {
  return performance.now();
}

/** Run a `local_batch` item: the list of `{minion: ret}` in arrival order. */
export function runBatch(ctx: ClientContext, call: BatchCall, signal?: AbortSignal): Promise<unknown[]> {
  // Every job of the batch is listened to before it is published: nothing to retain on the bus.
  return withBus(ctx, signal, () => batch(ctx, call, signal), false);
}

async function batch(ctx: ClientContext, call: BatchCall, signal?: AbortSignal): Promise<unknown[]> {
  const { local } = call;
  // One ceiling for the whole batch: its sub-jobs' returns end up in one answer.
  const budget = resultBudget(ctx);

  // Batch.__gather_minions: who answers a test.ping now.
  const job = await publishWatched(ctx, { ...local.pub, fun: 'test.ping', arg: [], ret: '', jid: '', kwargs: call.credentials });
  if (!job) return [];
  const ping = job.pub;
  const answered = new Set<string>();
  await collectReturns(ctx, {
    jid: ping.jid,
    watch: job.watch,
    minions: ping.minions,
    timeoutMs: call.presencePingTimeoutMs,
    gatherJobTimeoutMs: call.presencePingGatherJobTimeoutMs,
    findJob: findJob(ctx, ping.jid, call.credentials),
    onReturn: (id) => answered.add(id),
    signal,
  });
  const minions = [...answered];
  const down = ping.minions.filter((id) => !answered.has(id));
  const downResults = down.map((id) => ({ [id]: false }));
  const counts = ctx.report;
  if (counts) Object.assign(counts, { targeted: ping.minions.length, returned: 0, missing: down.length });
  if (minions.length === 0) return downResults;
  const bnum = batchSize(call.batch, minions.length);

  return new Promise<unknown[]>((resolve, reject) => {
    const toRun = [...minions];
    const active = new Set<string>();
    const reported = new Set<string>();
    // How many of `minions` reported: fill() runs once per return, and a
    // look at every minion each time would cost the batch its size squared.
    const running = new Set(minions);
    let minionsReported = 0;
    /** When each used slot frees again (batch_wait). */
    const wait: number[] = [];
    const results: unknown[] = [];
    const stop = new AbortController();
    let waitTimer: NodeJS.Timeout | undefined;
    let settled = false;

    fill();

    /** Start the next batch if slots are free (the top of Batch.run's loop). */
    function fill(): void {
      if (settled) return;
      if (minionsReported === minions.length) {
        finish();
        return;
      }
      const t = now();
      while (wait.length > 0 && wait[0] <= t) wait.shift();
      let next: string[] = [];
      if (toRun.length <= bnum - wait.length && active.size === 0) next = toRun.splice(0);
      else if (bnum - active.size - wait.length > 0) next = toRun.splice(0, bnum - active.size - wait.length);
      if (next.length > 0) {
        for (const id of next) active.add(id);
        runSubJob(next);
      }
      clearTimeout(waitTimer);
      if (toRun.length > 0 && wait.length > 0) waitTimer = setTimeout(fill, Math.max(0, wait[0] - t) + 1);
    }

    function runSubJob(targets: string[]): void {
      const returned = new Set<string>();
      (async () => {
        const job = await publishWatched(ctx, { ...local.pub, tgt: targets, tgtType: 'list', jid: '', kwargs: call.credentials });
        if (job && settled) job.watch.close();
        else if (job) {
          const pub = job.pub;
          await collectReturns(ctx, {
            jid: pub.jid,
            watch: job.watch,
            budget,
            minions: pub.minions,
            timeoutMs: local.timeoutMs,
            gatherJobTimeoutMs: local.gatherJobTimeoutMs,
            findJob: findJob(ctx, pub.jid, call.credentials),
            onReturn: (id, ret, event) => {
              if (counts && !returned.has(id)) counts.returned = (counts.returned ?? 0) + 1;
              returned.add(id);
              report(id, ret, event);
            },
            signal,
            stop: stop.signal,
          });
        }
        // The batch's silent minions: false, as `local` gives them.
        for (const id of targets) {
          if (returned.has(id)) continue;
          if (counts) counts.missing = (counts.missing ?? 0) + 1;
          report(id, { ret: false });
        }
      })().catch(fail);
    }

    /** One return (Batch.run's `parts` loop). */
    function report(id: string, data: MinionReturn, event?: SaltEvent): void {
      if (settled) return;
      if (!reported.has(id)) {
        reported.add(id);
        if (running.has(id)) minionsReported++;
      }
      if (active.delete(id) && call.batchWaitMs > 0) wait.push(now() + call.batchWaitMs);
      let ret = data.ret;
      const retcode = data.retcode;
      // Batch munges the retcode into dict returns.
      if ('retcode' in data && isPlainObject(ret) && !('retcode' in ret)) ret = { ...ret, retcode };
      if (call.raw) results.push(event ? { data: event.data, tag: event.tag } : data);
      else results.push({ [id]: ret });
      if (call.failhard && typeof retcode === 'number' && retcode > 0) {
        ctx.logger.info(`batch stopped by failhard: minion ${id} returned retcode ${retcode}`);
        finish();
        return;
      }
      queueMicrotask(fill);
    }

    function release(): void {
      settled = true;
      clearTimeout(waitTimer);
      stop.abort();
    }

    function finish(): void {
      if (settled) return;
      release();
      resolve(results.concat(downResults));
    }

    function fail(err: unknown): void {
      if (settled) return;
      release();
      reject(err);
    }
  });
}
