/**
 * The `X-Auth-Token` header: a Salt eauth token (as rest_tornado reads it,
 * salt/netapi/rest_tornado/saltnado.py) for every item of the request that
 * carries no credentials of its own (none of `token`, `eauth`, `username`,
 * `password`); an item's own credentials win. The token then is the item's
 * `token`, checked, counted by the failed-login throttle and kept out of
 * logs as any token is.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { CREDENTIAL_KEYS } from '../clients/fields.js';
import { isPlainObject } from '../objects.js';

/** The items, those without credentials given the header's token (copies: the caller's objects, Express's req.body, stay as they were). */
export function withHeaderToken(lowstates: unknown[], headers: IncomingHttpHeaders): unknown[] {
  const header = headers['x-auth-token'];
  if (header === undefined) return lowstates;
  // Several headers (Node joins them with ', ' or gives a list): no token matches that (401 `Invalid token`).
  const token = (Array.isArray(header) ? header.join(', ') : header).trim();
  return lowstates.map((low) => (isPlainObject(low) && !CREDENTIAL_KEYS.some((key) => key in low) ? { ...low, token } : low));
}
