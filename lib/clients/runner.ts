/**
 * The `runner` and `runner_async` clients: RunnerClient.cmd_sync / cmd_async
 * (salt/runner.py, salt/client/mixins.py).
 *
 * Keywords come in three styles, merged in Salt's order (later wins):
 * `arg` items of the form `k=v`, the `kwarg` object, and the item's other
 * top-level keys (old style). RunnerClient._reformat_low then binds them to
 * the function's signature, dropping those it does not take, and sends
 * `kwarg: {"arg": [...], "kwarg": {...}}`, which the master calls the
 * function with as it is. The signature comes from the master
 * (runner-signatures.ts); where it can't be had, an item with keywords keeps
 * the flat `kwarg` the master binds itself (salt/client/mixins.py low:
 * format_call, which records the defaults too).
 */
import { parseInput } from './args.js';
import { defineKey } from '../objects.js';
import {
  CREDENTIAL_KEYS,
  argList,
  copyCredentials,
  durationMs,
  extraKeys,
  kwargDict,
  masterDurationMs,
  truthy,
  type Lowstate,
} from './fields.js';
import type { MasterOptions } from '../salt/config.js';
import { abortError, busLostError, logAbandoned, request, throwIfAborted, watchWait, withBus, type ClientContext } from './context.js';
import { bindToSignature, RunnerSignatures, type SignatureTable } from './runner-signatures.js';
import { masterStartMark } from '../salt/master-sockets.js';
import { FunctionNotAvailableError, GatewayTimeoutError, MasterError, RunnerNotStartedError } from '../errors.js';
import type { SaltEvent } from '../salt/event-bus.js';

export interface RunnerCall {
  fun: string;
  /** Positional arguments after parse_input. */
  args: unknown[];
  /** The three keyword styles merged. */
  kwargs: Record<string, unknown>;
  /** username/password/eauth/token as the item gave them. */
  creds: Record<string, unknown>;
  /** How long `runner` waits: the item's `timeout`, else the master's `rest_timeout` (default 300 s, as Salt), ms. */
  timeoutMs: number;
  fullReturn: boolean;
}

/** Credentials go at the top of the load; RunnerClient._reformat_low also takes `client`, `user` and `key` out of the keywords. */
const NOT_KEYWORDS = ['fun', 'arg', 'kwarg', 'client', 'user', 'key', ...CREDENTIAL_KEYS];
/** Past gather_job_timeout, how long more the master gets to fire a runner job's `new`, ms. */
const STARTED_MARGIN_MS = 1000;

/**
 * Read a runner item. NetapiClient.runner takes `timeout` and `full_return`
 * for itself; runner_async has no such parameters, so there they are
 * keywords like any other key.
 */
export function runnerCall(low: Lowstate, opts: MasterOptions, sync: boolean): RunnerCall {
  const parsed = parseInput(argList(low));
  const kwargs: Record<string, unknown> = { ...parsed.kwargs };
  // Not Object.assign: it assigns, and a `__proto__` keyword would set the
  // prototype of kwargs ('arg' in kwargs would then see the attacker's keys).
  for (const [key, value] of Object.entries(kwargDict(low) ?? {})) defineKey(kwargs, key, value);
  const skip = new Set(sync ? [...NOT_KEYWORDS, 'timeout', 'full_return'] : NOT_KEYWORDS);
  for (const [key, value] of Object.entries(extraKeys(low, skip))) defineKey(kwargs, key, value);
  const restTimeoutMs = masterDurationMs(opts, 'rest_timeout', 300);
  return {
    fun: String(low.fun),
    args: parsed.args,
    kwargs,
    creds: copyCredentials(low, {}),
    timeoutMs: sync ? durationMs(low, 'timeout', restTimeoutMs) : restTimeoutMs,
    fullReturn: sync && truthy(low.full_return),
  };
}

/**
 * The load of `cmd: runner`: bound to the function's signature when the
 * table is known (RunnerClient._reformat_low); without it, an item with no
 * keywords still has nothing to bind, and one with keywords goes flat (the
 * master binds it with format_call) unless it has positional arguments.
 */
export function runnerLoad(call: RunnerCall, table: SignatureTable | undefined): Record<string, unknown> {
  const load: Record<string, unknown> = { cmd: 'runner', fun: call.fun };
  const sig = table?.get(call.fun);
  if (sig) load.kwarg = bindToSignature(sig, call.args, call.kwargs);
  else if (call.args.length > 0 || Object.keys(call.kwargs).length === 0) load.kwarg = { arg: call.args, kwarg: call.kwargs };
  else load.kwarg = call.kwargs;
  return { ...load, ...call.creds };
}

/** Keyed by the request channel: one per dispatcher, whose items each get a context of their own (their report, their logger). */
const signatures = new WeakMap<object, RunnerSignatures>();

/** The signature table of this client's master (one per dispatcher), or undefined where it can't be had. */
function signatureTable(ctx: ClientContext, call: RunnerCall): Promise<SignatureTable | undefined> {
  let sigs = signatures.get(ctx.channel);
  if (!sigs) {
    const shared = { ...ctx, report: undefined };
    sigs = new RunnerSignatures(
      // salt.cmd takes (fun, *args, **kwargs): this load is what _reformat_low makes of it.
      (creds) => fetchTable(shared, creds),
      () => masterStartMark(ctx.opts),
    );
    signatures.set(ctx.channel, sigs);
  }
  return sigs.lookup(call.creds);
}

/** The load for `call`, or 400 when the master's table says it has no such function (salt/utils/lazy.py verify_fun). */
async function loadFor(ctx: ClientContext, call: RunnerCall): Promise<Record<string, unknown>> {
  const table = await signatureTable(ctx, call);
  if (table && !table.has(call.fun)) {
    signatures.get(ctx.channel)?.missing(call.creds);
    throw new FunctionNotAvailableError(call.fun);
  }
  return runnerLoad(call, table);
}

/** The master's `{"tag", "jid"}` for a runner job it started. */
function jobOf(reply: Record<string, unknown>): { tag: string; jid: string } {
  if (typeof reply.tag !== 'string' || typeof reply.jid !== 'string') {
    throw new MasterError('The master did not start the runner job (no tag or jid in its reply)');
  }
  return { tag: reply.tag, jid: reply.jid };
}

/** RunnerClient.cmd_async: the master's `{"tag", "jid"}`. */
export async function runRunnerAsync(ctx: ClientContext, call: RunnerCall): Promise<Record<string, unknown>> {
  const reply = await request(ctx, await loadFor(ctx, call), 'start the runner job');
  const { jid } = jobOf(reply);
  if (ctx.report) ctx.report.jid = jid;
  return reply;
}

/**
 * RunnerClient.cmd_sync: start the job, wait for `salt/run/<jid>/ret`;
 * its `return`, or with `full_return` the event `{"data", "tag"}`. Past the
 * timeout (item's `timeout`, else the master's `rest_timeout`, default 300 s,
 * as Salt): 504.
 */
export async function runRunner(ctx: ClientContext, call: RunnerCall, signal?: AbortSignal): Promise<unknown> {
  return runLoad(ctx, call, await untilAborted(loadFor(ctx, call), signal), signal);
}

/** `promise`, or the abort's rejection first: a request that goes away stops waiting for the shared signature lookup. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal);
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

async function runLoad(ctx: ClientContext, call: RunnerCall, load: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
  const event = await withBus(ctx, signal, async () => {
    const mark = masterStartMark(ctx.opts);
    const { tag, jid } = jobOf(await request(ctx, load, 'start the runner job'));
    if (ctx.report) ctx.report.jid = jid;
    return waitForJob(ctx, { fun: call.fun, tag, jid, mark }, call.timeoutMs, signal);
  });
  if (call.fullReturn) return { data: event.data, tag: event.tag };
  const data = event.data as Record<string, unknown> | null;
  return data !== null && typeof data === 'object' ? data.return : undefined;
}

/** The signature table's own job: `salt.cmd sys.runner_argspec '*'` with `creds`, within the request timeout. */
function fetchTable(ctx: ClientContext, creds: Record<string, unknown>): Promise<unknown> {
  // salt.cmd takes (fun, *args, **kwargs): this load is what _reformat_low makes of it.
  const call: RunnerCall = {
    fun: 'salt.cmd',
    args: ['sys.runner_argspec', '*'],
    kwargs: {},
    creds,
    timeoutMs: ctx.masterTimeoutMs,
    fullReturn: false,
  };
  return runLoad(ctx, call, runnerLoad(call, undefined));
}

/**
 * The `ret` event of runner job `job`, or 504 after `timeoutMs`, or 504 when
 * the bus drops; abort rejects at once. The master fires `<tag>/new` once
 * it has found the function and bound its arguments
 * (salt/client/mixins.py low); when that fails its runner process dies
 * before firing anything, so no `new` within gather_job_timeout (+ 1 s) is
 * a job that never started: 502 naming the function; unless the master
 * started again meanwhile (`mark`, masterStartMark before the request), which
 * ends the job as a lost bus does (504).
 */
export function waitForJob(
  ctx: ClientContext,
  job: { fun: string; tag: string; jid: string; mark: string },
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<SaltEvent> {
  const { fun, tag, jid } = job;
  return new Promise<SaltEvent>((resolve, reject) => {
    if (signal?.aborted) {
      // It went away while the runner job was being started: it runs all the same.
      logAbandoned(ctx, jid);
      reject(abortError(signal));
      return;
    }
    if (!ctx.bus.connected) {
      reject(busLostError(jid, `job ${jid}`));
      return;
    }
    let settled = false;
    let unsubscribe: (() => void) | undefined;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(startTimer);
      unsubscribe?.();
      unwatch();
      fn();
    };
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(new GatewayTimeoutError(`Job ${jid} did not finish within ${timeoutMs / 1000} s; it may still be running on the master.`)),
        ),
      timeoutMs,
    );
    const startedMs = masterDurationMs(ctx.opts, 'gather_job_timeout', 10) + STARTED_MARGIN_MS;
    const startTimer =
      startedMs < timeoutMs
        ? setTimeout(() => {
            const restarted = masterStartMark(ctx.opts) !== job.mark;
            settle(() => reject(restarted ? busLostError(jid, `job ${jid}`) : new RunnerNotStartedError(fun, jid, startedMs / 1000)));
          }, startedMs)
        : undefined;
    const unwatch = watchWait(
      ctx,
      signal,
      () => settle(() => reject(busLostError(jid, `job ${jid}`))),
      () =>
        settle(() => {
          logAbandoned(ctx, jid);
          reject(abortError(signal!));
        }),
    );
    // A retained event may be replayed during subscribe() itself.
    const off = ctx.bus.subscribe(`${tag}/`, (event) => {
      if (event.tag === `${tag}/new`) clearTimeout(startTimer);
      else if (event.tag === `${tag}/ret`) settle(() => resolve(event));
    });
    if (settled) off();
    else unsubscribe = off;
  });
}
