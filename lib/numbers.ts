/**
 * Reading a number from what a person wrote: a lowstate field, a
 * `rest_wsgi:` setting, a command-line flag, a handler or channel option.
 * Each caller words its own refusal (400, exit 2, RangeError); the rules are
 * one: a positive number, and a whole number written as a number or in
 * digits.
 */

/** A positive finite number, or a string holding one; undefined for anything else. */
export function positiveNumber(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** An option given as a number: itself when positive and finite, else `fallback` (absent, 0, NaN, not a number). */
export function positiveOr(value: number | undefined, fallback: number): number {
  return (typeof value === 'number' ? positiveNumber(value) : undefined) ?? fallback;
}

/** Digits, blanks around them allowed: how a whole number is written in a string (no sign, point or exponent). */
const DIGITS = /^\s*\d+\s*$/;

/** A whole number of 0 or more, given as a number or in digits ("3", " 12 "); undefined for anything else. */
export function nonNegativeInteger(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && DIGITS.test(value) ? Number(value) : Number.NaN;
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** nonNegativeInteger(), 1 or more. */
export function positiveInteger(value: unknown): number | undefined {
  const n = nonNegativeInteger(value);
  return n !== undefined && n >= 1 ? n : undefined;
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
