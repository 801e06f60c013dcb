/**
 * What a wait for a job's returns (./returns.ts) knows of each minion, in
 * one map. Everything here costs O(1) per return and per minion added: a
 * fleet of 20,000 must not pay for its size on each of its 20,000 returns.
 *
 * A minion's state is its deadline while it is pending (`timeout` after it
 * became expected, or after it last said through find_job that it is still
 * running the job), RETURNED once it returned, RETURNED_UNEXPECTED if it
 * returned before it was expected. Deadlines are whole milliseconds: V8
 * keeps small integers in the map itself, where a fraction would be one
 * more heap object per minion. The returns themselves are the caller's.
 */
import { keepShape } from '../shapes.js';

/** An expected minion's state once it returned (deadlines, the pending minions', are positive). */
const RETURNED = -1;
/** A minion that returned before (or without) being expected. */
const RETURNED_UNEXPECTED = -2;

export class MinionStates {
  private readonly states = new Map<string, number>();
  /** Expected minions that have not returned. */
  pendingCount = 0;
  /** Minions expected (returned or not): get_iter_returns' `len(minions)`. */
  expectedCount = 0;

  /** @param timeoutMs how long a pending minion is waited for before find_job asks it. */
  constructor(private readonly timeoutMs: number) {}

  /** `id` is expected at `t`: pending unless it returned already; its deadline starts then (once). */
  expect(id: string, t: number): void {
    const state = this.states.get(id);
    if (state === RETURNED_UNEXPECTED) {
      this.states.set(id, RETURNED);
      this.expectedCount++;
    }
    if (state !== undefined) return;
    this.states.set(id, this.deadline(t));
    this.pendingCount++;
    this.expectedCount++;
  }

  /**
   * Each of `ids` expected at `t`. A loop of its own: a fleet's 10,000 ids
   * make it hot on its first run, and V8 then compiles (OSR) this small
   * function rather than the wait's whole constructor with all it inlines.
   */
  expectAll(ids: readonly string[], t: number): void {
    for (let i = 0; i < ids.length; i++) this.expect(ids[i], t);
  }

  /** `id` returned (expected or not, yet). */
  returned(id: string): void {
    const state = this.states.get(id);
    if (state === undefined) this.states.set(id, RETURNED_UNEXPECTED);
    else if (state > 0) {
      this.states.set(id, RETURNED);
      this.pendingCount--;
    }
  }

  /** `id` is no longer waited for (its find_job failed there). */
  forget(id: string): void {
    const state = this.states.get(id);
    if (state === undefined) return;
    this.states.delete(id);
    if (state !== RETURNED_UNEXPECTED) this.expectedCount--;
    if (state > 0) this.pendingCount--;
  }

  /** `id`, if pending, said at `t` that it still runs the job: its deadline moves to `timeout` after `t`. */
  stillRunning(id: string, t: number): void {
    if ((this.states.get(id) ?? 0) > 0) this.states.set(id, this.deadline(t));
  }

  /** The expected minions that have not returned: O(minions). */
  pending(): string[] {
    const ids: string[] = [];
    this.states.forEach((state, id) => {
      if (state > 0) ids.push(id);
    });
    return ids;
  }

  /** The last deadline of a pending minion, or `floor` if later: O(minions). */
  latestDeadline(floor: number): number {
    let latest = floor;
    for (const state of this.states.values()) if (state > latest) latest = state;
    return latest;
  }

  /** A minion's deadline, `timeout` after `t`, in whole ms. */
  private deadline(t: number): number {
    return Math.ceil(t + this.timeoutMs);
  }
}

// Each wait's states die with it: one kept, so that their shape outlives them (lib/shapes.ts).
keepShape(new MinionStates(0));
