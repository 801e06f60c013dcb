/**
 * The `local`, `local_async` and `local_subset` clients: LocalClient's
 * `cmd`, `run_job` and `cmd_subset` (salt/client/__init__.py).
 */
import { conditionInput } from './args.js';
import { defineKey, isPlainObject, stringsIn } from '../objects.js';
import { keepShape } from '../shapes.js';
import {
  argList,
  durationMs,
  extraKeys,
  kwargDict,
  masterDurationMs,
  stringField,
  target,
  targetType,
  truthy,
  type Lowstate,
} from './fields.js';
import type { MasterOptions } from '../salt/config.js';
import { request, withBus, type ClientContext } from './context.js';
import { JobWatch } from './job-watch.js';
import { ResultBudget } from './result-budget.js';
import { collectReturns, type MinionReturn, type ReturnListener } from './returns.js';
import { newJid } from './jid.js';
import { CountingSink, type AnswerSink } from './answer-sink.js';
import { isSyndic, publishesWithoutMinions, syndicPublishFields } from './syndic.js';

/** What a publish carries (LocalClient._prep_pub). */
export interface Publication {
  tgt: string | string[];
  fun: string;
  /** After condition_input. */
  arg: unknown[];
  tgtType: string;
  ret: string;
  jid: string;
  /** Credentials and the item's other keys (`delimiter`, `metadata`...). */
  kwargs: Record<string, unknown>;
  /** LocalClient.pub's `timeout`, ms: a master of masters hands it to its syndics (syndic.ts). */
  timeoutMs: number;
}

/** A job the master accepted: LocalClient's `pub_data`. */
export interface PubData {
  jid: string;
  minions: string[];
}

/** One `local` item, read. */
export interface LocalCall {
  pub: Publication;
  /** The item's `timeout` (else the master's), ms. */
  timeoutMs: number;
  /** The item's `gather_job_timeout` (else the master's), ms. */
  gatherJobTimeoutMs: number;
  fullReturn: boolean;
  expectMinions: boolean;
}

/** The item keys LocalClient's methods name; every other key travels in the publish `kwargs`. */
const LOCAL_KEYS = new Set([
  'client',
  'tgt',
  'fun',
  'arg',
  'kwarg',
  'timeout',
  'tgt_type',
  'expr_form',
  'ret',
  'jid',
  'full_return',
  'subset',
  'cli',
  'progress',
]);

/** Read (and check) the fields LocalClient uses; durations fall back to the master's. */
export function localCall(low: Lowstate, opts: MasterOptions): LocalCall {
  const kwarg = kwargDict(low);
  const timeoutMs = durationMs(low, 'timeout', masterDurationMs(opts, 'timeout', 5));
  return {
    pub: {
      tgt: target(low),
      fun: low.fun as string,
      arg: conditionInput(argList(low), kwarg),
      tgtType: targetType(low),
      ret: stringField(low, 'ret', ''),
      jid: stringField(low, 'jid', ''),
      kwargs: extraKeys(low, LOCAL_KEYS),
      timeoutMs,
    },
    timeoutMs,
    gatherJobTimeoutMs: durationMs(low, 'gather_job_timeout', masterDurationMs(opts, 'gather_job_timeout', 10)),
    fullReturn: truthy(low.full_return),
    expectMinions: truthy(low.expect_minions),
  };
}

/**
 * LocalClient.pub + _check_pub_data: the master's `{jid, minions}`, or null
 * when nothing was published (no minion matched, no jid assigned). A master
 * of masters publishes to minions it has no keys for: a jid is a job there.
 * The master's refusals raise (401 for credentials and permissions).
 */
export async function publish(ctx: ClientContext, pub: Publication): Promise<PubData | null> {
  const load = {
    cmd: 'publish',
    tgt: pub.tgt,
    fun: pub.fun,
    arg: pub.arg,
    tgt_type: pub.tgtType,
    ret: pub.ret,
    jid: pub.jid,
    user: ctx.user,
    kwargs: pub.kwargs,
    ...syndicPublishFields(ctx.opts, pub.timeoutMs),
  };
  const reply = await request(ctx, load, 'publish the job');
  const data = reply.load;
  if (!isPlainObject(data)) return null;
  const jid =
    typeof data.jid === 'string' ? data.jid : typeof data.jid === 'number' || typeof data.jid === 'bigint' ? String(data.jid) : '';
  const minions = stringsIn(data.minions);
  if (jid === '' || jid === '0') return null;
  if (minions.length === 0 && !publishesWithoutMinions(ctx.opts)) return null;
  if (ctx.report) ctx.report.jid = jid;
  return { jid, minions };
}

/**
 * `saltutil.find_job` for `jid`, sent with the job's own credentials
 * (LocalClient.gather_job_info); `timeoutMs`: its gather_job_timeout.
 */
export function findJob(
  ctx: ClientContext,
  jid: string,
  kwargs: Record<string, unknown>,
  timeoutMs = masterDurationMs(ctx.opts, 'gather_job_timeout', 10),
) {
  return async (targets: string[], findJid: string): Promise<string | null> => {
    const pub = await publish(ctx, {
      tgt: targets,
      fun: 'saltutil.find_job',
      arg: [jid],
      tgtType: 'list',
      ret: '',
      jid: findJid,
      kwargs,
      timeoutMs,
    });
    return pub?.jid ?? null;
  };
}

/** What LocalClient.get_cli_event_returns puts in place of a minion reported missing. */
function noResponse(jid: string): MinionReturn {
  return {
    out: 'no_return',
    ret:
      'Minion did not return. [No response]\nThe minions may not have all finished running and any ' +
      'remaining minions will return upon completion. To look up the return data for this job later, ' +
      `run the following command:\n\nsalt-run jobs.lookup_jid ${jid}`,
    retcode: 1,
  };
}

/**
 * Publish `pub` as a job listened to from before its publish on: its jid is
 * the item's `jid`, else one of ours (jid.ts), so that no return can come
 * before we listen. Null when nothing was published; the watch is closed then.
 */
export async function publishWatched(ctx: ClientContext, pub: Publication): Promise<{ pub: PubData; watch: JobWatch } | null> {
  const jid = pub.jid || newJid();
  let watch = new JobWatch(ctx, jid);
  let published: PubData | null;
  try {
    published = await publish(ctx, { ...pub, jid });
  } catch (err) {
    watch.close();
    throw err;
  }
  if (!published) {
    watch.close();
    return null;
  }
  if (published.jid !== jid) {
    // A master that did not take the jid: its job's events from now on.
    watch.close();
    watch = new JobWatch(ctx, published.jid);
  }
  return { pub: published, watch };
}

/**
 * LocalClient.cmd: publish, wait as get_iter_returns does, then map each
 * targeted minion that never answered to `false`. Nothing matched: `{}`.
 * `raw`: returns that are maps or lists are held as their JSON text (the
 * answer only writes them); false for a caller that reads them. With a
 * `sink`, each minion's entry goes there as soon as it is known and none is
 * kept (the result is then `{}`).
 */
export function runLocal(
  ctx: ClientContext,
  call: LocalCall,
  signal?: AbortSignal,
  sink?: AnswerSink,
  raw = true,
): Promise<Record<string, unknown>> {
  // The job is listened to before it is published: nothing to retain on the bus for it.
  return withBus(
    ctx,
    signal,
    async () => {
      const job = await publishWatched(ctx, call.pub);
      if (job) return gatherReturns(ctx, call, job.pub, job.watch, signal, sink, raw);
      sink?.done({ jid: null, returned: 0, missing: 0 });
      return {};
    },
    false,
  );
}

/**
 * Where a call's minion entries go (its result object, or a sink that keeps
 * none of them), and how many returned, for the audit line. Classes, not
 * closures made per call: every job's returns reach the same call targets
 * (ReturnListener).
 */
abstract class Entries implements ReturnListener {
  returnedCount = 0;
  falseCount = 0;
  constructor(private readonly fullReturn: boolean) {}

  abstract set(id: string, value: unknown, returned: boolean): void;
  abstract has(id: string): boolean;

  onReturn(id: string, ret: MinionReturn): void {
    if (!this.has(id)) this.returnedCount++;
    this.set(id, this.fullReturn ? ret : ret.ret, true);
  }

  /** A minion that did not return: `value` in its place. */
  notReturned(id: string, value: unknown): void {
    this.falseCount++;
    this.set(id, value, false);
  }
}

class ResultEntries extends Entries {
  constructor(
    readonly result: Record<string, unknown>,
    fullReturn: boolean,
  ) {
    super(fullReturn);
  }
  set(id: string, value: unknown): void {
    defineKey(this.result, id, value);
  }
  has(id: string): boolean {
    return Object.hasOwn(this.result, id);
  }
}

class SinkEntries extends Entries {
  /** Only the ids: what the `false` entries at the end need to know. */
  private readonly given = new Set<string>();
  constructor(
    private readonly sink: CountingSink,
    fullReturn: boolean,
  ) {
    super(fullReturn);
  }
  set(id: string, value: unknown, returned: boolean): void {
    this.given.add(id);
    this.sink.minion(id, value, returned);
  }
  has(id: string): boolean {
    return this.given.has(id);
  }
}

// A call's entries die with it: one of each kept, so that their shapes outlive them (lib/shapes.ts).
keepShape(new ResultEntries({}, false));
keepShape(new SinkEntries(new CountingSink({ minion() {}, done() {} }), false));

/** The waiting half of LocalClient.cmd, for a job already published. */
async function gatherReturns(
  ctx: ClientContext,
  call: LocalCall,
  pub: PubData,
  watch: JobWatch,
  signal: AbortSignal | undefined,
  sink: AnswerSink | undefined,
  raw: boolean,
): Promise<Record<string, unknown>> {
  // The answer is made as the returns come, in their order (cmd's dict):
  // a fleet's returns are held once, here (or not at all, streamed).
  const result: Record<string, unknown> = {};
  const counting = sink ? new CountingSink(sink) : undefined;
  const entries = counting ? new SinkEntries(counting, call.fullReturn) : new ResultEntries(result, call.fullReturn);
  const { silent, missing } = await collectReturns(ctx, {
    jid: pub.jid,
    watch,
    budget: sink ? undefined : resultBudget(ctx),
    minions: pub.minions,
    timeoutMs: call.timeoutMs,
    gatherJobTimeoutMs: call.gatherJobTimeoutMs,
    findJob: findJob(ctx, pub.jid, call.pub.kwargs, call.gatherJobTimeoutMs),
    listener: entries,
    signal,
    rawReturns: raw && ctx.rawReturns === true,
  });
  // get_iter_returns reports silent minions only when asked (expect_minions),
  // and minions the master called missing always; both as "did not return",
  // but for the syndics of a master of masters (get_cli_event_returns).
  const failed = new Set<string>();
  if (call.expectMinions) for (const id of silent) failed.add(id);
  for (const id of missing) if (!entries.has(id)) failed.add(id);
  for (const id of failed) if (isSyndic(ctx.opts, id)) failed.delete(id);
  for (const id of failed) {
    const data = noResponse(pub.jid);
    entries.notReturned(id, call.fullReturn ? data : data.ret);
  }
  const targeted = pub.minions;
  for (let i = 0; i < targeted.length; i++) if (!entries.has(targeted[i])) entries.notReturned(targeted[i], false);
  counting?.done(pub.jid);
  if (ctx.report) {
    // A subset's listing job is followed by its real one: the last job's figures stand.
    ctx.report.targeted = targeted.length;
    ctx.report.returned = entries.returnedCount;
    ctx.report.missing = entries.falseCount;
  }
  return result;
}

/** What a synchronous call may hold of returns, if the server has a ceiling (`rest_wsgi: max_result_bytes`). */
export function resultBudget(ctx: ClientContext): ResultBudget | undefined {
  return ctx.maxResultBytes ? new ResultBudget(ctx.maxResultBytes) : undefined;
}

/** LocalClient.run_job: `{"jid", "minions"}` at once, or `{}` when nothing matched. */
export async function runLocalAsync(ctx: ClientContext, call: LocalCall): Promise<PubData | Record<string, never>> {
  return (await publish(ctx, call.pub)) ?? {};
}
