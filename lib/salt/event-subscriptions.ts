/**
 * Who waits for which events. Subscriptions are kept in a Map keyed by
 * exact tag or '/'-ending prefix, so an event costs one lookup per segment
 * of its tag however many waiters there are, and none for the segments no
 * prefix of that length is subscribed at, nor for the whole tag while no
 * key is a whole tag (clients wait on `salt/job/<jid>/`: one lookup).
 */
import type { Retention, SaltEvent } from './event-retention.js';

/**
 * Who hears a subscription's events: a function, or an object whose
 * onEvent() does. An object of a class is the same call target for every
 * job (a closure made per job is a new one each time, and V8's optimized
 * dispatch, inlined for the first job's, starts over on the next).
 */
export type EventListener = ((event: SaltEvent) => void) | { onEvent(event: SaltEvent): void };

export interface Subscription {
  key: string;
  listener: EventListener;
  /** Live events from this sequence number on; older ones come from retention. */
  fromSeq: number;
  /** While retained events are being replayed, live ones wait here. */
  backlog: SaltEvent[] | null;
  active: boolean;
}

export class Subscriptions {
  private readonly byKey = new Map<string, Set<Subscription>>();
  /** Keys ending with the n-th '/' of a tag: how many are subscribed, by n. */
  private readonly prefixesAt: number[] = [];
  /** Keys that are whole tags. */
  private exactKeys = 0;
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

  /**
   * The subscriptions `tag` is delivered to, by key: the tag itself (unless
   * it ends with '/', then it is its own last prefix) and each of its
   * '/'-ending prefixes. Undefined when none: such an event is never decoded.
   */
  match(tag: string): Set<Subscription>[] | undefined {
    if (this.byKey.size === 0) return undefined;
    let found: Set<Subscription>[] | undefined;
    let n = 0;
    for (let i = tag.indexOf('/'); i !== -1 && n < this.prefixesAt.length; i = tag.indexOf('/', i + 1)) {
      if (!this.prefixesAt[n++]) continue;
      const set = this.byKey.get(tag.slice(0, i + 1));
      // A list of one, made as such: `[]` then push() would make room for 17.
      if (set) found = found ? [...found, set] : [set];
    }
    if (this.exactKeys > 0 && !tag.endsWith('/')) {
      const set = this.byKey.get(tag);
      if (set) found = found ? [...found, set] : [set];
    }
    return found;
  }

  /** Give a live event to the subscriptions match() found for its tag. */
  dispatch(event: SaltEvent, matched: Set<Subscription>[]): void {
    const seq = ++this.seq;
    for (const set of matched) {
      for (const sub of set) {
        // One unsubscribed (or cleared) during this dispatch is gone from its set, which
        // iteration then skips; `active` is not read here: V8 would throw away this code,
        // optimized for a fleet's returns, when the first job's end first writes it.
        if (sub.fromSeq > seq) continue; // subscribed during this dispatch: replay has it
        if (sub.backlog) sub.backlog.push(event);
        else this.deliver(sub, event);
      }
    }
  }

  /** Subscribe; retained events that match are replayed first, on the next microtask. Returns the unsubscribe function. */
  add(key: string, listener: EventListener): () => void {
    const sub: Subscription = { key, listener, fromSeq: this.seq + 1, backlog: null, active: true };
    let set = this.byKey.get(key);
    if (!set) {
      set = new Set();
      this.byKey.set(key, set);
      this.countKey(key, 1);
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
      if (current?.delete(sub) && current.size === 0) {
        this.byKey.delete(key);
        this.countKey(key, -1);
      }
    };
  }

  private countKey(key: string, by: number): void {
    if (!key.endsWith('/')) {
      this.exactKeys += by;
      return;
    }
    const n = key.split('/').length - 2; // 'salt/job/' ends with the 2nd '/': index 1
    while (this.prefixesAt.length <= n) this.prefixesAt.push(0);
    this.prefixesAt[n] += by;
  }

  /** Drop every subscription (the bus is closed). */
  clear(): void {
    for (const set of this.byKey.values()) {
      for (const sub of set) sub.active = false;
      set.clear(); // a dispatch under way delivers no more
    }
    this.byKey.clear();
    this.prefixesAt.length = 0;
    this.exactKeys = 0;
    this.live = 0;
  }

  private deliver(sub: Subscription, event: SaltEvent): void {
    try {
      const listener = sub.listener;
      if (typeof listener === 'function') listener(event);
      else listener.onEvent(event);
    } catch (err) {
      this.onListenerError(err, event);
    }
  }
}
