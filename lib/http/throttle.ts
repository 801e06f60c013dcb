/**
 * Password guessing, slowed down: failed logins counted per client address
 * over a sliding window. Past `limit` failures within `windowMs`, the
 * address is refused (429) until its oldest counted failure leaves the
 * window; a success erases nothing. Salt's own front ends have no such
 * limit: sites put fail2ban on the master's log.
 *
 * A failure is a password the master refused: a POST answered 401 for an
 * item that logged in with eauth credentials (README: Failed logins),
 * counted once per request (the items stop at the first 401, so a request
 * holds at most one). A token refused is not one: it can't be guessed (256
 * bits), and an expired one is a client's everyday event (pepper logs in
 * again); nor are our own refusals before the master is asked (no
 * credentials, raw_shell, a malformed token), which guess nothing.
 *
 * Memory is bounded: one entry per address with a failure in the window, at
 * most `maxAddresses` of them; past that the address whose last failure is
 * oldest goes out. An entry holds at most `limit` times and a few names.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { TooManyFailedLoginsError } from '../errors.js';

export const DEFAULT_AUTH_FAILURE_LIMIT = 10;
export const DEFAULT_AUTH_FAILURE_WINDOW_MS = 60_000;
/** Addresses tracked at once: 3 to 10 MB (README: Failed logins; bench/throttle.ts). */
export const DEFAULT_AUTH_FAILURE_ADDRESSES = 10_000;

/** Distinct names kept per address for the warning, and their length. */
const NAMES_KEPT = 5;
const NAME_CHARS = 64;
/** Rough heap bytes of one entry beyond its strings and times: its Map slot, objects, arrays (bench/throttle.ts measures it). */
const ENTRY_OVERHEAD_BYTES = 260;

export interface AuthThrottleOptions {
  /** Failures within the window that throttle an address, 1 or more (authThrottle() takes 0 as off). */
  limit: number;
  windowMs: number;
  /** Addresses tracked at most (oldest last failure out first). */
  maxAddresses?: number;
  /** Gets one warning when an address becomes throttled. */
  logger: Logger;
}

interface Entry {
  /** performance.now() of its failures in the window, oldest first, at most `limit`. */
  times: number[];
  /** Who was tried, as whoTried() writes it; distinct, at most NAMES_KEPT. */
  names: string[];
  /** Names not kept past NAMES_KEPT. */
  moreNames: number;
}

export class AuthThrottle {
  readonly limit: number;
  readonly windowMs: number;
  readonly maxAddresses: number;
  private readonly logger: Logger;
  /** In order of last failure, oldest first: a Map keeps insertion order, and fail() re-inserts. */
  private readonly table = new Map<string, Entry>();

  constructor(options: AuthThrottleOptions) {
    this.limit = options.limit;
    this.windowMs = options.windowMs;
    this.maxAddresses = options.maxAddresses ?? DEFAULT_AUTH_FAILURE_ADDRESSES;
    this.logger = options.logger;
    if (!Number.isInteger(this.limit) || this.limit < 1) throw new RangeError(`limit must be a positive integer, got ${this.limit}`);
    if (!(this.windowMs > 0) || !Number.isFinite(this.windowMs))
      throw new RangeError(`windowMs must be a positive number, got ${this.windowMs}`);
    if (!Number.isInteger(this.maxAddresses) || this.maxAddresses < 1) {
      throw new RangeError(`maxAddresses must be a positive integer, got ${this.maxAddresses}`);
    }
  }

  /** Whole seconds until `address` may try again (for Retry-After); 0 when it may now. */
  retryAfterS(address: string, now = performance.now()): number {
    const entry = this.table.get(address);
    if (!entry || entry.times.length < this.limit) return 0;
    const left = entry.times[entry.times.length - this.limit] + this.windowMs - now;
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /** The 429 for `address` while it is throttled, else undefined. */
  refusal(address: string): TooManyFailedLoginsError | undefined {
    const retryAfterS = this.retryAfterS(address);
    return retryAfterS ? new TooManyFailedLoginsError(retryAfterS) : undefined;
  }

  /**
   * The master refused item `low` from `address` (a 401): one failed login
   * if it tried a password, else nothing. `low` is read for who was tried.
   */
  fail(address: string, low: unknown, now = performance.now()): void {
    if (!triedPassword(low)) return;
    this.forgetExpired(now);
    const name = whoTried(low);
    let entry = this.table.get(address);
    if (entry) {
      this.table.delete(address); // set again below, last: the newest
      let expired = 0;
      while (expired < entry.times.length && entry.times[expired] <= now - this.windowMs) expired++;
      if (expired === entry.times.length)
        entry = undefined; // a new streak: forget who was tried before
      else if (expired) entry.times.splice(0, expired);
    }
    // Requests already running when the address was throttled fail too: no second warning for them.
    const wasThrottled = entry !== undefined && entry.times.length >= this.limit;
    if (!entry) {
      // Arrays made with their element, not pushed into: a push reserves room for 17.
      entry = { times: [now], names: [name], moreNames: 0 };
    } else {
      entry.times.push(now);
      if (entry.times.length > this.limit) entry.times.shift();
      if (!entry.names.includes(name)) {
        if (entry.names.length < NAMES_KEPT) entry.names.push(name);
        else entry.moreNames++;
      }
    }
    this.table.set(address, entry);
    if (!wasThrottled && entry.times.length === this.limit) this.warn(address, entry, now);
    if (this.table.size > this.maxAddresses) this.table.delete(this.table.keys().next().value!);
  }

  /** Addresses tracked. */
  get addresses(): number {
    return this.table.size;
  }

  /** Addresses tracked, and roughly the bytes they hold. */
  stats(): { addresses: number; approxBytes: number } {
    let approxBytes = 0;
    for (const [address, entry] of this.table) {
      approxBytes += ENTRY_OVERHEAD_BYTES + 2 * address.length + 8 * entry.times.length;
      for (const name of entry.names) approxBytes += 16 + 2 * name.length;
    }
    return { addresses: this.table.size, approxBytes };
  }

  /** Entries whose last failure left the window: at the front, in order. */
  private forgetExpired(now: number): void {
    const since = now - this.windowMs;
    for (const [address, entry] of this.table) {
      if (entry.times[entry.times.length - 1] > since) return;
      this.table.delete(address);
    }
  }

  private warn(address: string, entry: Entry, now: number): void {
    const names = [...entry.names];
    if (entry.moreNames) names.push(`${entry.moreNames} more`);
    this.logger.warn(
      `too many failed logins from ${address}: ${this.limit} within ${this.windowMs / 1000} s, tried ${names.join(', ')}; ` +
        `its POSTs get 429 for ${this.retryAfterS(address, now)} s`,
    );
  }
}

/**
 * The throttle createHandler's options ask for (`authFailureLimit`,
 * `authFailureWindowMs`), or undefined when turned off (either is 0).
 */
export function authThrottle(
  options: { authFailureLimit?: number; authFailureWindowMs?: number },
  logger: Logger,
): AuthThrottle | undefined {
  const limit = options.authFailureLimit ?? DEFAULT_AUTH_FAILURE_LIMIT;
  const windowMs = options.authFailureWindowMs ?? DEFAULT_AUTH_FAILURE_WINDOW_MS;
  if (!Number.isInteger(limit) || limit < 0) throw new RangeError(`authFailureLimit must be a non-negative integer, got ${limit}`);
  if (typeof windowMs !== 'number' || !(windowMs >= 0) || !Number.isFinite(windowMs)) {
    throw new RangeError(`authFailureWindowMs must be a non-negative number of ms, got ${windowMs}`);
  }
  return limit === 0 || windowMs === 0 ? undefined : new AuthThrottle({ limit, windowMs, logger });
}

/**
 * Whether item `low` logged in with eauth credentials: `eauth` and no
 * token (a token wins over eauth, as in salt/master.py _prep_auth_info).
 */
function triedPassword(low: unknown): boolean {
  if (low === null || typeof low !== 'object') return false;
  const { token, eauth } = low as Record<string, unknown>;
  return token === undefined && eauth !== undefined;
}

/**
 * Who an item tried to log in as, for the log: its username in JSON quotes
 * (the client's text, so anything may be in it), else `(none)`; never a password.
 */
function whoTried(low: unknown): string {
  const { username } = low as Record<string, unknown>;
  return typeof username === 'string' ? JSON.stringify(username.slice(0, NAME_CHARS)) : '(none)';
}
