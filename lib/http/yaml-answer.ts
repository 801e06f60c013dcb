/**
 * The YAML answer (`Accept: application/x-yaml`): the data of the JSON
 * answer as Salt's safe_dump(default_flow_style=False) shows it (rest_cherrypy's
 * ct_out_map, salt/netapi/rest_cherrypy/app.py; lib/yaml.ts writes it).
 *
 * Made in pieces as the JSON answer is (./response.ts): the results of
 * `{"return": [...]}` one at a time, and a result that is a mapping (a
 * local call's minions) one key at a time, so that a 1 GiB answer is never
 * one string; the pieces go out with the same backpressure.
 */
import type { ServerResponse } from 'node:http';
import { keyText, memberJson, parseJson } from '../json.js';
import { stringifyPlain, stringifyYaml } from '../yaml.js';
import { writePieces } from './response.js';

export const YAML_TYPE = 'application/x-yaml';

/** Each line of `text` indented by two spaces, the first one's two replaced by `first` (`- ` opens a sequence item). */
function indented(text: string, first: string): string {
  const lines = text.replace(/\n$/, '').split('\n');
  return `${lines.map((line, i) => (i === 0 ? first + line : line === '' ? line : `  ${line}`)).join('\n')}\n`;
}

/** A member as the JSON answer holds it (undefined where JSON leaves it out). */
function plain(value: unknown): unknown {
  const json = memberJson(value);
  return json === undefined ? undefined : parseJson(json);
}

/** The entries of a result that is a mapping, keys as the JSON answer writes them, sorted (safe_dump sorts). */
function entriesOf(value: unknown): Array<[string, unknown]> | undefined {
  if (value instanceof Map) return [...value.entries()].map(([k, v]): [string, unknown] => [keyText(k), v]).sort(byKey);
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return undefined;
  const proto = Object.getPrototypeOf(value);
  if ((proto !== Object.prototype && proto !== null) || typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined;
  return Object.entries(value).sort(byKey);
}

function byKey(a: [string, unknown], b: [string, unknown]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

/** The pieces of one result, as an item of the `return` sequence. */
function* resultPieces(result: unknown): Generator<string> {
  const entries = entriesOf(result);
  let first = true;
  for (const [key, value] of entries ?? []) {
    const member = plain(value);
    if (member === undefined) continue;
    yield indented(stringifyPlain({ [key]: member }), first ? '- ' : '  ');
    first = false;
  }
  // A list, a scalar, an empty mapping: whole.
  if (first) yield stringifyPlain([plain(result) ?? null]);
}

/** The pieces of the YAML text of `body`. */
export function* yamlPieces(body: unknown): Generator<string> {
  const entries = entriesOf(body);
  const results = entries?.length === 1 && entries[0][0] === 'return' ? entries[0][1] : undefined;
  if (!Array.isArray(results) || results.length === 0) {
    yield stringifyYaml(body);
    return;
  }
  yield 'return:\n';
  for (const result of results) yield* resultPieces(result);
}

/** The YAML answer of `body`, as writeJsonAnswer writes JSON. */
export function writeYamlAnswer(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  sendTimeoutMs?: number,
): Promise<number> {
  return writePieces(res, status, yamlPieces(body), YAML_TYPE, headers, sendTimeoutMs);
}
