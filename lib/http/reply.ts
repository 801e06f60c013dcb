/**
 * Writing a short answer (a refusal, GET; results go through response.ts):
 * compact JSON with its type and byte length, headers set
 * one by one; an answer sent before the body was read (413) ends only once
 * the body is drained (lib/http/linger.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { toJson } from '../json.js';
import { endAfterDrainingBody } from './linger.js';

export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
  lingerOn?: IncomingMessage,
): void {
  if (res.headersSent || res.destroyed) return;
  const text = toJson(body);
  // setHeader rather than writeHead(status, headers): wrappers (an access
  // log, middleware) can read them back with getHeader.
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(status);
  if (lingerOn) endAfterDrainingBody(lingerOn, res, text);
  else res.end(text); // Node leaves the body out for HEAD
}
