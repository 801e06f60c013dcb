/**
 * Reading a positive number from what a person wrote: a lowstate field, a
 * `rest_wsgi:` setting, a command-line flag or a handler option. Each caller
 * words its own refusal (400, exit 2, RangeError); the rule is one.
 */

/** A positive finite number, or a string holding one; undefined for anything else. */
export function positiveNumber(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** Seconds as whole milliseconds (1.1 s is 1100 ms, not 1100.0000000000002). */
export function secondsToMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

/** An option in ms: `fallback` when absent, else a positive number; anything else throws RangeError naming it. */
export function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const ms = typeof value === 'number' ? positiveNumber(value) : undefined;
  if (ms === undefined) throw new RangeError(`${name} must be a positive number of ms, got ${value}`);
  return ms;
}

/** A whole number, 0 or more, or a string of digits; undefined for anything else ('2.5', '-1', '', true). */
export function nonNegativeInteger(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  return typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : undefined;
}
