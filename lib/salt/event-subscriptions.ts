/**
 * Who waits for which events. Subscriptions are kept in a Map keyed by
 * exact tag or '/'-ending prefix, so an event costs one lookup per segment
 * of its tag however many waiters there are.
 */
import type { Retention, SaltEvent } from './event-retention.js';

interface Subscription {
  key: string;
  listener: (event: SaltEvent) => void;
  /** Live events from this sequence number on; older ones come from retention. */
  fromSeq: number;
  /** While retained events are being replayed, live ones wait here. */
  backlog: SaltEvent[] | null;
  active: boolean;
}

/**
 * The keys a tag is delivered under: itself (unless it ends with '/', then
 * it is its own last prefix) and each of its '/'-ending prefixes.
 */
function keysOf(tag: string): string[] {
  const keys: string[] = [];
  for (let i = tag.indexOf('/'); i !== -1; i = tag.indexOf('/', i + 1)) keys.push(tag.slice(0, i + 1));
  if (!tag.endsWith('/')) keys.push(tag);
  return keys;
}

export class Subscriptions {
  private readonly byKey = new Map<string, Set<Subscription>>();
  private live = 0;
  /** Sequence number of the last event dispatched. */
  private seq = 0;

  /** `onListenerError` hears what a listener throws: a listener's bug must not break the reader or other listeners. */
  constructor(
    private readonly retention: Retention,
    private readonly onListenerError: (err: unknown, event: SaltEvent) => void,
  ) {}

  /** Live subscriptions. */
  get count(): number {
    return this.live;
  }

  /** Whether a subscription matches `tag` (before decoding its event: nobody's are never decoded). */
  wants(tag: string): boolean {
    if (this.byKey.size === 0) return false;
    if (this.byKey.has(tag)) return true;
    for (let i = tag.indexOf('/'); i !== -1; i = tag.indexOf('/', i + 1)) {
      if (this.byKey.has(tag.slice(0, i + 1))) return true;
    }
    return false;
  }

  /** Give a live event to every subscription that matches it. */
  dispatch(event: SaltEvent): void {
    const seq = ++this.seq;
    if (this.byKey.size === 0) return;
    for (const key of keysOf(event.tag)) {
      const set = this.byKey.get(key);
      if (!set) continue;
      for (const sub of set) {
        if (!sub.active || sub.fromSeq > seq) continue; // subscribed during this dispatch: replay has it
        if (sub.backlog) sub.backlog.push(event);
        else this.deliver(sub, event);
      }
    }
  }

  /** Subscribe; retained events that match are replayed first, on the next microtask. Returns the unsubscribe function. */
  add(key: string, listener: (event: SaltEvent) => void): () => void {
    const sub: Subscription = { key, listener, fromSeq: this.seq + 1, backlog: null, active: true };
    let set = this.byKey.get(key);
    if (!set) {
      set = new Set();
      this.byKey.set(key, set);
    }
    set.add(sub);
    this.live++;

    const replay = this.retention.matching(key);
    if (replay.length > 0) {
      sub.backlog = [];
      queueMicrotask(() => {
        for (const event of replay) if (sub.active) this.deliver(sub, event);
        const backlog = sub.backlog!;
        for (let i = 0; i < backlog.length && sub.active; i++) this.deliver(sub, backlog[i]);
        sub.backlog = null;
      });
    }

    return () => {
      if (!sub.active) return;
      sub.active = false;
      this.live--;
      const current = this.byKey.get(key);
      if (current?.delete(sub) && current.size === 0) this.byKey.delete(key);
    };
  }

  /** Drop every subscription (the bus is closed). */
  clear(): void {
    for (const set of this.byKey.values()) for (const sub of set) sub.active = false;
    this.byKey.clear();
    this.live = 0;
  }

  private deliver(sub: Subscription, event: SaltEvent): void {
    try {
      sub.listener(event);
    } catch (err) {
      this.onListenerError(err, event);
    }
  }
}
