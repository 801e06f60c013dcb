/**
 * Checks of the command's settings that warn rather than refuse: a
 * `rest_wsgi:` key not in the settings table (lib/http/settings.ts) (a typo of one we do, most likely), and a
 * non-loopback address served without TLS.
 */
import { isIP } from 'node:net';
import { SETTING_KEYS } from '../lib/http/settings.js';

/** One warning per key of `section` we don't read, naming the closest one we do. */
export function unknownKeyWarnings(section: Record<string, unknown>, file: string): string[] {
  return Object.keys(section)
    .filter((key) => !SETTING_KEYS.includes(key))
    .map((key) => `ignoring unknown option rest_wsgi: ${key} in ${file} (did you mean ${closest(key, SETTING_KEYS)}?)`);
}

/** The candidate nearest to `word` by edit distance (the first of equals). */
export function closest(word: string, candidates: readonly string[]): string {
  let best = candidates[0];
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/**
 * Levenshtein distance: insertions, deletions and substitutions, one row at
 * a time. Written here because Node has none and a dozen lines don't call
 * for a dependency; the words are a few characters long.
 */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}

/** Whether `host` only reaches this machine: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}
