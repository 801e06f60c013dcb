/**
 * Telling a JSON or msgpack object from other values, and writing user data
 * into one: what every layer does with the maps it reads (lowstate items,
 * the master's replies and events, the master config's YAML).
 */

/**
 * A plain object: made by `{}` or Object.create(null), as JSON.parse,
 * msgpack and YAML make a mapping; not a list, a Date (YAML's timestamps), a
 * Buffer (msgpack's bin) or a Map.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** obj[key] = value, also for keys such as `__proto__` (minion ids and keywords are user data). */
export function defineKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  // `__proto__` is Object.prototype's only accessor: every other key assigns
  // an own property, several times faster than defineProperty (a result of
  // 20,000 minions is 20,000 keys).
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

/**
 * The strings of a list, in order; [] for anything but a list. The list
 * itself when that is all it holds: a fleet's 10,000 minion ids are not copied.
 */
export function stringsIn(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  for (let i = 0; i < value.length; i++) if (typeof value[i] !== 'string') return value.filter((v): v is string => typeof v === 'string');
  return value as string[];
}

/** The options that are set: `{maxInFlight: undefined}` leaves the config's value in place. */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** An error as the log tells it: its stack where it has one. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}
