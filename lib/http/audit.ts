/**
 * The audit trail: one record per lowstate item, once it has ended (ran,
 * failed, or was refused), saying who ran what where (Salt's users asked for
 * it: saltstack/salt#33401). Never a password or a token: the username, or
 * `(token)`. Arguments only with `rest_wsgi: audit_args: true`, and then
 * with the values under keys that look like secrets masked, as are strings
 * that hold the item's own password or token.
 */
import { HttpError, ClientGoneError } from '../errors.js';
import { toJson } from '../json.js';
import { jsonLine, logfmtValue } from '../log.js';
import { isPlainObject } from '../objects.js';
import { isClientName } from '../clients/table.js';
import type { ItemReport } from '../clients/context.js';

export interface AuditRecord {
  /** When the item ended, ISO 8601. */
  time: string;
  requestId: string;
  /** The client's address, as the access log has it (`trust_proxy` applies). */
  address: string;
  /** The subject CN of the client's verified certificate (mTLS). */
  cn?: string;
  eauth?: string;
  /** The eauth username, or `(token)`. */
  username?: string;
  /** The netapi client (`local`, `runner`...), `?` when the item names none known. */
  client: string;
  fun?: string;
  tgt?: string;
  tgtType?: string;
  jid?: string;
  /** 200, or the status of the error the item ended with (499: the client went away). */
  status: number;
  durationMs: number;
  /** Jobs on minions: how many were targeted, returned, and are missing (`false` or "did not return"). */
  targeted?: number;
  returned?: number;
  missing?: number;
  /** With `audit_args`: the item's arguments, as JSON, secrets masked. */
  args?: string;
}

/** Fields that are never arguments: the credentials, and what the record says on its own. */
const NOT_ARGS = new Set(['client', 'fun', 'tgt', 'tgt_type', 'expr_form', 'eauth', 'username', 'password', 'token']);
const SECRET_KEY = /pass(wor)?d|passwd|secret|token|key/i;
/** `name=value` in an arg list is a keyword argument to Salt (salt.utils.args.parse_input). */
const KEYWORD_ARG = /^([^=\s]+)=/;
export const MASK = '***';
const MAX_TEXT = 256;
const MAX_ARGS = 4096;

/** A field for the record: a short text, never a novel. */
function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const s = typeof value === 'string' ? value : Array.isArray(value) ? value.map(String).join(',') : String(value);
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}...(${s.length} chars)` : s;
}

/** The record's fields that come from the item itself. */
function itemFields(low: unknown): Pick<AuditRecord, 'client' | 'eauth' | 'username' | 'fun' | 'tgt' | 'tgtType'> {
  if (!isPlainObject(low)) return { client: '?' };
  const viaToken = low.token !== undefined && low.token !== null;
  return {
    client: isClientName(low.client) ? low.client : '?',
    eauth: viaToken ? undefined : text(low.eauth),
    username: viaToken ? '(token)' : text(low.username),
    fun: text(low.fun),
    tgt: text(low.tgt),
    tgtType: text(low.tgt_type ?? low.expr_form),
  };
}

/** `value` with secrets masked: strings holding one of `secrets`, `key=value` strings with a secret-looking key, values under secret-looking keys. */
function masked(value: unknown, secrets: string[], depth: number): unknown {
  if (typeof value === 'string') {
    for (const s of secrets) if (value.includes(s)) return MASK;
    const kw = KEYWORD_ARG.exec(value);
    return kw && SECRET_KEY.test(kw[1]) ? `${kw[1]}=${MASK}` : value;
  }
  if (depth > 16) return '...';
  if (Array.isArray(value)) return value.map((v) => masked(v, secrets, depth + 1));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = Object.create(null); // a `__proto__` key is an argument like any other
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? MASK : masked(v, secrets, depth + 1);
    return out;
  }
  return value;
}

/** The item's arguments with secrets masked: values under secret-looking keys, `key=value` strings, and its own password or token wherever they appear. */
export function maskedArgs(low: unknown): string | undefined {
  if (!isPlainObject(low)) return undefined;
  const secrets: string[] = [];
  for (const s of [low.password, low.token]) if (typeof s === 'string' && s !== '') secrets.push(s);
  let args: Record<string, unknown> | undefined;
  for (const k in low) {
    if (NOT_ARGS.has(k)) continue;
    args ??= Object.create(null) as Record<string, unknown>;
    args[k] = SECRET_KEY.test(k) ? MASK : masked(low[k], secrets, 0);
  }
  // Most items have none beyond what the record says on its own (test.ping).
  if (args === undefined) return '{}';
  const json = toJson(args);
  return json.length > MAX_ARGS ? `${json.slice(0, MAX_ARGS)}...(${json.length} chars)` : json;
}

/** The HTTP status an item ended with. */
export function itemStatus(err: unknown): number {
  if (err === undefined) return 200;
  if (err instanceof HttpError) return err.status;
  if (err instanceof ClientGoneError || (err as Error)?.name === 'AbortError') return 499;
  return 500;
}

/** Where the record's request came from. */
export interface AuditScope {
  requestId: string;
  address: string;
  cn?: string;
  auditArgs: boolean;
}

let isoSecond = Number.NaN;
let isoPrefix = '';

/**
 * `ms` as ISO 8601, `2026-12-04T20:55:57.898Z`: a Date and its text once a
 * second, the milliseconds written on (a Date and its text per item were a
 * fifth of a refused item's record).
 */
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, -4); // up to the `.`
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

export function auditRecord(scope: AuditScope, low: unknown, report: ItemReport, status: number, durationMs: number): AuditRecord {
  // Field by field rather than `...itemFields(low)`: a refused item's record
  // is most of what auditing costs it, and the copy was a third of the record
  // (npm run bench -- --only ops-cost --profile: 5.0 then 3.3 µs per item).
  const item = itemFields(low);
  return {
    time: isoTime(Date.now()),
    requestId: scope.requestId,
    address: scope.address,
    cn: scope.cn,
    eauth: item.eauth,
    username: item.username,
    client: item.client,
    fun: item.fun,
    tgt: item.tgt,
    tgtType: item.tgtType,
    jid: report.jid,
    status,
    durationMs,
    targeted: report.targeted,
    returned: report.returned,
    missing: report.missing,
    args: scope.auditArgs ? maskedArgs(low) : undefined,
  };
}

/** The record's fields in order, by their names in the logs; undefined ones left out. */
function fields(record: AuditRecord): [string, string | number][] {
  const all: [string, string | number | undefined][] = [
    ['time', record.time],
    ['request_id', record.requestId],
    ['address', record.address],
    ['cn', record.cn],
    ['eauth', record.eauth],
    ['username', record.username],
    ['client', record.client],
    ['fun', record.fun],
    ['tgt', record.tgt],
    ['tgt_type', record.tgtType],
    ['jid', record.jid],
    ['status', record.status],
    ['duration_ms', Math.round(record.durationMs * 10) / 10],
    ['targeted', record.targeted],
    ['returned', record.returned],
    ['missing', record.missing],
    ['args', record.args],
  ];
  return all.filter((f): f is [string, string | number] => f[1] !== undefined);
}

/** The record's fields by their names in the logs, in order, those that are set. */
export function auditFields(record: AuditRecord): Record<string, string | number> {
  return Object.fromEntries(fields(record));
}

/**
 * `audit time=... request_id=... client=local fun=test.ping ... status=200`,
 * one line (logfmtValue escapes what could break it). The fields of
 * fields() in its order, written out by name as formatAccess is: the
 * list and its filter were most of what a line cost (npm run bench --
 * --only ops-cost; test/http/audit.test.ts holds the two to one order).
 */
export function formatAudit(r: AuditRecord): string {
  let line = `audit time=${r.time} request_id=${logfmtValue(r.requestId)} address=${logfmtValue(r.address)}`;
  if (r.cn !== undefined) line += ` cn=${logfmtValue(r.cn)}`;
  if (r.eauth !== undefined) line += ` eauth=${logfmtValue(r.eauth)}`;
  if (r.username !== undefined) line += ` username=${logfmtValue(r.username)}`;
  line += ` client=${r.client}`;
  if (r.fun !== undefined) line += ` fun=${logfmtValue(r.fun)}`;
  if (r.tgt !== undefined) line += ` tgt=${logfmtValue(r.tgt)}`;
  if (r.tgtType !== undefined) line += ` tgt_type=${logfmtValue(r.tgtType)}`;
  if (r.jid !== undefined) line += ` jid=${logfmtValue(r.jid)}`;
  line += ` status=${r.status} duration_ms=${Math.round(r.durationMs * 10) / 10}`;
  if (r.targeted !== undefined) line += ` targeted=${r.targeted}`;
  if (r.returned !== undefined) line += ` returned=${r.returned}`;
  if (r.missing !== undefined) line += ` missing=${r.missing}`;
  if (r.args !== undefined) line += ` args=${logfmtValue(r.args)}`;
  return line;
}

/** The record as one JSON object a line (`--log-format json`). */
export function auditJson(record: AuditRecord): string {
  return jsonLine({ msg: 'audit', ...auditFields(record) });
}
