/**
 * `local_subset`: LocalClient.cmd_subset (salt/client/__init__.py), a
 * `local` call on a few of the targets, chosen among those that have the
 * function.
 */
import { positiveIntegerField, type Lowstate } from './fields.js';
import type { MasterOptions } from '../salt/config.js';
import type { ClientContext } from './context.js';
import type { AnswerSink } from './answer-sink.js';
import { localCall, runLocal, type LocalCall } from './local.js';

/** A `local_subset` item, read: the `local` call and how many minions run it. */
export interface SubsetCall {
  local: LocalCall;
  subset: number;
}

/**
 * LocalClient.cmd_subset: ask the targets for `sys.list_functions`, pick
 * `subset` of those that have `fun`, at random, and run `fun` on them.
 */
export async function runLocalSubset(
  ctx: ClientContext,
  { local: call, subset }: SubsetCall,
  signal?: AbortSignal,
  sink?: AnswerSink,
): Promise<Record<string, unknown>> {
  const listing = await runLocal(
    ctx,
    {
      ...call,
      pub: { ...call.pub, fun: 'sys.list_functions', arg: [], ret: '', jid: '' },
      fullReturn: false,
      expectMinions: false,
    },
    signal,
    undefined,
    false, // its lists of functions are read here
  );
  const chosen: string[] = [];
  for (const id of shuffle(Object.keys(listing))) {
    const functions = listing[id];
    if (Array.isArray(functions) && functions.includes(call.pub.fun)) chosen.push(id);
    if (chosen.length >= subset) break;
  }
  // Python publishes to an empty list and gets "no minions": `{}`.
  if (chosen.length === 0) {
    sink?.done({ jid: null, returned: 0, missing: 0 });
    return {};
  }
  // Only the job itself is streamed: the listing is how its minions are chosen.
  return runLocal(ctx, { ...call, pub: { ...call.pub, tgt: chosen, tgtType: 'list' } }, signal, sink);
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Read a `local_subset` item: `subset` defaults to 3 (LocalClient.cmd_subset). */
export function subsetCall(low: Lowstate, opts: MasterOptions): SubsetCall {
  return { local: localCall(low, opts), subset: positiveIntegerField(low, 'subset', 3) };
}
