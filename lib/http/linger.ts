/**
 * Lingering close, as nginx does it (its `lingering_close`): an answer sent
 * before the request's body was read (413) is followed by reading and
 * discarding the rest of the body, within a bound, before the connection
 * closes.
 *
 * Closing a socket whose peer is still sending makes the kernel answer with
 * a reset, and a client still writing its body (Node's fetch, say) then gets
 * EPIPE or ECONNRESET instead of the answer that is already on its way. So
 * the answer is written whole, but ended (which lets Node close the
 * connection) only once the body is in, the client hangs up, or the bound is
 * reached: LINGER_MAX_BYTES more bytes, LINGER_MAX_MS in all, or
 * LINGER_IDLE_MS without data. Nothing read is kept.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** At most this much of an unwanted body is read and dropped: 16 MiB. */
export const LINGER_MAX_BYTES = 16 * 1024 * 1024;
/** At most this long in all (nginx: lingering_time, 30 s; ours is shorter, a client on a LAN sends 16 MiB in it). */
export const LINGER_MAX_MS = 2000;
/** At most this long without a byte of it (nginx: lingering_timeout, 5 s). */
export const LINGER_IDLE_MS = 1000;

/** Send `text` as the whole answer (headers already set), then end it once the body is drained or the bound is reached. */
export function endAfterDrainingBody(req: IncomingMessage, res: ServerResponse, text: string): void {
  if (req.complete || req.destroyed) {
    res.end(text);
    return;
  }
  res.write(text);
  let bytes = 0;
  const end = () => {
    clearTimeout(total);
    clearTimeout(idle);
    req.off('data', onData);
    req.off('end', end);
    res.off('close', end);
    if (!res.writableEnded) res.end();
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > LINGER_MAX_BYTES) end();
    else idle.refresh();
  };
  const total = setTimeout(end, LINGER_MAX_MS);
  const idle = setTimeout(end, LINGER_IDLE_MS);
  req.on('data', onData);
  req.once('end', end);
  res.once('close', end);
  req.resume();
}
