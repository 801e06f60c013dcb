/**
 * How Salt turns a load into a Python call, for the double's minion, runner
 * and wheel functions: the minion's load_args_and_kwargs (salt/minion.py),
 * salt.utils.args.format_call (runner/wheel flat keywords), and Python's own
 * binding of positional/keyword arguments with its TypeError texts.
 */

/** A Python signature: `def name(params..., *args, **kwargs)`, the last `defaults.length` params having defaults. */
export interface PySignature {
  /** Python function name, used in TypeError texts (e.g. `lookup_jid`). */
  name: string;
  params?: string[];
  defaults?: unknown[];
  varargs?: boolean;
  varkw?: boolean;
}

/** Python's TypeError from a bad call. */
export class PyTypeError extends Error {
  override name = 'TypeError';
}
/** salt.exceptions.SaltInvocationError. */
export class SaltInvocationError extends Error {
  override name = 'SaltInvocationError';
}
/** salt.exceptions.CommandExecutionError. */
export class CommandExecutionError extends Error {
  override name = 'CommandExecutionError';
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

export interface BoundCall {
  /** Every named parameter, with defaults filled in. */
  values: Record<string, unknown>;
  /** Extra positional arguments (`*args`). */
  rest: unknown[];
  /** Extra keyword arguments (`**kwargs`). */
  extra: Record<string, unknown>;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Bind args/kwargs to a signature as Python does; throws PyTypeError with Python's message. */
export function bindCall(sig: PySignature, args: unknown[], kwargs: Record<string, unknown>): BoundCall {
  const params = sig.params ?? [];
  const defaults = sig.defaults ?? [];
  const required = params.length - defaults.length;
  const values: Record<string, unknown> = {};
  if (args.length > params.length && !sig.varargs) {
    const takes = defaults.length ? `from ${required} to ${params.length}` : String(params.length);
    throw new PyTypeError(
      `${sig.name}() takes ${takes} positional argument${params.length === 1 && !defaults.length ? '' : 's'} but ${args.length} ${args.length === 1 ? 'was' : 'were'} given`,
    );
  }
  params.forEach((p, i) => {
    if (i < args.length) values[p] = args[i];
  });
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kwargs)) {
    if (params.includes(k)) {
      if (k in values) throw new PyTypeError(`${sig.name}() got multiple values for argument '${k}'`);
      values[k] = v;
    } else if (sig.varkw) extra[k] = v;
    else throw new PyTypeError(`${sig.name}() got an unexpected keyword argument '${k}'`);
  }
  const missing = params.slice(0, required).filter((p) => !(p in values));
  if (missing.length) {
    const names = missing.map((m) => `'${m}'`);
    const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
    throw new PyTypeError(`${sig.name}() missing ${plural(missing.length, 'required positional argument')}: ${list}`);
  }
  params.forEach((p, i) => {
    if (!(p in values)) values[p] = defaults[i - required];
  });
  return { values, rest: args.slice(params.length), extra };
}

/**
 * A small stand-in for salt.utils.args.yamlify_arg on a `k=v` value: numbers,
 * booleans, null/None, JSON-looking lists and maps; anything else stays a string.
 */
export function yamlifyArg(text: string): unknown {
  if (/^[-+]?\d+$/.test(text)) {
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : text;
  }
  if (/^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text);
  if (text === 'true' || text === 'True') return true;
  if (text === 'false' || text === 'False') return false;
  if (text === 'null' || text === 'None' || text === '~') return null;
  if (/^[[{]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

const KWARG_STRING = /^([A-Za-z_][\w.-]*)=(?!=)([\s\S]*)$/;

/**
 * salt.minion.load_args_and_kwargs: publish `arg` → positional args and
 * keywords (`k=v` strings and a `{..., __kwarg__: true}` dict). Keywords the
 * function can't take raise SaltInvocationError; functions taking **kwargs
 * also get the publish load as `__pub_<key>` keywords.
 */
export function loadArgsAndKwargs(
  sig: PySignature,
  arg: unknown,
  pub: Record<string, unknown>,
): { args: unknown[]; kwargs: Record<string, unknown> } {
  const params = sig.params ?? [];
  const args: unknown[] = [];
  const kwargs: Record<string, unknown> = {};
  const invalid: string[] = [];
  const accepts = (k: string) => sig.varkw || params.includes(k);
  for (const a of Array.isArray(arg) ? arg : []) {
    if (typeof a === 'string') {
      const m = KWARG_STRING.exec(a);
      if (m) {
        if (accepts(m[1])) kwargs[m[1]] = yamlifyArg(m[2]);
        else invalid.push(a);
        continue;
      }
      args.push(a);
    } else if (isPlainObject(a) && a.__kwarg__ === true) {
      for (const [k, v] of Object.entries(a)) {
        if (k === '__kwarg__') continue;
        if (accepts(k)) kwargs[k] = v;
        else invalid.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      }
    } else args.push(a);
  }
  if (invalid.length) throw new SaltInvocationError(`The following keyword arguments are not valid: ${invalid.join(', ')}`);
  if (sig.varkw) for (const [k, v] of Object.entries(pub)) kwargs[`__pub_${k}`] = v;
  return { args, kwargs };
}

/** salt/client/mixins.py CLIENT_INTERNAL_KEYWORDS: never passed on as extra keywords. */
export const CLIENT_INTERNAL_KEYWORDS = new Set([
  'client',
  'cmd',
  'eauth',
  'fun',
  'kwarg',
  'match',
  'token',
  '__jid__',
  '__tag__',
  '__user__',
  'username',
  'password',
  'full_return',
  'print_event',
]);

/**
 * How a runner or wheel function gets its arguments from a low dict
 * (salt/client/mixins.py: low): `arg` and `kwarg` both present → as they
 * are; otherwise salt.utils.args.format_call maps the flat dict onto the
 * signature (keyword defaults in Python's reversed order, unknown keys
 * dropped unless **kwargs, a missing required argument → SaltInvocationError).
 */
export function formatCall(sig: PySignature, low: Record<string, unknown>): { args: unknown[]; kwargs: Record<string, unknown> } {
  if ('arg' in low && 'kwarg' in low) {
    return {
      args: Array.isArray(low.arg) ? low.arg : [],
      kwargs: isPlainObject(low.kwarg) ? low.kwarg : {},
    };
  }
  const params = sig.params ?? [];
  const defaults = sig.defaults ?? [];
  const data = { ...low };
  // arg_lookup: dict(zip(args[::-1], defaults[::-1]))
  const kwargs: Record<string, unknown> = {};
  for (let i = 1; i <= defaults.length; i++) kwargs[params[params.length - i]] = defaults[defaults.length - i];
  for (const key of Object.keys(kwargs)) {
    if (key in data) {
      kwargs[key] = data[key];
      delete data[key];
    }
  }
  const args: unknown[] = [];
  const missing: string[] = [];
  for (const p of params.slice(0, params.length - defaults.length)) {
    if (p in data) {
      args.push(data[p]);
      delete data[p];
    } else missing.push(p);
  }
  if (missing.length) {
    const count = params.length - defaults.length;
    throw new SaltInvocationError(`${sig.name} takes at least ${count} argument${count > 1 ? 's' : ''} (${args.length} given)`);
  }
  if (sig.varkw) {
    for (const [k, v] of Object.entries(data)) if (!CLIENT_INTERNAL_KEYWORDS.has(k)) kwargs[k] = v;
  }
  return { args, kwargs };
}

/** A short Python-looking traceback for an exception raised inside a function of `module`. */
export function fakeTraceback(where: string, err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const kind = e.name === 'Error' ? 'Exception' : e.name;
  const qualified = ['SaltInvocationError', 'CommandExecutionError'].includes(kind) ? `salt.exceptions.${kind}` : kind;
  return `Traceback (most recent call last):\n  File "${where}", in call\n${qualified}: ${e.message}\n`;
}
