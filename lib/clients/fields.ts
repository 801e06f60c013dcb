/**
 * Reading a lowstate item's fields. Python's clients take whatever they are
 * given and fail late (often with a TypeError and a 500); here a field of
 * the wrong type is a 400 naming the field, raised before anything runs.
 */
import { BadRequestError } from '../errors.js';
import { isPlainObject } from '../objects.js';
import { positiveInteger, positiveNumber, secondsToMs } from '../numbers.js';
import type { MasterOptions } from '../salt/config.js';

export type Lowstate = Record<string, unknown>;

/** `tgt`: a target expression, or a list of minion ids. */
export function target(low: Lowstate): string | string[] {
  const tgt = low.tgt;
  if (tgt === undefined || tgt === null) throw new BadRequestError("Missing 'tgt'");
  if (typeof tgt === 'string') return tgt;
  if (Array.isArray(tgt) && tgt.every((t) => typeof t === 'string')) return tgt as string[];
  throw new BadRequestError("'tgt' must be a string or a list of strings");
}

/**
 * `arg`: a list; a single value is taken as a one-item list (as rest_cherrypy
 * does; Python's rest_wsgi would split a string into its characters), and an
 * empty string as no arguments (NetapiClient's own example sends `'arg': ''`).
 */
export function argList(low: Lowstate): unknown[] {
  const arg = low.arg;
  if (arg === undefined || arg === null || arg === '') return [];
  return Array.isArray(arg) ? arg : [arg];
}

/** `kwarg`: keyword arguments as an object. */
export function kwargDict(low: Lowstate): Record<string, unknown> | undefined {
  const kwarg = low.kwarg;
  if (kwarg === undefined || kwarg === null) return undefined;
  if (isPlainObject(kwarg)) return kwarg;
  throw new BadRequestError("'kwarg' must be an object");
}

/** A string field with a default (`tgt_type`, `ret`, `jid`). */
export function stringField(low: Lowstate, key: string, fallback: string): string {
  const value = low[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'string') return value;
  throw new BadRequestError(`'${key}' must be a string`);
}

/** `tgt_type`, or the name it had before Salt 2017.7, `expr_form`. */
export function targetType(low: Lowstate): string {
  if (low.tgt_type !== undefined && low.tgt_type !== null) return stringField(low, 'tgt_type', 'glob');
  return stringField(low, 'expr_form', 'glob');
}

/**
 * A duration given in seconds (`timeout`, `gather_job_timeout`...), as ms: a
 * positive number or a numeric string; `fallbackMs` when absent. Salt itself
 * keeps integers only; fractions are kept here so that tests can run at a
 * fraction of Salt's pace. Every client reads its durations through this,
 * once, when the item is read.
 */
export function durationMs(low: Lowstate, key: string, fallbackMs: number): number;
export function durationMs(low: Lowstate, key: string, fallbackMs?: number): number | undefined;
export function durationMs(low: Lowstate, key: string, fallbackMs?: number): number | undefined {
  const value = low[key];
  if (value === undefined || value === null) return fallbackMs;
  const n = positiveNumber(value);
  if (n === undefined) throw new BadRequestError(`'${key}' must be a positive number of seconds`);
  return secondsToMs(n);
}

/** A master option in seconds (`timeout`, `gather_job_timeout`, `rest_timeout`) as ms, or `fallbackS` when unset or not positive. */
export function masterDurationMs(opts: MasterOptions, key: string, fallbackS: number): number {
  return secondsToMs(positiveNumber(opts[key]) ?? fallbackS);
}

/** A positive integer field (`subset`), a number or in digits. */
export function positiveIntegerField(low: Lowstate, key: string, fallback: number): number {
  const value = low[key];
  if (value === undefined || value === null) return fallback;
  const n = positiveInteger(value);
  if (n === undefined) throw new BadRequestError(`'${key}' must be a positive integer`);
  return n;
}

/** The keys that carry an item's credentials (salt/auth/__init__.py: LoadAuth reads them from the load). */
export const CREDENTIAL_KEYS = ['username', 'password', 'eauth', 'token'] as const;

/** Copy the item's credentials, those it has, onto `into` (a load, or a batch's keywords). */
export function copyCredentials(low: Lowstate, into: Record<string, unknown>): Record<string, unknown> {
  for (const key of CREDENTIAL_KEYS) if (key in low) into[key] = low[key];
  return into;
}

/** Python's truthiness, for flags such as `full_return` that Salt tests with `if`. */
export function truthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === '' || value === 0n) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isPlainObject(value)) return Object.keys(value).length > 0;
  return true;
}

/** The item's keys other than `skip`, in order: what Python passes on as `**kwargs`. */
export function extraKeys(low: Lowstate, skip: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(low)) {
    if (skip.has(key)) continue;
    // `__proto__` stays data (assigning it would set the prototype); other
    // keys are assigned, which keeps the object fast to read and to pack.
    if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return out;
}
