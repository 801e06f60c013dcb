/**
 * node:http's own timeouts for a server (headers, whole request, idle
 * keep-alive), set so that slow clients can't hold it. The handler's body
 * timeouts (lib/http/body.ts) answer first; these close what never gets that far.
 */
import type { Server } from 'node:http';
import { positiveMs } from '../numbers.js';

/** Timeouts of node:http servers, applied by applyServerTimeouts(). */
export interface ServerTimeouts {
  /** The request line and headers must arrive within this, ms (a slowloris client sends them a byte at a time). Default 10 s. */
  headersTimeoutMs?: number;
  /**
   * The whole request, headers and body, must arrive within this, ms. Default
   * 45 s: past the handler's body timeouts, which answer first (JSON 408).
   * It ends when the request is read: waiting for the master is not limited by it.
   */
  requestTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this, ms. Default 5 s. */
  keepAliveTimeoutMs?: number;
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_SERVER_REQUEST_TIMEOUT_MS = 45_000;
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5_000;

/**
 * Set a node:http server's timeouts so that slow clients can't hold it:
 * headers, whole request, idle keep-alive. Call before listen(). Node's
 * defaults (60 s for headers, 300 s for a request) are checked only every
 * 30 s; this checks every second (or sooner for short timeouts).
 */
export function applyServerTimeouts(server: Server, timeouts: ServerTimeouts = {}): Server {
  const headersMs = positiveMs(timeouts.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS, 'headersTimeoutMs');
  const requestMs = positiveMs(timeouts.requestTimeoutMs, DEFAULT_SERVER_REQUEST_TIMEOUT_MS, 'requestTimeoutMs');
  server.headersTimeout = headersMs;
  server.requestTimeout = Math.max(requestMs, headersMs); // Node wants headers ≤ request
  server.keepAliveTimeout = positiveMs(timeouts.keepAliveTimeoutMs, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, 'keepAliveTimeoutMs');
  // Read when the server starts listening (Node 20; not in its typings).
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(
    10,
    Math.min(1000, Math.floor(headersMs / 4)),
  );
  return server;
}
