/**
 * A form-encoded body (`application/x-www-form-urlencoded`) as one
 * lowstate, the way rest_cherrypy's urlencoded_processor and lowdata_fmt
 * read it (salt/netapi/rest_cherrypy/app.py):
 *
 * - pairs split as Python's parse_qsl splits them: on `&`, `+` is a space,
 *   a pair without a value is dropped;
 * - a key given several times becomes a list of its values;
 * - `arg` is always a list, and each of its values, like `kwarg`'s, is read
 *   as Salt's command line reads an argument (salt/utils/args.py
 *   yamlify_arg): `1` is a number, `[a, b]` a list, `{a: 1}` a mapping,
 *   `k=v` and `a: b` stay strings.
 *
 * Refused with a 400 that says why (where rest_cherrypy would pass the
 * oddity on to Salt): `arg[]=…` keys (jQuery and PHP nest that way, Salt
 * does not), a key that takes one value given several times, a value that
 * is not UTF-8 once decoded.
 */
import { BadRequestError } from '../errors.js';
import { parseYaml } from '../yaml.js';

/** Keys Salt reads as one string: given twice, the item could only fail later, or worse, authenticate as one of two users. */
const ONE_VALUE_KEYS = new Set(['client', 'fun', 'eauth', 'username', 'password', 'token', 'tgt_type', 'kwarg']);

/** yamlify_arg's values never nest deeper than this (Salt's C loader gives up somewhere past it too; the string is then kept). */
const ARG_DEPTH = 512;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The form's pairs, decoded, in order (parse_qsl with keep_blank_values=False). */
export function formPairs(text: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const field of text.split('&')) {
    const eq = field.indexOf('=');
    if (eq < 0 || eq === field.length - 1) continue; // no value: parse_qsl drops it
    pairs.push([unquote(field.slice(0, eq)), unquote(field.slice(eq + 1))]);
  }
  return pairs;
}

/** `+` as a space and `%XX` as bytes, which must be UTF-8; a `%` not followed by two hex digits stays as it is (as Python's unquote). */
function unquote(text: string): string {
  const plus = text.includes('+') ? text.replace(/\+/g, ' ') : text;
  if (!plus.includes('%')) return plus;
  const parts = plus.split(/((?:%[0-9a-fA-F]{2})+)/);
  const bytes = parts.map((part, i) => (i % 2 === 1 ? Buffer.from(part.replace(/%/g, ''), 'hex') : Buffer.from(part, 'utf8')));
  try {
    return utf8.decode(Buffer.concat(bytes));
  } catch {
    throw new BadRequestError('400: A form value is not valid UTF-8 once decoded');
  }
}

/** The form's one lowstate (urlencoded_processor, then lowdata_fmt). */
export function parseForm(text: string): Record<string, unknown> {
  const fields = new Map<string, string[]>();
  for (const [key, value] of formPairs(text)) {
    if (/\[[^\]]*\]$/.test(key)) {
      throw new BadRequestError(
        `400: Form keys such as '${key.replace(/\[.*/, '')}[]' are not read: send a list or a mapping as JSON or YAML`,
      );
    }
    const values = fields.get(key);
    if (values) values.push(value);
    else fields.set(key, [value]);
  }
  if (fields.size === 0) throw new BadRequestError('400: The form has no fields');
  const low: Record<string, unknown> = {};
  for (const [key, values] of fields) {
    if (values.length > 1 && ONE_VALUE_KEYS.has(key)) {
      throw new BadRequestError(`400: '${key}' given ${values.length} times in the form: it takes one value`);
    }
    const value: unknown = values.length === 1 ? values[0] : values;
    // A key named __proto__ stays an own property (as the JSON reader keeps it).
    Object.defineProperty(low, key, { value, writable: true, enumerable: true, configurable: true });
  }
  if (typeof low.kwarg === 'string') low.kwarg = yamlifyArg(low.kwarg);
  if ('arg' in low) low.arg = (Array.isArray(low.arg) ? low.arg : [low.arg]).map((arg) => yamlifyArg(arg as string));
  return low;
}

/**
 * One command-line argument as Salt reads it (salt/utils/args.py
 * yamlify_arg): YAML, except where YAML would lose or change what was typed.
 */
export function yamlifyArg(arg: string): unknown {
  const stripped = arg.trim();
  if (stripped === '' || stripped === '---' || stripped === '...') return arg;
  // Digits and underscores: YAML would drop the underscores and read a number.
  if (arg.includes('_') && /^[0-9_]+$/.test(stripped)) return arg;
  // A tab or line break: Salt's C loader would alter it, so Salt keeps it as typed.
  if (/[\t\r\n]/.test(arg)) return arg;
  let parsed: unknown;
  try {
    if (arg.includes('#')) {
      // `#` starts a comment: only a value that isn't a string is taken, else the text would lose its end.
      parsed = parseYaml(arg, ARG_DEPTH);
      return typeof parsed === 'string' || parsed === null ? arg : parsed;
    }
    parsed = arg === 'None' ? null : parseYaml(arg, ARG_DEPTH);
  } catch {
    return arg; // not YAML, or too deep: the text as it is
  }
  if (Array.isArray(parsed)) return arg.startsWith('[') ? parsed : arg; // a list only in brackets
  if (parsed !== null && typeof parsed === 'object') return arg.startsWith('{') ? parsed : arg; // a mapping only in braces
  // `|` and `!` read as '' and `!` as null; a lone comment as null.
  if (parsed === '' && (arg === '|' || arg === '!')) return arg;
  if (parsed === null && (stripped.startsWith('#') || arg === '!')) return arg;
  return parsed;
}
