/**
 * Where a streamed item's answer goes as it becomes known, a minion at a
 * time: the clients that wait for minions (local, local_subset,
 * local_batch) hand each minion's entry to the sink the moment they have it
 * and keep none of them, instead of building the item's result. The HTTP
 * layer's newline-delimited JSON writer (lib/http/ndjson.ts) is one sink;
 * the clients know nothing of HTTP.
 *
 * Folding what a sink was given yields the item's result as the unstreamed
 * call returns it: `local` and `local_subset` set `result[id] = value` in the
 * order given (a minion given twice keeps its first place and its last
 * value, as the object does), `local_batch` appends `{[id]: value}` (or
 * `entry` as it is, with `raw`).
 */

/** What an item's end says: its job (null when nothing was published), and how many minion entries were returns and how many stand for no return. */
export interface ItemEnd {
  jid: string | null;
  /** local_batch: its sub-jobs, in the order they were published. */
  jids?: string[];
  returned: number;
  missing: number;
}

export interface AnswerSink {
  /**
   * One minion's entry, as the item's result shows it: a return (`returned`
   * true), or what stands for one that never came (`false`, or Salt's
   * "Minion did not return" for a minion the master reported missing).
   */
  minion(id: string, value: unknown, returned: boolean): void;
  /** local_batch with `raw`: one entry of the list as it is (the return event). */
  entry?(id: string, entry: unknown): void;
  /** The item is over: nothing more comes for it. */
  done(end: ItemEnd): void;
}

/** Counts the entries given to `sink` for its end line. */
export class CountingSink {
  returned = 0;
  missing = 0;
  constructor(private readonly sink: AnswerSink) {}

  minion(id: string, value: unknown, returned: boolean): void {
    if (returned) this.returned++;
    else this.missing++;
    this.sink.minion(id, value, returned);
  }

  entry(id: string, entry: unknown, returned: boolean): void {
    if (returned) this.returned++;
    else this.missing++;
    if (this.sink.entry) this.sink.entry(id, entry);
    else this.sink.minion(id, entry, returned);
  }

  done(jid: string | null, jids?: string[]): void {
    this.sink.done({ jid, ...(jids ? { jids } : {}), returned: this.returned, missing: this.missing });
  }
}
