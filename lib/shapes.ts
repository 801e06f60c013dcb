/**
 * Keeping the hidden class of a fleet's per-job objects alive while no job
 * runs.
 *
 * V8 gives a class's instances a hidden class (a "map") made by adding the
 * constructor's fields one at a time to the class's initial map, and holds
 * those later maps only weakly. When the last instance dies, as every
 * event and every wait does once a fleet's answer is written, a full GC
 * frees the map: an idle server's memory reducer does so within seconds.
 * Every function optimized for that map is then thrown away (`node
 * --trace-deopt`: "weak objects"), and the next fleet pays for optimizing
 * them again (`npm run bench -- --only real-scale` shows it on a real
 * master's second fleet). One small instance of each such class, kept for
 * the life of the process, keeps its map.
 */
const kept: object[] = [];

/** Keep `instance` (a small one, made for this) for the life of the process; returns it. */
export function keepShape<T extends object>(instance: T): T {
  kept.push(instance);
  return instance;
}
