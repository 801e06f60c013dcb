/**
 * The access log: one record per request, made when its connection is done
 * with the response (answered, or abandoned by the client), and who sent it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccessRecord } from '../log.js';
import { requestIds } from './request-id.js';
import { verifiedCn } from './client-cert.js';

/**
 * The client's address for the log. Without `trustProxy` it is the socket's
 * peer. With it, it is the right-most entry of `X-Forwarded-For`: the address
 * our own proxy saw and appended (nginx's `$proxy_add_x_forwarded_for`);
 * entries left of it were written by the client or by proxies we don't know,
 * and anyone can forge them. No header is read when `trustProxy` is off.
 */
export function clientAddress(req: IncomingMessage, trustProxy = false): string {
  if (trustProxy) {
    // Node joins repeated X-Forwarded-For headers with ", ".
    const forwarded = req.headers['x-forwarded-for'];
    const last = typeof forwarded === 'string' ? forwarded.split(',').pop()!.trim() : '';
    // An address, not a novel: the log line stays short whatever was sent.
    if (last) return last.slice(0, 64);
  }
  return req.socket?.remoteAddress ?? '?';
}

/**
 * Calls `sink` once with the request's access record when the response is
 * done. Status 499 (as nginx logs it) when the client went away before the
 * answer was sent; `bytes` counts the body (none for HEAD).
 */
export function onAccess(req: IncomingMessage, res: ServerResponse, trustProxy: boolean, sink: (record: AccessRecord) => void): void {
  const start = process.hrtime.bigint();
  // Express strips its mount path from req.url (app.use('/salt', ...)); the
  // log shows the path the client asked for.
  const url = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  // Read now: a socket destroyed before the close (the shutdown deadline) no longer knows its peer.
  const client = clientAddress(req, trustProxy);
  const { id: requestId, traceId } = requestIds(req);
  const cn = verifiedCn(req);
  res.once('close', () => {
    const finished = res.writableFinished;
    const length = Number(res.getHeader('content-length') ?? 0);
    sink({
      method: req.method ?? '?',
      url,
      status: finished ? res.statusCode : 499,
      bytes: finished && req.method !== 'HEAD' ? length : 0,
      durationMs: Number(process.hrtime.bigint() - start) / 1e6,
      client,
      cn,
      requestId,
      traceId,
    });
  });
}
