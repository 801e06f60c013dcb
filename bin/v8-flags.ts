/**
 * The command's V8 settings, made before the library's functions first run
 * (bin/salt-rest-wsgi.ts). Embedders keep their own process's settings.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * gc() for the handler, which collects right after writing a large answer
 * (hundreds of MB of returns), so that the memory goes back to the system
 * at once rather than when V8 next feels like collecting.
 */
export function exposeGc(): void {
  if (typeof (globalThis as { gc?: unknown }).gc === 'function') return;
  setFlagsFromString('--expose-gc');
  (globalThis as { gc?: unknown }).gc = runInNewContext('gc');
}

/**
 * Type feedback from a function's first call on. By default V8 collects
 * none for a function's first few calls, and the first job's events are
 * exactly those for the bus reader's functions: its optimized code then
 * lacks the paths of a job's `new` event (a list of every minion), and the
 * second job's `new` event throws it away, to be compiled again while that
 * fleet's returns come (npm run bench -- --only scale: the second fleet's
 * CPU). Set before the library's functions first run.
 */
export function feedbackFromFirstCall(): void {
  setFlagsFromString('--no-lazy-feedback-allocation');
}
