/**
 * The bench's reader of big answers: `{"return": [{"<minion>": <ret>, ...}, ...]}`
 * read as it streams in, handing over each entry of each result object (its
 * key, and its value parsed alone), so that a 1 GiB answer is checked
 * without ever being one string (V8 can't make one past ~512 MiB, and the
 * client's memory would be measured beside the server's on this machine).
 *
 * Hand-written rather than a package: it only has to find where each entry
 * of depth 3 starts and ends (quotes, escapes, brackets), and skip through
 * long strings with indexOf; JSON.parse does the rest, one entry at a time.
 */

/** Called per entry of a result object: `item` is its index in `return`. */
export type OnEntry = (item: number, key: string, value: unknown) => void;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;

/** Depth of the result objects: the root object (1), the `return` list (2), each result (3). */
const ENTRY_DEPTH = 3;

export class EntryReader {
  private depth = 0;
  private inString = false;
  /** The previous byte was a backslash inside a string. */
  private escaped = false;
  /** Index of the current item of `return` (incremented as each result object opens). */
  private item = -1;
  /** At depth 3: reading a key (its bytes), then its value (its bytes). */
  private state: 'key' | 'afterKey' | 'value' | 'none' = 'none';
  private key = '';
  private pieces: Buffer[] = [];
  /** Where the piece being captured started in the current chunk, or -1. */
  private captureFrom = -1;
  entries = 0;
  bytes = 0;

  constructor(private readonly onEntry: OnEntry) {}

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.state === 'key' || this.state === 'value') this.captureFrom = 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.inString) {
        if (this.escaped) {
          this.escaped = false;
          i++;
          continue;
        }
        // Jump to the next quote or backslash: long strings cost memchr, not a loop per byte.
        const q = chunk.indexOf(QUOTE, i);
        const b = chunk.indexOf(BACKSLASH, i);
        const next = q === -1 ? b : b === -1 ? q : Math.min(q, b);
        if (next === -1) {
          i = n;
          break;
        }
        if (chunk[next] === BACKSLASH) {
          this.escaped = true;
          i = next + 1;
          continue;
        }
        this.inString = false;
        i = next + 1;
        if (this.state === 'key' && this.depth === ENTRY_DEPTH) {
          this.capture(chunk, i);
          this.key = JSON.parse(this.take()) as string;
          this.state = 'afterKey';
        }
        continue;
      }
      const c = chunk[i];
      if (this.depth === ENTRY_DEPTH && this.state === 'value' && (c === COMMA || c === 0x7d)) {
        this.capture(chunk, i);
        this.onEntry(this.item, this.key, JSON.parse(this.take()));
        this.entries++;
        this.state = 'none';
      }
      if (c === QUOTE) {
        this.inString = true;
        if (this.depth === ENTRY_DEPTH && this.state === 'none') {
          this.state = 'key';
          this.captureFrom = i;
        }
      } else if (c === 0x7b || c === 0x5b) {
        this.depth++;
        if (this.depth === ENTRY_DEPTH && c === 0x7b) this.item++;
      } else if (c === 0x7d || c === 0x5d) {
        this.depth--;
      } else if (c === COLON && this.depth === ENTRY_DEPTH && this.state === 'afterKey') {
        this.state = 'value';
        this.captureFrom = i + 1;
      }
      i++;
    }
    if (this.captureFrom !== -1) this.capture(chunk, n);
  }

  /** The whole answer was read and its brackets closed. */
  get complete(): boolean {
    return this.depth === 0 && !this.inString && this.bytes > 0;
  }

  private capture(chunk: Buffer, end: number): void {
    if (this.captureFrom === -1) return;
    // A copy: the chunk's memory is the socket's.
    if (end > this.captureFrom) this.pieces.push(Buffer.from(chunk.subarray(this.captureFrom, end)));
    this.captureFrom = -1;
  }

  private take(): string {
    const text = Buffer.concat(this.pieces).toString('utf8');
    this.pieces = [];
    return text;
  }
}
