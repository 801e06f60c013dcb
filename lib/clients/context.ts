/**
 * What every client family shares: the master's request channel and event
 * bus (one of each per NetapiClient), and the translation of the master's
 * refusals and of transport failures into the HTTP errors of lib/errors.ts.
 */
import type { MasterOptions } from '../salt/config.js';
import type { EventBus } from '../salt/event-bus.js';
import type { RequestChannel } from '../salt/channel.js';
import {
  AuthenticationError,
  BadRequestError,
  JobWaitLostError,
  MasterError,
  MasterPermissionError,
  ServiceUnavailableError,
} from '../errors.js';
import { eventBusProblem } from '../salt/master-sockets.js';
import { ChannelClosedError, MasterNotAnsweringError } from '../salt/errors.js';
import { isPlainObject } from '../objects.js';
import type { Logger } from '../log.js';

/**
 * What one item's run tells whoever ran it (the handler's audit line and
 * metrics): its job, and for jobs on minions how many were targeted,
 * returned, and were answered `false` or "did not return" (missing).
 */
export interface ItemReport {
  jid?: string;
  targeted?: number;
  returned?: number;
  missing?: number;
}

/** The shared pieces a client needs to run one lowstate item. */
export interface ClientContext {
  readonly opts: MasterOptions;
  readonly channel: RequestChannel;
  readonly bus: EventBus;
  readonly logger: Logger;
  /** Timeout of one request/reply towards the master, ms. */
  readonly masterTimeoutMs: number;
  /** How long a synchronous call waits for a disconnected event bus, ms. */
  readonly busReadyTimeoutMs: number;
  /** What one synchronous call may hold of its jobs' returns, in packed bytes (`rest_wsgi: max_result_bytes`); undefined: no ceiling. */
  readonly maxResultBytes?: number;
  /** Returns may be held as their JSON text (RawJson): the results are only written with toJson. */
  readonly rawReturns?: boolean;
  /** Filled in as the item runs, when its caller asked (PreparedItem.run). */
  readonly report?: ItemReport;
  /** LocalClient's `salt_user`: who publishes (the master replaces it for eauth and tokens). */
  readonly user: string;
}

/**
 * The exception Salt raises for a master's `{"error": ...}` reply
 * (salt/client/__init__.py: pub; salt/utils/error.py: raise_error), as the
 * HTTP error rest_cherrypy answers with: credentials or permissions → 401,
 * SaltInvocationError → 400, anything else → a plain error (500).
 */
export function masterError(error: unknown): Error {
  if (!isPlainObject(error)) return new MasterError(`The master refused the request: ${String(error)}`);
  const name = typeof error.name === 'string' ? error.name : '';
  const message = typeof error.message === 'string' && error.message !== '' ? error.message : undefined;
  if (AUTH_ERRORS.has(name)) return new AuthenticationError(message ?? 'Authentication failure.');
  if (name === 'SaltInvocationError') return new BadRequestError(message ?? 'Invalid invocation.');
  return new MasterError(message ?? `The master refused the request (${name || 'unknown error'})`);
}

const AUTH_ERRORS = new Set([
  'AuthenticationError',
  'AuthorizationError',
  'EauthAuthenticationError',
  'TokenAuthenticationError',
  'SaltAuthenticationError',
  'AuthError',
]);

/**
 * One request/reply with the master. A timeout or a closed channel is the
 * master not answering: 503. A reply holding `error` is raised as Salt does.
 * `what` says what the request is for, in error messages ("start the runner job").
 */
export async function request(ctx: ClientContext, load: Record<string, unknown>, what: string): Promise<Record<string, unknown>> {
  let reply: unknown;
  try {
    reply = await ctx.channel.send(load, ctx.masterTimeoutMs);
  } catch (err) {
    if (err instanceof MasterNotAnsweringError) {
      // The answer says only "not available"; the log says why (no connection, and the connection's last error).
      if (!(err instanceof ChannelClosedError)) ctx.logger.warn(`could not ${what}: ${err.message}`);
      throw new ServiceUnavailableError();
    }
    throw err;
  }
  // The master's transport answers a load it could not handle with a bare
  // string ('bad load', 'Some exception handling minion payload').
  if (typeof reply === 'string') throw new MasterError(`The master did not ${what} (it answered: ${reply})`);
  if (!isPlainObject(reply)) return {};
  if ('error' in reply && reply.error !== undefined && reply.error !== null) throw masterError(reply.error);
  return reply;
}

/**
 * Resolve once the event bus is connected, or 503: a synchronous job must
 * not be published when its returns cannot be heard.
 */
export async function busReady(ctx: ClientContext): Promise<void> {
  if (ctx.bus.connected) return;
  // Not waiting for a bus this user may not connect to: a 503 that says why.
  const denied = eventBusProblem(ctx.opts);
  if (denied) throw new MasterPermissionError(denied.reply);
  try {
    await ctx.bus.ready(ctx.busReadyTimeoutMs);
  } catch {
    throw new ServiceUnavailableError();
  }
}

/**
 * Run a synchronous call, one that hears its job on the bus: the bus must be
 * up (else 503: a job whose returns can't be heard is never published), and
 * it is held while the call runs, so that the job's events that come before
 * the call subscribes (the master's reply names the job) are kept for it.
 */
export async function withBus<T>(ctx: ClientContext, signal: AbortSignal | undefined, run: () => Promise<T>, hold = true): Promise<T> {
  throwIfAborted(signal);
  await busReady(ctx);
  throwIfAborted(signal);
  // `hold` false: the call listens to its jobs before publishing them (JobWatch), nothing to keep.
  const release = hold ? ctx.bus.hold() : () => {};
  try {
    return await run();
  } finally {
    release();
  }
}

/** The error a waiting call ends with when the bus drops (master restart, or close()). */
export function busLostError(jid: string, what: string): JobWaitLostError {
  return new JobWaitLostError(jid, what);
}

/** The rejection of a call whose `signal` aborted. */
export function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * The one log line of a job whose request went away: nobody will read its
 * result, but it keeps running on the master (its jid finds it there).
 */
export function logAbandoned(ctx: ClientContext, jid: string): void {
  ctx.logger.info(`stopped waiting for job ${jid}: the request went away; the job keeps running on the master`);
}

/** Throw if `signal` aborted: checked before publishing a job nobody waits for any more. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Watch a wait: `onBusLost` runs if the bus disconnects, `onAbort` if the
 * signal aborts. Returns the function that removes both listeners.
 */
export function watchWait(ctx: ClientContext, signal: AbortSignal | undefined, onBusLost: () => void, onAbort: () => void): () => void {
  ctx.bus.on('disconnect', onBusLost);
  signal?.addEventListener('abort', onAbort, { once: true });
  return () => {
    ctx.bus.off('disconnect', onBusLost);
    signal?.removeEventListener('abort', onAbort);
  };
}
