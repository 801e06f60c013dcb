/**
 * The request's id, to match one request across the proxy's log and ours:
 * the client's `X-Request-Id` when it is a plain token (at most 128
 * characters of `[A-Za-z0-9._-]`, so that it can't forge a log line or a
 * header), else a UUID of ours. It is sent back on every answer and carried
 * by every log line of the request. A valid W3C `traceparent`'s trace id is
 * logged with it (https://www.w3.org/TR/trace-context/#traceparent-header);
 * nothing else is done with it.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const REQUEST_ID_HEADER = 'X-Request-Id';
const GOOD_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** version-traceid-parentid-flags; version ff and all-zero ids are invalid. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export interface RequestIds {
  /** Ours or the client's X-Request-Id. */
  readonly id: string;
  /** The trace id of a valid `traceparent`. */
  readonly traceId?: string;
}

const ids = new WeakMap<IncomingMessage, RequestIds>();

/** The ids of `req`, made once (the access log and the handler ask for them). */
export function requestIds(req: IncomingMessage): RequestIds {
  let found = ids.get(req);
  if (!found) {
    found = { id: requestIdOf(req.headers['x-request-id']), traceId: traceIdOf(req.headers.traceparent) };
    ids.set(req, found);
  }
  return found;
}

/** The client's id when it is a plain token (the first one if the header is repeated), else a new UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  const given = Array.isArray(header) ? header[0] : header;
  return given !== undefined && GOOD_ID.test(given) ? given : randomUUID();
}

/** The trace id of a valid traceparent header, else undefined. */
export function traceIdOf(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return traceId;
}
