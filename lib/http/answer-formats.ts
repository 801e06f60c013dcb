/**
 * The answer formats, one row each: the media type the request's Accept
 * names, and how an answer is written in it. negotiateAnswer() picks the
 * row as rest_cherrypy's hypermedia_handler does (cherrypy.lib.cptools.accept
 * over ct_out_map, salt/netapi/rest_cherrypy/app.py): the highest `q`, the
 * table's order on a tie, JSON when there is no Accept; none allowed is a
 * 406 naming the rows. Every answer of the request, refusals too, is
 * written in the chosen format.
 *
 * A new format is a new row: its type, whether a wildcard (`*\/*`,
 * `application/*`) may choose it, and its two writers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NotAcceptableError } from '../errors.js';
import { send, sendText, writeJsonAnswer } from './response.js';
import { stringifyYaml } from '../yaml.js';
import { YAML_TYPE, writeYamlAnswer } from './yaml-answer.js';
import { NDJSON_TYPE } from './ndjson.js';

export interface AnswerFormat {
  /** The media type, lower case: what Accept names, and the answer's Content-Type. */
  readonly type: string;
  /** Whether `*\/*` or `<type>/*` may choose it (else only its own name does). */
  readonly byWildcard: boolean;
  /** The answer of a request that ran: in pieces, with backpressure, a reader that takes nothing for sendTimeoutMs cut (resolves with its length in characters). */
  write(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>, sendTimeoutMs?: number): Promise<number>;
  /** A short answer (a refusal, GET) at once; `lingerOn`: end only once that request's body is drained (413). */
  send(res: ServerResponse, status: number, body: unknown, headers?: Readonly<Record<string, string>>, lingerOn?: IncomingMessage): void;
}

export const JSON_ANSWER: AnswerFormat = { type: 'application/json', byWildcard: true, write: writeJsonAnswer, send };

export const YAML_ANSWER: AnswerFormat = {
  type: YAML_TYPE,
  byWildcard: true,
  write: writeYamlAnswer,
  send: (res, status, body, headers, lingerOn) => sendText(res, status, stringifyYaml(body), YAML_TYPE, headers, lingerOn),
};

/**
 * A streamed answer, chosen only by its own name: the handler writes its
 * lines (lib/http/ndjson.ts) as the items run. A request refused before
 * anything ran gets its usual JSON answer, hence JSON's writers here.
 */
export const NDJSON_ANSWER: AnswerFormat = { type: NDJSON_TYPE, byWildcard: false, write: writeJsonAnswer, send };

/** The rows, in order of preference: the first is the answer when Accept is absent or allows all equally. */
export const ANSWER_FORMATS: readonly AnswerFormat[] = [JSON_ANSWER, YAML_ANSWER, NDJSON_ANSWER];

const TYPES = ANSWER_FORMATS.map((f) => f.type);
export const NOT_ACCEPTABLE_MESSAGE = `406: Accept must allow ${TYPES.slice(0, -1).join(', ')} or ${TYPES.at(-1)}`;

/** The 406 of a request whose Accept allows no row (answered in the first row's format). */
export function notAcceptable(): NotAcceptableError {
  return new NotAcceptableError(NOT_ACCEPTABLE_MESSAGE);
}

/**
 * The row an Accept header chooses, undefined when it allows none. Each
 * row's weight is that of the most specific range naming it (its type, then
 * `<type>/*`, then `*\/*`), 0 when none does.
 */
export function negotiateAnswer(
  accept: string | string[] | undefined,
  formats: readonly AnswerFormat[] = ANSWER_FORMATS,
): AnswerFormat | undefined {
  // What nearly every client sends (curl: `*/*`): no parsing.
  if (accept === undefined || accept === '' || accept === '*/*' || accept === formats[0].type) return formats[0];
  const ranges = parseAccept(Array.isArray(accept) ? accept.join(',') : accept);
  if (ranges.length === 0) return formats[0];
  let best: AnswerFormat | undefined;
  let bestQ = 0;
  for (const format of formats) {
    const q = weightOf(format, ranges);
    if (q > bestQ) {
      best = format;
      bestQ = q;
    }
  }
  return best;
}

interface Range {
  type: string;
  q: number;
}

function parseAccept(header: string): Range[] {
  const ranges: Range[] = [];
  for (const part of header.split(',')) {
    const [type, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    if (!type) continue;
    const weight = params.find((p) => /^q\s*=/.test(p));
    const q = weight === undefined ? 1 : Number(weight.slice(weight.indexOf('=') + 1).trim());
    ranges.push({ type, q: Number.isFinite(q) ? Math.min(Math.max(q, 0), 1) : 0 });
  }
  return ranges;
}

/** The weight of the most specific range that names `format` (exact, then `<type>/*`, then `*\/*`). */
function weightOf(format: AnswerFormat, ranges: readonly Range[]): number {
  const family = `${format.type.slice(0, format.type.indexOf('/'))}/*`;
  let specificity = 0;
  let q = 0;
  for (const range of ranges) {
    const rank = range.type === format.type ? 3 : !format.byWildcard ? 0 : range.type === family ? 2 : range.type === '*/*' ? 1 : 0;
    if (rank > specificity) {
      specificity = rank;
      q = range.q;
    } else if (rank === specificity && rank > 0) q = Math.max(q, range.q);
  }
  return q;
}
