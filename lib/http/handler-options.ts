/**
 * What createHandler (./handler.ts) takes and gives: its options, its stats
 * and the handler itself. Apart from the handler so that the request steps
 * read in one sitting; the `rest_wsgi:` keys behind the options are
 * ./settings.ts's table.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { NetapiClient, NetapiStats } from '../clients/netapi.js';
import type { MasterOptions } from '../salt/config.js';
import type { AccessRecord, Logger } from '../log.js';
import type { AuditRecord } from './audit.js';

export interface HandlerOptions {
  /**
   * The master config: a file path, or options as an object (Salt's defaults
   * are applied). Absent: env SALT_MASTER_CONFIG, else /etc/salt/master.
   */
  config?: string | Partial<MasterOptions>;
  /** The master options as loadMasterConfig() gave them, used as they are (instead of `config`: the file is not read again). */
  master?: MasterOptions;
  /** Largest request body read, in bytes; larger gets 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Where unexpected errors and job messages go. Default: nowhere. */
  logger?: Logger;
  /** Timeout of one request/reply towards the master, ms (the dispatcher's default, 30 s, when absent). */
  masterTimeoutMs?: number;
  /** @deprecated The old name of masterTimeoutMs (not the HTTP request's timeout: that is ServerTimeouts.requestTimeoutMs). */
  requestTimeoutMs?: number;
  /** Take a body that is a single JSON object as a one-item list. Default true. */
  acceptSingleObject?: boolean;
  /**
   * One access record per request (method, path without query, status,
   * bytes, duration, client; never a body or a header): `true` logs it as a
   * line through `logger.info`, a function receives the record. Default off.
   */
  accessLog?: boolean | ((record: AccessRecord) => void);
  /**
   * Behind a proxy you run: the client address (logged, and counted by the
   * failed-login throttle) is the right-most `X-Forwarded-For` entry (the one
   * that proxy appended) instead of the socket's peer. Default false.
   */
  trustProxy?: boolean;
  /**
   * POST requests handled at once, at most; past it a request gets 503
   * `Too many requests in flight` with `Retry-After: 1` at once, its body
   * unread. Default defaultMaxInFlight(maxBodyBytes), from the machine's memory.
   */
  maxInFlight?: number;
  /** Bytes of returns one sync item may hold, then 507 (README); default `rest_wsgi: max_result_bytes`, else none. */
  maxResultBytes?: number;
  /** The whole body must arrive within this, ms, from the headers; else 408. Default 30 s. */
  bodyTimeoutMs?: number;
  /** No more than this may pass between two pieces of the body, ms; else 408. Default 10 s. */
  bodyIdleTimeoutMs?: number;
  /**
   * Failed logins (passwords the master refused; tokens refused are not counted) of one client address (as logged) within the window
   * after which its POSTs get 429, unread (lib/http/throttle.ts). Default 10 in 60 s; 0 turns it off.
   */
  authFailureLimit?: number;
  authFailureWindowMs?: number;
  /** A streamed answer (lib/http/ndjson.ts) writes a heartbeat line when nothing else was written for this long, ms. Default 15 s. */
  ndjsonHeartbeatMs?: number;
  /**
   * Bytes of a streamed answer's lines that may wait for a slow reader; the
   * next line past it ends the answer with a 507 error line, what waited let
   * go (README: Streamed answers). Default `rest_wsgi: ndjson_max_unsent_bytes`, else 8 MiB; 0: no cap.
   */
  ndjsonMaxUnsentBytes?: number;
  /** An answer's reader (JSON, YAML or streamed) that takes nothing of it for this long, ms, is disconnected. Default `rest_wsgi: send_timeout`, else 60 s. */
  sendTimeoutMs?: number;
  /**
   * One audit record per lowstate item once it ended (lib/http/audit.ts):
   * `true` logs it as a line through `logger.info`, a function receives it. Default off.
   */
  auditLog?: boolean | ((record: AuditRecord) => void);
  /** The audit records carry the items' arguments, secret-looking values masked. Default false. */
  auditArgs?: boolean;
  /** Only clients whose verified certificate's subject CN is listed are served; others get 403, unread (mTLS: the https server verifies). */
  allowedCn?: readonly string[];
}

/** RestWsgiHandler.stats(): what the handler holds right now. */
export interface HandlerStats extends NetapiStats {
  /** POST requests being handled. */
  inFlight: number;
  /** Client addresses with failed logins in the throttle's window (at most its table's cap; not back to 0 when idle). */
  failedLoginAddresses: number;
  /** Bytes of streamed answers' lines waiting for their readers (back to 0 when idle). */
  unsentBytes: number;
}

export interface RestWsgiHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Release the dispatcher's sockets. Requests still running fail (503 `The server is shutting down`, or 504 naming their job). */
  close(): void;
  /** The dispatcher (for tests and embedding). */
  readonly netapi: NetapiClient;
  /** The master options in use, Salt's defaults applied. */
  readonly master: MasterOptions;
  /** Requests in flight and what they hold of the dispatcher (each back to 0 when idle). */
  stats(): HandlerStats;
  /** Its Prometheus metrics (prom-client), for an embedder's own /metrics. */
  readonly metrics: Registry;
  /** `/metrics`, `/healthz` and `/readyz` (lib/http/metrics.ts), to mount on a listener of their own. */
  readonly metricsHandler: (req: IncomingMessage, res: ServerResponse) => void;
}
