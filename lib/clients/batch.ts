/**
 * The `local_batch` client: LocalClient.cmd_batch and salt/cli/batch.py.
 *
 * A presence `test.ping` (waited for as `cmd` waits) picks the minions that
 * answer; the others are sent no job and are not in the answer, as in
 * Salt's batch. The job then runs on `batch` of the answering minions at a
 * time (a count, or a percentage of them), starting the next ones as
 * returns come in, `batch_wait` seconds after each return. Python yields one
 * `{minion: ret}` per return, in arrival order; this returns that list. A
 * minion of a batch that never returns is given up on after `timeout` and
 * find_job, as Batch.run does, and comes back as `{minion: {}}` (README:
 * "Batches: local_batch").
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
import type { ResultBudget } from './result-budget.js';
import type { SaltEvent } from '../salt/event-bus.js';
import { CountingSink, type AnswerSink } from './answer-sink.js';

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
/**
 * A batch's list as it is made: kept (the item's result), or given to a
 * sink entry by entry and not kept (a streamed answer: the result is `[]`).
 */
class BatchList {
  private readonly results: unknown[] = [];
  private readonly counting: CountingSink | undefined;
  /** The sub-jobs' jids, for the sink's end. */
  readonly jids: string[] = [];

  constructor(sink: AnswerSink | undefined) {
    this.counting = sink ? new CountingSink(sink) : undefined;
  }

  get streamed(): boolean {
    return this.counting !== undefined;
  }

  /** One entry: `{[id]: ret}`, or `raw` (the return event) as it is. */
  add(id: string, ret: unknown, raw: unknown, returned: boolean): void {
    if (!this.counting) this.results.push(raw !== undefined ? raw : { [id]: ret });
    else if (raw !== undefined) this.counting.entry(id, raw, returned);
    else this.counting.minion(id, ret, returned);
  }

  end(): unknown[] {
    this.counting?.done(null, this.jids);
    return this.results;
  }
}

export function runBatch(ctx: ClientContext, call: BatchCall, signal?: AbortSignal, sink?: AnswerSink): Promise<unknown[]> {
  // Every job of the batch is listened to before it is published: nothing to retain on the bus.
  return withBus(
    ctx,
    signal,
    async () => {
      const minions = await gatherMinions(ctx, call, signal);
      const list = new BatchList(sink);
      return minions.length === 0 ? list.end() : new BatchRun(ctx, call, minions, list, signal).run();
    },
    false,
  );
}

/**
 * Batch.gather_minions: the targets that answer a `test.ping` now, waited
 * for as `cmd_iter` waits. The others are sent no job and are not in the
 * answer (Batch.run prints "Minion ... did not respond. No job will be
 * sent." on the CLI; the netapi's batch is quiet).
 */
async function gatherMinions(ctx: ClientContext, call: BatchCall, signal?: AbortSignal): Promise<string[]> {
  const job = await publishWatched(ctx, {
    ...call.local.pub,
    fun: 'test.ping',
    arg: [],
    ret: '',
    jid: '',
    kwargs: call.credentials,
    timeoutMs: call.presencePingTimeoutMs,
  });
  if (!job) return [];
  const answered = new Set<string>();
  const { silent } = await collectReturns(ctx, {
    jid: job.pub.jid,
    watch: job.watch,
    minions: job.pub.minions,
    timeoutMs: call.presencePingTimeoutMs,
    gatherJobTimeoutMs: call.presencePingGatherJobTimeoutMs,
    findJob: findJob(ctx, job.pub.jid, call.credentials, call.presencePingGatherJobTimeoutMs),
    listener: { onReturn: (id) => answered.add(id) },
    signal,
  });
  if (silent.length > 0) {
    const shown = silent.slice(0, 10).join(', ') + (silent.length > 10 ? ', ...' : '');
    ctx.logger.info(
      `batch presence ping ${job.pub.jid}: ${silent.length} minion(s) did not respond, no job will be sent to them: ${shown}`,
    );
  }
  // For the audit line: the ping's targets; the silent ones are missing.
  if (ctx.report) Object.assign(ctx.report, { targeted: job.pub.minions.length, returned: 0, missing: silent.length });
  return [...answered];
}

/** What Batch.run yields for a minion of a batch whose wait ended without its return. */
const GAVE_UP: MinionReturn = Object.freeze({ ret: Object.freeze({}) });

/**
 * Batch.run's loop over the minions that answered the presence ping: `bnum`
 * of them run at a time, one list-target job per batch, the next ones
 * starting as returns come in (and `batch_wait` after each).
 */
class BatchRun {
  /** Answering minions not yet sent the job. */
  private readonly toRun: string[];
  /** Sent the job, not yet returned or given up on. */
  private readonly active = new Set<string>();
  /** Answering minions not yet returned or given up on: the batch ends when none is left. */
  private readonly pending: Set<string>;
  /** When each used slot frees again (batch_wait), in order. */
  private readonly wait: number[] = [];
  /** Stops the sub-jobs' waits once the batch has its answer. */
  private readonly stop = new AbortController();
  /** One ceiling for the whole batch: its sub-jobs' returns end up in one answer. */
  private readonly budget: ResultBudget | undefined;
  private readonly bnum: number;
  private waitTimer: NodeJS.Timeout | undefined;
  private settled = false;
  private resolve: (results: unknown[]) => void = () => {};
  private reject: (err: unknown) => void = () => {};

  constructor(
    private readonly ctx: ClientContext,
    private readonly call: BatchCall,
    minions: string[],
    private readonly list: BatchList,
    private readonly signal?: AbortSignal,
  ) {
    this.toRun = [...minions];
    this.pending = new Set(minions);
    this.bnum = batchSize(call.batch, minions.length);
    // A streamed answer holds none of them.
    this.budget = list.streamed ? undefined : resultBudget(ctx);
  }

  run(): Promise<unknown[]> {
    return new Promise<unknown[]>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.fill();
    });
  }

  /** Start the next batch if slots are free (the top of Batch.run's loop). */
  private fill(): void {
    if (this.settled) return;
    if (this.pending.size === 0) {
      this.finish();
      return;
    }
    const { toRun, active, wait, bnum } = this;
    const t = now();
    while (wait.length > 0 && wait[0] <= t) wait.shift();
    let next: string[] = [];
    if (toRun.length <= bnum - wait.length && active.size === 0) next = toRun.splice(0);
    else if (bnum - active.size - wait.length > 0) next = toRun.splice(0, bnum - active.size - wait.length);
    if (next.length > 0) {
      for (const id of next) active.add(id);
      this.runSubJob(next).catch((err: unknown) => this.fail(err));
    }
    clearTimeout(this.waitTimer);
    if (toRun.length > 0 && wait.length > 0) this.waitTimer = setTimeout(() => this.fill(), Math.max(0, wait[0] - t) + 1);
  }

  /**
   * One batch: cmd_iter_no_block on `targets` as a list. A target whose wait
   * ended without its return gets `{}` (Batch.run's minion tracker); one
   * the master reported missing (`failed` in get_iter_returns) gets nothing.
   */
  private async runSubJob(targets: string[]): Promise<void> {
    const { ctx, call } = this;
    const job = await publishWatched(ctx, { ...call.local.pub, tgt: targets, tgtType: 'list', jid: '', kwargs: call.credentials });
    if (job && this.settled) {
      job.watch.close();
      return;
    }
    if (job) this.list.jids.push(job.pub.jid);
    const returned = new Set<string>();
    let missing = new Set<string>();
    if (job) {
      ({ missing } = await collectReturns(ctx, {
        jid: job.pub.jid,
        watch: job.watch,
        budget: this.budget,
        minions: job.pub.minions,
        timeoutMs: call.local.timeoutMs,
        gatherJobTimeoutMs: call.local.gatherJobTimeoutMs,
        findJob: findJob(ctx, job.pub.jid, call.credentials, call.local.gatherJobTimeoutMs),
        listener: {
          onReturn: (id, ret, event) => {
            if (ctx.report && !returned.has(id)) ctx.report.returned = (ctx.report.returned ?? 0) + 1;
            returned.add(id);
            this.report(id, ret, event);
          },
        },
        signal: this.signal,
        stop: this.stop.signal,
      }));
    }
    for (const id of targets) {
      if (returned.has(id)) continue;
      if (ctx.report) ctx.report.missing = (ctx.report.missing ?? 0) + 1;
      this.report(id, missing.has(id) ? undefined : GAVE_UP);
    }
  }

  /** One return, or `undefined` for a minion that failed (Batch.run's `parts` loop). */
  private report(id: string, data: MinionReturn | undefined, event?: SaltEvent): void {
    if (this.settled) return;
    this.pending.delete(id);
    if (this.active.delete(id) && this.call.batchWaitMs > 0) this.wait.push(now() + this.call.batchWaitMs);
    // A raw return is the event itself, which has no top-level retcode: failhard never stops on it.
    const retcode = data && !this.call.raw ? highestRetcode(data.retcode) : 0;
    const raw = data && this.call.raw ? (event ? { data: event.data, tag: event.tag } : data) : undefined;
    if (data) this.list.add(id, data.ret, raw, data !== GAVE_UP);
    if (this.call.failhard && (data === undefined || retcode > 0)) {
      this.ctx.logger.info(
        `batch stopped by failhard: minion ${id} ${data ? `returned retcode ${retcode}` : 'failed to respond to the job'}`,
      );
      this.finish();
      return;
    }
    queueMicrotask(() => this.fill());
  }

  private release(): void {
    this.settled = true;
    clearTimeout(this.waitTimer);
    this.stop.abort();
  }

  private finish(): void {
    if (this.settled) return;
    this.release();
    this.resolve(this.list.end());
  }

  private fail(err: unknown): void {
    if (this.settled) return;
    this.release();
    this.reject(err);
  }
}

/** Batch.run's retcode: a number, or the highest of a dict's (several functions in one job); 0 otherwise. */
function highestRetcode(retcode: unknown): number {
  if (typeof retcode === 'number') return retcode;
  if (isPlainObject(retcode)) {
    const codes = Object.values(retcode).filter((v): v is number => typeof v === 'number');
    return codes.length > 0 ? Math.max(...codes) : 0;
  }
  return 0;
}
