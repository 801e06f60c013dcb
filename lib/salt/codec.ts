/**
 * Salt's payload codec (salt/payload.py) on msgpackr.
 *
 * Python's msgpack, as Salt configures it, knows only the plain msgpack types
 * plus two extensions of Salt's own; msgpackr knows many more (records,
 * structured clone, its own bigint and undefined encodings). This module pins
 * msgpackr down to what Salt can read, and decodes what Salt sends.
 */
import { Packr, Unpackr, addExtension } from 'msgpackr';

/** Salt's ext 78: a datetime packed as `%Y%m%dT%H:%M:%S.%f`. */
export const DATETIME_EXT = 78;
/** Salt's ext 79: an immutable constant, packed as `[name, value]`. */
export const CONSTANT_EXT = 79;

const unpackr = new Unpackr({
  mapsAsObjects: true,
  // bin values come out as copies, not views of the bytes decoded: those
  // may be a read buffer used again (the event bus decodes in place), and a
  // small view would keep a whole frame alive.
  copyBuffers: true,
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  // Minion returns carry integers of any size (file sizes, inode numbers,
  // counters): past 2^53 they become BigInt rather than a rounded number.
  int64AsType: 'auto',
} as unknown as ConstructorParameters<typeof Unpackr>[0]); // 'auto' is missing from msgpackr's types

const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  variableMapSize: true, // fixmap/map16 as Python writes, not msgpackr's map16 for every object
  encodeUndefinedAsNil: true, // msgpackr's own undefined ext is unreadable to Salt
  // Salt's packer turns integers too large for msgpack into strings.
  largeBigIntToString: true,
  useFloat32: 0,
});

/** `20261122T18:00:58.327795` → `2026-11-22T18:00:58.327795`, the form of Salt's `_stamp`. */
function datetimeToIso(text: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(.*)$/.exec(text);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}` : text;
}

addExtension({
  type: DATETIME_EXT,
  unpack: (bytes: Uint8Array) => datetimeToIso(Buffer.from(bytes).toString('utf8')),
});
addExtension({
  type: CONSTANT_EXT,
  unpack: (bytes: Uint8Array) => {
    const pair = unpackr.unpack(bytes) as unknown;
    return Array.isArray(pair) && pair.length === 2 ? pair[1] : pair;
  },
});

/** Pack a value the way Salt's `payload.dumps` does. */
export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

/**
 * Unpack one complete msgpack value (as `payload.loads`), the bytes
 * `[start, end)` of `bytes`. A range rather than a view: msgpackr keeps its
 * DataView on the buffer it is given, one per view, and the event bus
 * decodes every event from the same buffer.
 */
export function decode(bytes: Uint8Array, start = 0, end = bytes.length): unknown {
  return unpackr.unpack(bytes, { start, end });
}
