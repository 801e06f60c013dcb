/** What the scale bench and its master process (fleet-process.ts) share: the fleet's shape and its returns. */

export interface FleetSpec {
  count: number;
  delayMs: number;
  spreadMs: number;
  /** Every Nth minion (N-1, 2N-1, ...) is silent; 0: none. */
  silentEvery: number;
  /** test.arg returns a string of this many bytes; 0: test.arg as usual. */
  returnBytes: number;
  publishReplyDelayMs: number;
}

export function fleetIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `fleet-${String(i).padStart(5, '0')}`);
}

/** The return of minion `id` for a fleet of `returnBytes` returns. */
export function bigReturn(id: string, returnBytes: number, filler: string): string {
  return `${id}:${filler.slice(0, returnBytes - id.length - 1)}`;
}
