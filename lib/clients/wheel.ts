/**
 * The `wheel` and `wheel_async` clients: WheelClient (salt/wheel/__init__.py).
 *
 * A wheel call runs to completion inside the master's request handler and
 * the reply is the result, `{"tag", "data"}`. The load is the item itself
 * (minus `client`) with `cmd: wheel`: the master maps its keys onto the
 * wheel function's signature.
 */
import { extraKeys, type Lowstate } from './fields.js';
import { request, type ClientContext } from './context.js';
import { MasterError } from '../errors.js';

const NOT_PASSED_ON = new Set(['client', 'fun', 'cmd']);

/** Read a wheel item: its load. */
export function wheelLoad(low: Lowstate): Record<string, unknown> {
  return { cmd: 'wheel', fun: low.fun, ...extraKeys(low, NOT_PASSED_ON) };
}

/** WheelClient.cmd_sync: the master's `{"tag", "data": {..., "return", "success"}}`. */
export async function runWheel(ctx: ClientContext, load: Record<string, unknown>): Promise<Record<string, unknown>> {
  return request(ctx, load, 'run the wheel job');
}

/**
 * `wheel_async`: `{"tag", "jid"}`.
 *
 * Python's WheelClient.cmd_async forks a process that makes the same call
 * and answers at once with a jid it made up, which the master never uses
 * (the master names wheel jobs itself) and swallows authentication errors.
 * Here the call is made and the master's own tag and jid are answered, so
 * they match the events on the bus, and a refusal is a 401; the price is
 * waiting for the wheel function, which runs inside the master's request
 * handler and is quick (key management, config reads).
 */
export async function runWheelAsync(ctx: ClientContext, load: Record<string, unknown>): Promise<{ tag: string; jid: string }> {
  const reply = await request(ctx, load, 'run the wheel job');
  const data = reply.data as Record<string, unknown> | undefined;
  const tag = reply.tag;
  const jid = data && typeof data.jid === 'string' ? data.jid : typeof tag === 'string' ? tag.split('/').pop() : undefined;
  if (typeof tag !== 'string' || typeof jid !== 'string') {
    throw new MasterError('The master did not run the wheel job (no tag in its reply)');
  }
  if (ctx.report) ctx.report.jid = jid;
  return { tag, jid };
}
