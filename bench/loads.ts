/**
 * What the bench sends: the same three loads over HTTP (a lowstate list,
 * through the whole server) and raw (the master request straight through
 * our transport, RequestChannel + EventBus, no HTTP and no dispatcher).
 */
import type { RequestChannel } from '../lib/salt/channel.js';
import type { EventBus } from '../lib/salt/event-bus.js';
import { waitFor } from '../test/support/event-bus.js';

export const SLOW_MINIONS = Array.from({ length: 64 }, (_, i) => `slow-${String(i).padStart(2, '0')}`);
export const SLOW_DELAY_MS = 200;

/** The master double's default eauth user. */
const CREDENTIALS = { eauth: 'pam', username: 'saltdev', password: 'x' };

export type LoadName = 'local_async' | 'local' | 'wheel';
export const LOADS: LoadName[] = ['local_async', 'local', 'wheel'];

/** The lowstate item of a load (`local` and `local_async` to `tgt`). */
export function lowstate(load: LoadName, tgt = 'minion1'): Record<string, unknown> {
  if (load === 'wheel') return { client: 'wheel', fun: 'key.list_all', ...CREDENTIALS };
  return { client: load, tgt, fun: 'test.ping', ...CREDENTIALS };
}

/** Whether an HTTP answer is the right one for the load (a wrong answer counts as an error). */
export function answerIsRight(load: LoadName, body: unknown, tgt = 'minion1'): boolean {
  const ret = (body as { return?: unknown[] })?.return?.[0] as Record<string, any> | undefined;
  if (!ret || typeof ret !== 'object') return false;
  if (load === 'local_async') return typeof ret.jid === 'string' && ret.minions?.[0] === tgt;
  if (load === 'local') return Object.keys(ret).length === 1 && ret[tgt] === true;
  return ret.data?.success === true;
}

export interface RawTransport {
  channel: RequestChannel;
  bus: EventBus;
}

/**
 * The load sent raw: a publish (and for `local`, waiting on the bus for the
 * minion's return, as Salt's LocalClient does), or a wheel request. Resolves
 * true when the answer is the right one.
 */
export async function sendRaw(raw: RawTransport, load: LoadName, tgt = 'minion1'): Promise<boolean> {
  if (load !== 'local') return sendRawHeld(raw, load, tgt);
  // Held, the bus keeps job events for late subscribers: a return read before the reply is replayed.
  const release = raw.bus.hold();
  try {
    return await sendRawHeld(raw, load, tgt);
  } finally {
    release();
  }
}

async function sendRawHeld(raw: RawTransport, load: LoadName, tgt: string): Promise<boolean> {
  if (load === 'wheel') {
    const reply = (await raw.channel.send({ cmd: 'wheel', fun: 'key.list_all', ...CREDENTIALS })) as Record<string, any>;
    return reply?.data?.success === true;
  }
  const reply = (await raw.channel.send({
    cmd: 'publish',
    tgt,
    fun: 'test.ping',
    arg: [],
    tgt_type: 'glob',
    ret: '',
    jid: '',
    user: 'bench',
    kwargs: CREDENTIALS,
  })) as Record<string, any>;
  const jid = reply?.load?.jid;
  if (typeof jid !== 'string') return false;
  if (load === 'local_async') return true;
  const event = await waitFor(raw.bus, `salt/job/${jid}/ret/${tgt}`, 5000);
  return event.data?.return === true;
}
