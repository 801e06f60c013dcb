/**
 * Argument shaping as Salt's salt/utils/args.py does it on the API side:
 * `condition_input` for what LocalClient publishes, `parse_input` (with
 * `yamlify_arg`) for the CLI-style `k=v` strings RunnerClient accepts.
 */
import { parse as parseYaml } from 'yaml';
import { defineKey, isPlainObject } from '../objects.js';

/** salt.utils.jid.is_jid: 20 characters that int() accepts (or 20 + `_suffix`). */
export function isJid(text: string): boolean {
  if (text.length !== 20 && (text.length <= 21 || text[20] !== '_')) return false;
  // Python's int() takes an optional sign and digits (surrounding blanks and
  // underscores too, which a str(int) never has).
  return /^[+-]?\d+$/.test(text.slice(0, 20));
}

/** The decimal text of an integer argument, or undefined for anything else. */
function integerText(value: unknown): string | undefined {
  if (typeof value === 'bigint') return value.toString();
  // A JSON number past 2^53 has lost digits already; BigInt() prints what is left.
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value).toString();
  return undefined;
}

/**
 * salt.utils.args.condition_input: integers shaped like a jid become strings
 * (so the minion keeps every digit), and keyword arguments are appended as
 * one dict marked `__kwarg__`.
 */
export function conditionInput(args: readonly unknown[], kwargs?: Record<string, unknown> | null): unknown[] {
  const ret = args.map((arg) => {
    const text = integerText(arg);
    return text !== undefined && isJid(text) ? text : arg;
  });
  if (kwargs && Object.keys(kwargs).length > 0) ret.push({ ...kwargs, __kwarg__: true });
  return ret;
}

/**
 * salt.utils.args.KWARG_REGEX, `^([^\d\W][\w.-]*)=(?!=)(.*)$`: a name, `=`,
 * not `==`. Python's \w is Unicode-aware; JS's is ASCII-only even with /u,
 * so the classes are spelled out.
 */
const KWARG_REGEX = /^([\p{L}\p{Nl}_][\p{L}\p{N}\p{M}_.-]*)=(?!=)(.*)$/u;

/** salt.utils.args.parse_kwarg: `[name, value]` of `name=value`, or undefined. */
export function parseKwarg(text: string): [string, string] | undefined {
  const m = KWARG_REGEX.exec(text);
  return m ? [m[1], m[2]] : undefined;
}

/**
 * salt.utils.args.parse_input(args, condition=False): `k=v` strings and
 * dicts marked `__kwarg__` become keywords (values through yamlify_arg),
 * other strings are yamlified, everything else is positional as is.
 */
export function parseInput(args: readonly unknown[]): { args: unknown[]; kwargs: Record<string, unknown> } {
  const outArgs: unknown[] = [];
  const kwargs: Record<string, unknown> = {};
  for (const arg of args) {
    if (typeof arg === 'string') {
      const kw = parseKwarg(arg);
      if (kw) defineKey(kwargs, kw[0], yamlifyArg(kw[1]));
      else outArgs.push(yamlifyArg(arg));
    } else if (isPlainObject(arg) && arg.__kwarg__ === true) {
      for (const [key, value] of Object.entries(arg)) if (key !== '__kwarg__') defineKey(kwargs, key, value);
    } else {
      outArgs.push(arg);
    }
  }
  return { args: outArgs, kwargs };
}

/**
 * salt.utils.args.yamlify_arg: load a CLI string as YAML when that gives a
 * scalar, a `[list]` or a `{dict}`; keep the string otherwise.
 * Salt loads with PyYAML (YAML 1.1); the `yaml` package's 1.1 schema is the
 * nearest match (it also reads `1e3` as a number, which PyYAML does not).
 */
export function yamlifyArg(arg: unknown): unknown {
  if (typeof arg !== 'string') return arg;
  const stripped = arg.trim();
  if (stripped === '' || stripped === '---' || stripped === '...') return arg;
  if (arg.includes('_') && /^[\d_]+$/.test(stripped)) return arg;
  if (/[\t\r\n]/.test(arg)) return arg;

  let parsed: unknown;
  try {
    if (arg.includes('#')) {
      // '#' starts a comment: only take the YAML value if it is not a string.
      parsed = loadYaml(arg);
      if (typeof parsed === 'string' || parsed === null) return arg;
      return supported(parsed) ? normalizeYaml(parsed) : arg;
    }
    parsed = arg === 'None' ? null : loadYaml(arg);
  } catch {
    return arg;
  }
  if (Array.isArray(parsed)) return arg.startsWith('[') ? normalizeYaml(parsed) : arg;
  if (isPlainObject(parsed)) return arg.startsWith('{') ? normalizeYaml(parsed) : arg;
  if (parsed === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof parsed)) {
    if (parsed === '' && (arg === '|' || arg === '!')) return arg;
    if (parsed === null && (stripped.startsWith('#') || arg === '!')) return arg;
    return normalizeYaml(parsed);
  }
  return arg; // timestamps and other types yamlify_arg does not support
}

function loadYaml(text: string): unknown {
  return parseYaml(text, { version: '1.1', intAsBigInt: true, uniqueKeys: false, prettyErrors: false });
}

/** Integers within 2^53 as numbers (bigger ones stay BigInt, exact); dates as text. */
function normalizeYaml(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Array.isArray(value)) return value.map(normalizeYaml);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) defineKey(out, key, normalizeYaml(item));
    return out;
  }
  return value;
}

function supported(value: unknown): boolean {
  return value === null || Array.isArray(value) || isPlainObject(value) || ['string', 'number', 'bigint', 'boolean'].includes(typeof value);
}
