/**
 * The `runner` and `runner_async` clients: RunnerClient.cmd_sync / cmd_async
 * (salt/runner.py, salt/client/mixins.py).
 *
 * Keywords come in three styles, merged in Salt's order (later wins):
 * `arg` items of the form `k=v`, the `kwarg` object, and the item's other
 * top-level keys (old style). Python then filters them against the runner
 * function's signature, which only a process holding the runner modules can
 * do; so the load carries them as one flat `kwarg` object and the master
 * maps it onto the signature itself (salt/client/mixins.py: low). Only when
 * there are positional arguments does the load say `{"arg", "kwarg"}`.
 */
import { defineKey, parseInput } from './args.js';
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
import { abortError, busLostError, logAbandoned, request, watchWait, withBus, MasterError, type ClientContext } from './context.js';
import { GatewayTimeoutError } from '../errors.js';
import type { SaltEvent } from '../salt/event-bus.js';

export interface RunnerCall {
  /** The load of `cmd: runner`. */
  load: Record<string, unknown>;
  /** How long `runner` waits: the item's `timeout`, else the master's `rest_timeout` (default 300 s, as Salt), ms. */
  timeoutMs: number;
  fullReturn: boolean;
}

/** Credentials go at the top of the load; RunnerClient._reformat_low also takes `client`, `user` and `key` out of the keywords. */
const NOT_KEYWORDS = ['fun', 'arg', 'kwarg', 'client', 'user', 'key', ...CREDENTIAL_KEYS];

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

  const load: Record<string, unknown> = { cmd: 'runner', fun: low.fun };
  const restTimeoutMs = masterDurationMs(opts, 'rest_timeout', 300);
  // The master reads {"arg", "kwarg"} as the call's own arguments only when both are there.
  if (parsed.args.length > 0 || ('arg' in kwargs && 'kwarg' in kwargs)) load.kwarg = { arg: parsed.args, kwarg: kwargs };
  else if (Object.keys(kwargs).length > 0) load.kwarg = kwargs;
  copyCredentials(low, load);
  return {
    load,
    timeoutMs: sync ? durationMs(low, 'timeout', restTimeoutMs) : restTimeoutMs,
    fullReturn: sync && truthy(low.full_return),
  };
}

/** The master's `{"tag", "jid"}` for a runner job it started. */
function jobOf(reply: Record<string, unknown>): { tag: string; jid: string } {
  if (typeof reply.tag !== 'string' || typeof reply.jid !== 'string') {
    throw new MasterError('UnexpectedReply', 'The master did not start the runner job (no tag or jid in its reply)');
  }
  return { tag: reply.tag, jid: reply.jid };
}

/** RunnerClient.cmd_async: the master's `{"tag", "jid"}`. */
export async function runRunnerAsync(ctx: ClientContext, call: RunnerCall): Promise<Record<string, unknown>> {
  const reply = await request(ctx, call.load, 'start the runner job');
  jobOf(reply);
  return reply;
}

/**
 * RunnerClient.cmd_sync: start the job, wait for `salt/run/<jid>/ret`;
 * its `return`, or with `full_return` the event `{"data", "tag"}`. Past the
 * timeout (item's `timeout`, else the master's `rest_timeout`, default 300 s,
 * as Salt): 504.
 */
export async function runRunner(ctx: ClientContext, call: RunnerCall, signal?: AbortSignal): Promise<unknown> {
  const event = await withBus(ctx, signal, async () => {
    const { tag, jid } = jobOf(await request(ctx, call.load, 'start the runner job'));
    return waitForEvent(ctx, `${tag}/ret`, jid, call.timeoutMs, signal);
  });
  if (call.fullReturn) return { data: event.data, tag: event.tag };
  const data = event.data as Record<string, unknown> | null;
  return data !== null && typeof data === 'object' ? data.return : undefined;
}

/** The event `tag` of job `jid`, or 504 after `timeoutMs`, or 504 when the bus drops; abort rejects at once. */
export function waitForEvent(ctx: ClientContext, tag: string, jid: string, timeoutMs: number, signal?: AbortSignal): Promise<SaltEvent> {
  return new Promise<SaltEvent>((resolve, reject) => {
    if (signal?.aborted) {
      // It went away while the runner job was being started: it runs all the same.
      logAbandoned(ctx, jid);
      reject(abortError(signal));
      return;
    }
    if (!ctx.bus.connected) {
      reject(busLostError(`job ${jid}`));
      return;
    }
    let settled = false;
    let unsubscribe: (() => void) | undefined;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
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
    const unwatch = watchWait(
      ctx,
      signal,
      () => settle(() => reject(busLostError(`job ${jid}`))),
      () =>
        settle(() => {
          logAbandoned(ctx, jid);
          reject(abortError(signal!));
        }),
    );
    // A retained event may be replayed during subscribe() itself.
    const off = ctx.bus.subscribe(tag, (event) => settle(() => resolve(event)));
    if (settled) off();
    else unsubscribe = off;
  });
}
