/**
 * YAML in and out as Salt reads and writes it: YAML 1.1 with the implicit
 * types of PyYAML's resolver (yaml/resolver.py) and the constructors of
 * Salt's loader (salt/utils/yamlloader.py SaltYamlSafeLoader), on top of the
 * `yaml` package's parser.
 *
 * - `yes`/`no`/`on`/`off`/`true`/`false` (those spellings only: `y` and `n`
 *   stay strings, as in PyYAML) are booleans; `~`, `null`, nothing is null.
 * - Integers as PyYAML reads them (`0b`, `0x`, `1_000`, sexagesimal
 *   `1:30`), except that a leading zero is not octal (`010` is 10: Salt's
 *   loader strips it); past 2^53 they are BigInt, exact, as the JSON reader
 *   keeps them (lib/json.ts).
 * - Floats need a dot (`1e5` is a string in PyYAML, `1.0e+5` a float).
 * - Timestamps stay strings (Salt's loader reads them as scalars).
 * - Duplicate keys, several documents, and tags the safe loader lacks
 *   (`!!python/object`...) are errors; `<<` merges.
 * - Aliases: at most MAX_ALIAS_COUNT expansions' worth (the `yaml`
 *   package's count), so that a "billion laughs" body fails at once.
 *
 * stringifyYaml writes with the same types, so that a YAML 1.1 reader
 * (PyYAML) reads back what was written: a string that would read as
 * another type (`'yes'`, `'010'`, `'2024-01-01'`, `'='`) is quoted.
 */
import { Document, parseDocument, Scalar, type ScalarTag, type ToStringOptions } from 'yaml';
import { parseJson, toJson } from './json.js';

/** Alias expansions the `yaml` package allows a document (its own default): a handful of anchors reused is fine, a bomb is not. */
export const MAX_ALIAS_COUNT = 100;

const YAML_ORG = 'tag:yaml.org,2002:';

/** An exact integer: a number when it is safe, else a BigInt. */
function integer(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** PyYAML's construct_yaml_int after Salt's construct_scalar dropped a leading zero. */
function resolveInt(source: string): number | bigint {
  let text = source;
  if (text !== '0' && text.startsWith('0') && !text.startsWith('0b') && !text.startsWith('0x')) text = text.replace(/^0+/, '') || '0';
  text = text.replace(/_/g, '');
  let sign = 1n;
  if (text[0] === '-' || text[0] === '+') {
    if (text[0] === '-') sign = -1n;
    text = text.slice(1);
  }
  if (text === '0' || text === '') return 0;
  if (text.startsWith('0b')) return integer(sign * BigInt(text));
  if (text.startsWith('0x')) return integer(sign * BigInt(text));
  if (text.startsWith('0')) return integer(sign * BigInt(`0o${text.slice(1)}`));
  if (text.includes(':')) return integer(sign * sexagesimal(text, (digits) => BigInt(digits), 60n, 0n));
  return integer(sign * BigInt(text));
}

function sexagesimal<T extends number | bigint>(text: string, read: (digits: string) => T, base: T, zero: T): T {
  let value = zero;
  for (const part of text.split(':')) value = ((value as number) * (base as number) + (read(part) as number)) as T;
  return value;
}

/** PyYAML's construct_yaml_float. */
function resolveFloat(source: string): number {
  let text = source.replace(/_/g, '').toLowerCase();
  let sign = 1;
  if (text[0] === '-' || text[0] === '+') {
    if (text[0] === '-') sign = -1;
    text = text.slice(1);
  }
  if (text === '.inf') return sign * Number.POSITIVE_INFINITY;
  if (text === '.nan') return Number.NaN;
  if (text.includes(':')) return sign * sexagesimal(text, Number, 60, 0);
  return sign * Number(text);
}

/** The float text a YAML 1.1 reader reads back as this number (`1e+21` would be a string: it needs a dot). */
function floatText(n: number): string {
  if (Number.isNaN(n)) return '.nan';
  if (!Number.isFinite(n)) return n > 0 ? '.inf' : '-.inf';
  const text = String(n);
  if (text.includes('.')) return text;
  return text.includes('e') ? text.replace('e', '.0e') : `${text}.0`;
}

const scalar = (value: unknown) => new Scalar(value);

/** PyYAML's implicit resolvers, in its order; each a tag of the `yaml` package. */
const TAGS: ScalarTag[] = [
  {
    tag: `${YAML_ORG}bool`,
    default: true,
    identify: (value) => typeof value === 'boolean',
    test: /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
    resolve: (source) => scalar(/^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/.test(source)),
    stringify: ({ value }) => (value ? 'true' : 'false'),
  },
  {
    tag: `${YAML_ORG}float`,
    default: true,
    identify: (value) => typeof value === 'number' && !(Number.isInteger(value) && Math.abs(value) < 1e21),
    test: /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/,
    resolve: (source) => scalar(resolveFloat(source)),
    stringify: ({ value }) => floatText(value as number),
  },
  {
    tag: `${YAML_ORG}int`,
    default: true,
    identify: (value) => typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) < 1e21),
    test: /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/,
    resolve: (source) => scalar(resolveInt(source)),
    stringify: ({ value }) => (Object.is(value, -0) ? '0' : String(value)),
  },
  {
    tag: `${YAML_ORG}null`,
    default: true,
    identify: (value) => value === null || value === undefined,
    test: /^(?:~|null|Null|NULL)?$/,
    resolve: () => scalar(null),
    stringify: () => 'null',
  },
  // Read as strings (Salt's loader), but written quoted: another YAML 1.1 reader takes them for dates.
  {
    tag: `${YAML_ORG}timestamp`,
    default: true,
    test: /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/,
    resolve: (source) => scalar(source),
  },
  // PyYAML's `value` type (a lone `=`), which its safe loader can't build: written quoted, read as the string.
  { tag: `${YAML_ORG}value`, default: true, test: /^=$/, resolve: (source) => scalar(source) },
  // `<<` where a value is: PyYAML refuses it, the `yaml` package reads the string; written quoted (as a key it merges when
  // reading; writing leaves merge off, whose tag would take the string `<<` for a merge key).
  { tag: `${YAML_ORG}merge`, default: true, test: /^<<$/, resolve: (source) => scalar(source) },
];

const SCHEMA = { schema: 'failsafe', customTags: TAGS } as const;

export class YamlError extends Error {}

/** Nesting past the limit parseYaml was given: refused before the `yaml` package sees the text. */
export class YamlTooDeepError extends YamlError {}

/**
 * A body's or an argument's YAML read as Salt's safe_load reads it;
 * YamlError (its message quoting nothing of the input) when it can't be,
 * YamlTooDeepError when it may nest deeper than `maxDepth`.
 */
export function parseYaml(text: string, maxDepth: number): unknown {
  // The `yaml` package's parser takes seconds on 100,000 nested flow
  // sequences and runs out of memory on as many block ones (`- - - …`).
  if (depthBound(text, maxDepth) > maxDepth) throw new YamlTooDeepError(`YAML nested deeper than ${maxDepth} levels`);
  const doc = parseDocument(text, {
    ...SCHEMA,
    merge: true,
    version: '1.1',
    uniqueKeys: true,
    prettyErrors: false,
    keepSourceTokens: false,
  });
  const problem = doc.errors[0] ?? doc.warnings.find((warning) => warning.code === 'TAG_RESOLVE_FAILED');
  if (problem) throw new YamlError(yamlMessage(problem.code, problem.message));
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = err instanceof Error ? err.message : '';
    if (/alias/i.test(message)) throw new YamlError(`too many aliases (more than ${MAX_ALIAS_COUNT} expansions)`);
    throw err; // RangeError (nesting too deep) and the like: the caller says what it means
  }
}

/**
 * At least the depth to which `text` nests (more for some text that only
 * looks nested: ` - ` inside a long plain string, brackets in a plain
 * scalar), counted in one pass, stopping once past `limit`. Block nesting
 * needs either a deeper indentation than every open level, or one more
 * `- `, `? ` or `: ` on the same line; flow nesting needs one more open
 * bracket. Quoted strings and comments are passed over.
 */
export function depthBound(text: string, limit: number): number {
  const indents: number[] = []; // strictly increasing indentations of the open block levels
  let flow = 0;
  let maxFlow = 0;
  let deepest = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    let indent = 0;
    while (text.charCodeAt(i) === 0x20) {
      indent++;
      i++;
    }
    while (indents.length > 0 && indents[indents.length - 1] >= indent) indents.pop();
    let onLine = 0;
    let start = true; // at the start of a node: an indicator here opens a level
    while (i < n && text.charCodeAt(i) !== 0x0a) {
      const c = text[i];
      if (c === '"' || c === "'") {
        i = quotedEnd(text, i, c);
        start = false;
        continue;
      }
      if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
        while (i < n && text.charCodeAt(i) !== 0x0a) i++;
        break;
      }
      if (c === '[' || c === '{') maxFlow = Math.max(maxFlow, ++flow);
      else if ((c === ']' || c === '}') && flow > 0) flow--;
      else if ((c === '-' || c === '?' || c === ':') && (i + 1 === n || /\s/.test(text[i + 1]))) {
        if (start || c === ':') onLine++;
        start = true;
        i++;
        continue;
      } else if (c !== ' ' && c !== '\t') start = false;
      i++;
    }
    i++; // the newline
    indents.push(indent);
    deepest = Math.max(deepest, indents.length + onLine + maxFlow);
    if (deepest > limit) break;
  }
  return deepest;
}

/** Past the closing quote of the string opening at `from` (`'` doubles itself, `"` escapes with a backslash), or the text's end. */
function quotedEnd(text: string, from: number, quote: string): number {
  let i = from + 1;
  while (i < text.length) {
    const c = text[i];
    if (quote === '"' && c === '\\') i += 2;
    else if (c === quote) {
      if (quote === "'" && text[i + 1] === "'") i += 2;
      else return i + 1;
    } else i++;
  }
  return i;
}

/**
 * The `yaml` package's message for the client: the kind of problem and
 * where, never the excerpt of the input it may quote (the body holds a password).
 */
function yamlMessage(code: string, message: string): string {
  const where = /at line (\d+), column (\d+)/.exec(message);
  const kind = code === 'TAG_RESOLVE_FAILED' ? 'a tag Salt does not read' : code.toLowerCase().replace(/_/g, ' ');
  return where ? `${kind} at line ${where[1]}, column ${where[2]}` : kind;
}

const WRITE_OPTIONS: ToStringOptions = { lineWidth: 0, indentSeq: false, nullStr: 'null' };

/**
 * The YAML of `value` as Salt's safe_dump(default_flow_style=False) shows it:
 * block style, keys sorted, sequences flush with their key. The value is
 * first made what its JSON answer holds (lib/json.ts: bytes as text, Maps as
 * objects, big integers exact), so that both answers carry the same data.
 */
export function stringifyYaml(value: unknown): string {
  return stringifyPlain(parseJson(toJson(value)));
}

/** stringifyYaml of a value that is already plain JSON data. */
export function stringifyPlain(value: unknown): string {
  const doc = new Document(value, { ...SCHEMA, version: '1.1', sortMapEntries: true });
  return doc.toString(WRITE_OPTIONS);
}
