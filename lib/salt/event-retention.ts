/**
 * Job events kept for late subscribers. A client learns a jid only from the
 * master's reply to its publish, and a fast minion's return can be read from
 * the bus before that reply is: while a synchronous call holds the bus, job
 * events (salt/job/, salt/run/, salt/wheel/) are kept, as bytes, for a few
 * seconds, and a subscription replays those that match.
 */
import { performance } from 'node:perf_hooks';
import { decode } from './codec.js';
import { PackedEvent } from './packed-event.js';

export interface SaltEvent {
  tag: string;
  // biome-ignore lint/suspicious/noExplicitAny: whatever msgpack data the master sent; the clients read what they expect of it
  data: any;
  /** Bytes of its packed data, when it came from the bus: about what holding it costs. */
  packedBytes?: number;
}

/** Job events, the ones retained; the match is the job's own prefix, `salt/job/<jid>/`. */
export const JOB_TAG = /^salt\/(?:job|run|wheel)\/[^/]+\//;

/** Where `\n\n` ends an event's tag in `buf[start..end)`, or -1 (a loop over a short tag: no call into C++ per event). */
export function tagEnd(buf: Uint8Array, start: number, end: number): number {
  for (let i = start; i + 1 < end; i++) if (buf[i] === 0x0a && buf[i + 1] === 0x0a) return i;
  return -1;
}

/**
 * The event, or null when its data is not msgpack (it is then dropped).
 * Data that decodes surely and plainly stays packed (./packed-event.ts), in
 * a copy of its own unless `owned`: `bytes` may be a read buffer used again.
 */
export function decodeEvent(tag: string, bytes: Buffer, start = 0, end = bytes.length, owned = false): SaltEvent | null {
  const packed = PackedEvent.from(tag, bytes, start, end, owned);
  if (packed) return packed;
  try {
    return { tag, data: decode(bytes, start, end), packedBytes: end - start };
  } catch {
    return null;
  }
}

interface Retained {
  tag: string;
  /** The packed data, until a replay decodes it into `event`. */
  bytes: Buffer | undefined;
  /** Decoded already (someone was subscribed when it came, or a replay), or null when it can't be. */
  event: SaltEvent | null | undefined;
  at: number;
  /** Its job's prefix (`salt/job/<jid>/`), the key of byJob. */
  job: string;
}

export class Retention {
  private readonly retained: Retained[] = [];
  private head = 0;
  /** Retained events by job prefix, oldest first. */
  private readonly byJob = new Map<string, Retained[]>();

  /** Events older than `retainMs` go, and past `retainMax` the oldest go first. */
  constructor(
    private readonly retainMs: number,
    private readonly retainMax: number,
  ) {}

  /** Whether anything is ever kept (retainMs or retainMax 0 turns retention off). */
  get enabled(): boolean {
    return this.retainMs > 0 && this.retainMax > 0;
  }

  /** Events kept now. */
  get size(): number {
    return this.retained.length - this.head;
  }

  /** Keep the event of job prefix `job`: the event when it was decoded already, else its bytes (a copy of its own). */
  add(tag: string, job: string, bytes: Buffer | undefined, event: SaltEvent | null | undefined): void {
    const now = performance.now();
    const r: Retained = { tag, bytes: event ? undefined : bytes, event, at: now, job };
    this.retained.push(r);
    const list = this.byJob.get(job);
    if (list) list.push(r);
    else this.byJob.set(job, [r]);
    this.evict(now);
  }

  /** Retained events a subscription to `key` gets, oldest first, decoded. */
  matching(key: string): SaltEvent[] {
    this.evict(performance.now());
    if (this.head === this.retained.length) return [];
    const matches = (tag: string) => tag === key || (key.endsWith('/') && tag.startsWith(key));
    // A key inside one job (what clients subscribe to) looks at that job's
    // events only; a wider one ('salt/job/') at all of them.
    const job = JOB_TAG.exec(key)?.[0];
    const candidates = job ? (this.byJob.get(job) ?? []) : this.retained.slice(this.head);
    const events: SaltEvent[] = [];
    for (const r of candidates) {
      if (!matches(r.tag)) continue;
      if (r.event === undefined) {
        r.event = decodeEvent(r.tag, r.bytes!, 0, r.bytes!.length, true);
        r.bytes = undefined;
      }
      if (r.event) events.push(r.event);
    }
    return events;
  }

  clear(): void {
    this.retained.length = 0;
    this.head = 0;
    this.byJob.clear();
  }

  private evict(now: number): void {
    const oldest = now - this.retainMs;
    while (this.head < this.retained.length) {
      const r = this.retained[this.head];
      if (r.at > oldest && this.retained.length - this.head <= this.retainMax) break;
      this.head++;
      // A job's events are retained in arrival order: r is its oldest.
      const list = this.byJob.get(r.job);
      if (list && list[0] === r) list.shift();
      if (list?.length === 0) this.byJob.delete(r.job);
    }
    if (this.head > 0 && this.head * 2 >= this.retained.length) {
      this.retained.splice(0, this.head);
      this.head = 0;
    }
  }
}
