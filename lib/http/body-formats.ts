/**
 * The body formats a POST may use, one row each, chosen by the request's
 * Content-Type (its parameters, `; charset=utf-8`, and case aside), as
 * rest_cherrypy's hypermedia_in maps them (salt/netapi/rest_cherrypy/app.py):
 *
 * - application/json: JSON (./body.ts), the path every other row leaves as it was;
 * - application/x-www-form-urlencoded: one lowstate (./form.ts);
 * - application/x-yaml, application/yaml, text/yaml: YAML as Salt's
 *   safe_load reads it (lib/yaml.ts), a list or one mapping;
 * - text/plain: JSON (services that send JSON under that label).
 *
 * Anything else is a 415 naming these (README: Formats). Every row gives
 * what the handler checks as it checks JSON: a list, or one mapping, no
 * deeper than MAX_JSON_DEPTH; the body's size was limited before.
 */
import { BadRequestError, UnsupportedMediaTypeError } from '../errors.js';
import { isPlainObject } from '../objects.js';
import { parseYaml, YamlError, YamlTooDeepError } from '../yaml.js';
import { MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, deeperThan, parseBody } from './body.js';
import { parseForm } from './form.js';

export interface BodyFormat {
  /** The media types read this way, lower case. */
  readonly types: readonly string[];
  /** The lowstates of a body that arrived as bytes: a list, or one item. */
  read(raw: Buffer): unknown;
  /** The lowstates of a body a parser in front of the handler (Express) already made into a value. */
  fromParsed(body: unknown): unknown;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text (400 when it isn't UTF-8; a leading BOM dropped). */
function text(raw: Buffer): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new BadRequestError('400: Request body is not valid UTF-8');
  }
}

/** A parsed value as the handler receives it: refused when it nests deeper than JSON may. */
function shallow(body: unknown): unknown {
  if (deeperThan(body, MAX_JSON_DEPTH)) throw new BadRequestError(TOO_DEEP_MESSAGE);
  return body;
}

const JSON_FORMAT: BodyFormat = {
  types: ['application/json'],
  read: parseBody,
  fromParsed: shallow,
};

const FORM_FORMAT: BodyFormat = {
  types: ['application/x-www-form-urlencoded'],
  read: (raw) => [shallow(parseForm(text(raw)))],
  // express.urlencoded() leaves strings, lists of strings, or (extended) nested objects: the first two are the form's pairs.
  fromParsed(body) {
    if (!isPlainObject(body)) throw new BadRequestError('400: The form has no fields');
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(body)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (typeof item !== 'string') {
          throw new BadRequestError(`400: Form field '${key}' is nested: send a list or a mapping as JSON or YAML`);
        }
        search.append(key, item);
      }
    }
    return [shallow(parseForm(search.toString()))];
  },
};

const YAML_FORMAT: BodyFormat = {
  types: ['application/x-yaml', 'application/yaml', 'text/yaml'],
  read(raw) {
    let body: unknown;
    try {
      body = parseYaml(text(raw), MAX_JSON_DEPTH);
    } catch (err) {
      if (err instanceof YamlTooDeepError || err instanceof RangeError) throw new BadRequestError(TOO_DEEP_MESSAGE);
      if (err instanceof YamlError) throw new BadRequestError(`400: Invalid YAML: ${err.message}`);
      throw err;
    }
    return oneMapping(shallow(body));
  },
  fromParsed: (body) => oneMapping(shallow(body)),
};

/** One mapping as the body: its `arg` made a list, as lowdata_fmt does. */
function oneMapping(body: unknown): unknown {
  if (isPlainObject(body) && 'arg' in body && !Array.isArray(body.arg)) return { ...body, arg: [body.arg] };
  return body;
}

const TEXT_FORMAT: BodyFormat = {
  types: ['text/plain'],
  read(raw) {
    try {
      return parseBody(raw);
    } catch (err) {
      if (err instanceof BadRequestError && err.message !== TOO_DEEP_MESSAGE) {
        throw new BadRequestError(`${err.message} (a text/plain body is read as JSON)`);
      }
      throw err;
    }
  },
  fromParsed: shallow,
};

/** The rows, in the order the 415 names them. */
export const BODY_FORMATS: readonly BodyFormat[] = [JSON_FORMAT, FORM_FORMAT, YAML_FORMAT, TEXT_FORMAT];

const BY_TYPE = new Map(BODY_FORMATS.flatMap((format) => format.types.map((type) => [type, format] as const)));

export const UNSUPPORTED_TYPE_MESSAGE = `415: Content-Type must be one of ${BODY_FORMATS.flatMap((f) => f.types).join(', ')}`;

/** The row of a request's Content-Type; 415 naming every row's types when there is none. */
export function bodyFormatFor(contentType: string | undefined): BodyFormat {
  if (contentType === 'application/json') return JSON_FORMAT; // what nearly every client sends
  const format = contentType === undefined ? undefined : BY_TYPE.get(contentType.split(';', 1)[0].trim().toLowerCase());
  if (!format) throw new UnsupportedMediaTypeError(UNSUPPORTED_TYPE_MESSAGE);
  return format;
}
