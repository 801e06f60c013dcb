/**
 * Listening to a job from before it is published: a minion's return can
 * come before the master's reply names the job's minions, so the job is
 * subscribed to first (the jid is ours, ./jid.ts) and its events wait here.
 * On a master of masters the job's `syndic/<name>/<jid>` events come too
 * (./syndic.ts).
 */
import type { SaltEvent } from '../salt/event-bus.js';
import type { ClientContext } from './context.js';
import { keepShape } from '../shapes.js';
import { watchSyndicEvents } from './syndic.js';

/** Who hears a job's events: an object of a class, the same call target for every job (lib/salt/event-subscriptions.ts). */
export interface JobListener {
  onJobEvent(event: SaltEvent): void;
}

/**
 * A job's events from before its publish on: subscribed at once, they wait
 * here until listen() (the wait for the returns, once the master's reply
 * named the minions). What waits is the job's own events, no more than the
 * request would hold in the end.
 */
export class JobWatch {
  private early: SaltEvent[] | null = [];
  private listener: JobListener | undefined;
  private readonly unsubscribe: () => void;
  private readonly unsubscribeSyndics: () => void;

  constructor(
    ctx: ClientContext,
    readonly jid: string,
  ) {
    this.unsubscribe = ctx.bus.subscribe(`salt/job/${jid}/`, this);
    this.unsubscribeSyndics = watchSyndicEvents(ctx.opts, ctx.bus, jid, (event) => this.onEvent(event));
  }

  /** The bus's delivery (EventListener): handed on, or kept until listen(). */
  onEvent(event: SaltEvent): void {
    if (this.listener) this.listener.onJobEvent(event);
    else this.early?.push(event);
  }

  /** Hand the job's events to `listener`: those heard so far, then each as it comes. */
  listen(listener: JobListener): void {
    this.listener = listener;
    const early = this.early ?? [];
    this.early = null;
    for (let i = 0; i < early.length && this.listener; i++) listener.onJobEvent(early[i]);
  }

  close(): void {
    this.unsubscribe();
    this.unsubscribeSyndics();
    this.listener = undefined;
    this.early = null;
  }
}

/** A context that subscribes to nothing: for the kept instance below, never for a job. */
export const IDLE_CONTEXT = { opts: {}, bus: { subscribe: () => () => {} } } as unknown as ClientContext;

// A job's watch dies with its wait: one kept, so that its shape outlives it (lib/shapes.ts).
export const KEPT_WATCH = keepShape(new JobWatch(IDLE_CONTEXT, ''));
