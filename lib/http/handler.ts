/**
 * The HTTP handler: Salt's rest_wsgi (salt/netapi/rest_wsgi.py) as one
 * `(req, res)` function for node:http, Express or anything that gives Node's
 * request and response objects.
 *
 * POST a JSON list of lowstate items; every item is checked before any runs,
 * then they run in order through the dispatcher, and the reply is
 * `{"return": [result, ...]}`. Every refusal is `{"return": "<message>"}`
 * with the status the README's "Status codes" lists. Like rest_wsgi, the URL path is ignored.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { totalmem } from 'node:os';
import { NetapiClient, type NetapiStats } from '../clients/netapi.js';
import { loadMasterConfig, applyMasterDefaults, type MasterOptions } from '../salt/config.js';
import {
  HttpError,
  AnswerAbortedError,
  AuthenticationError,
  BadRequestError,
  ClientGoneError,
  MethodNotAllowedError,
  NotAcceptableError,
  PayloadTooLargeError,
  ShuttingDownError,
  JobWaitLostError,
  ShutdownCutWaitError,
  TooBusyError,
} from '../errors.js';
import { positiveMs, positiveNumber } from '../numbers.js';
import { BodyReader, MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, deeperThan, parseBody } from './body.js';
import { writeJsonAnswer } from './response.js';
import { formatAccess, silentLogger, type AccessRecord, type Logger } from '../log.js';
import { clientAddress, onAccess } from './access.js';
import { authThrottle } from './throttle.js';
import { send } from './reply.js';

export {
  applyServerTimeouts,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_SERVER_REQUEST_TIMEOUT_MS,
  type ServerTimeouts,
} from './server-timeouts.js';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The GET answer of rest_wsgi (which sent it split into characters). */
export const GET_MESSAGE = "They found me. I don't know how, but they found me. Run for it, Marty!";

export const UNEXPECTED_ERROR_MESSAGE = 'An unexpected error occurred';

export { MAX_JSON_DEPTH } from './body.js';

export const DEFAULT_BODY_TIMEOUT_MS = 30_000;
export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 10_000;

/**
 * The default cap on requests in flight, from the machine's memory. A
 * request holds at most its body and the parsed copy of it (a few times
 * maxBodyBytes); a synchronous one then mostly waits for the master (a
 * socket, a timer, a subscription: a few KB, no CPU). One request per 8
 * body-sized slices of RAM, between 64 and 4096: 1024 on an 8 GiB machine
 * with the 1 MiB default body.
 */
export function defaultMaxInFlight(maxBodyBytes = DEFAULT_MAX_BODY_BYTES): number {
  const perRequest = 8 * Math.max(maxBodyBytes, 64 * 1024);
  return Math.min(4096, Math.max(64, Math.floor(totalmem() / perRequest)));
}

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
   * Failed logins (401s) of one client address (as logged) within the window
   * after which its POSTs get 429, unread (lib/http/throttle.ts). Default 10 in 60 s; 0 turns it off.
   */
  authFailureLimit?: number;
  authFailureWindowMs?: number;
}

/** RestWsgiHandler.stats(): what the handler holds right now. */
export interface HandlerStats extends NetapiStats {
  /** POST requests being handled. */
  inFlight: number;
  /** Client addresses with failed logins in the throttle's window (at most its table's cap; not back to 0 when idle). */
  failedLoginAddresses: number;
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
}

/** Express's `express.json()` and similar leave the parsed body on the request. */
type MaybeParsedRequest = IncomingMessage & { body?: unknown };

/**
 * The request's hang-up as an AbortSignal, made on first use: an
 * AbortController costs several µs to create, and only items that wait on
 * their job (netapi.waitsForJob) take one.
 */
class Hangup {
  private controller: AbortController | undefined;
  happened = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.happened) this.controller.abort();
    }
    return this.controller.signal;
  }

  hangUp(): void {
    this.happened = true;
    this.controller?.abort();
  }
}

export function createHandler(options: HandlerOptions = {}): RestWsgiHandler {
  const master =
    options.master ??
    (options.config !== undefined && typeof options.config === 'object'
      ? applyMasterDefaults(options.config)
      : loadMasterConfig(options.config));
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new RangeError(`maxBodyBytes must be a non-negative integer, got ${maxBodyBytes}`);
  }
  const maxInFlight = options.maxInFlight ?? defaultMaxInFlight(maxBodyBytes);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new RangeError(`maxInFlight must be a positive integer, got ${maxInFlight}`);
  }
  const bodyReader = new BodyReader({
    maxBytes: maxBodyBytes,
    totalMs: positiveMs(options.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS, 'bodyTimeoutMs'),
    idleMs: positiveMs(options.bodyIdleTimeoutMs, DEFAULT_BODY_IDLE_TIMEOUT_MS, 'bodyIdleTimeoutMs'),
  });
  let inFlight = 0;
  let closed = false;
  const logger = options.logger ?? silentLogger;
  const acceptSingleObject = options.acceptSingleObject ?? true;
  const trustProxy = options.trustProxy ?? false;
  const accessLog =
    typeof options.accessLog === 'function'
      ? options.accessLog
      : options.accessLog
        ? (record: AccessRecord) => logger.info(formatAccess(record))
        : undefined;
  const maxResultBytes = options.maxResultBytes ?? master.rest_wsgi?.max_result_bytes ?? 0;
  if (maxResultBytes !== 0 && !Number.isInteger(positiveNumber(maxResultBytes))) {
    throw new RangeError(`max_result_bytes must be a whole number of bytes (0: no ceiling), got ${String(maxResultBytes)}`);
  }
  const netapi = new NetapiClient(master, {
    logger,
    masterTimeoutMs: options.masterTimeoutMs ?? options.requestTimeoutMs,
    maxResultBytes: Number(maxResultBytes) || undefined,
  });
  const throttle = authThrottle(options, logger);

  async function handlePost(req: MaybeParsedRequest, res: ServerResponse, hangup: Hangup): Promise<void> {
    if (!isJsonContentType(req.headers['content-type'])) throw new NotAcceptableError();

    let body: unknown;
    // A body parser in front of us (express.json(), express.raw()) read the
    // stream and left its result in req.body. One that skipped the request
    // (express.urlencoded() on JSON) still sets req.body = {} but leaves the
    // stream unread: then the stream is the body.
    const parsed = req.readableEnded ? req.body : undefined;
    if (parsed !== undefined && !Buffer.isBuffer(parsed) && typeof parsed !== 'string') {
      body = parsed;
      if (deeperThan(body, MAX_JSON_DEPTH)) throw new BadRequestError(TOO_DEEP_MESSAGE);
    } else {
      const raw = parsed !== undefined ? Buffer.from(parsed as Buffer | string) : await bodyReader.read(req, res);
      if (raw.length > maxBodyBytes) throw new PayloadTooLargeError();
      body = parseBody(raw);
    }

    let lowstates: unknown[];
    if (Array.isArray(body)) lowstates = body;
    else if (acceptSingleObject && body !== null && typeof body === 'object') lowstates = [body];
    else throw new BadRequestError('Lowstates must be a list');

    let current: unknown; // the item being checked or run, for the throttle's log
    try {
      // Refuse the whole request before running anything (rest_wsgi ran the
      // items before a bad one).
      const items = lowstates.map((low, index) => {
        current = low;
        return netapi.prepare(low, index);
      });

      const results: unknown[] = [];
      for (const [index, item] of items.entries()) {
        if (hangup.happened) throw new ClientGoneError();
        current = lowstates[index];
        results.push(await item.run(item.waitsForJob ? hangup.signal : undefined));
      }
      // In pieces, with backpressure: the answer may be past what one string can hold (lib/http/response.ts).
      await writeJsonAnswer(res, 200, { return: results });
    } catch (err) {
      if (throttle && err instanceof AuthenticationError) throttle.fail(clientAddress(req, trustProxy), current);
      throw err;
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    if (accessLog) onAccess(req, res, trustProxy, accessLog);
    const hangup = new Hangup();
    // The client hung up before the answer: stop waiting for the master.
    res.once('close', () => {
      if (!res.writableFinished) hangup.hangUp();
    });

    let work: Promise<void>;
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        work = Promise.resolve().then(() => send(res, 200, { return: GET_MESSAGE }));
        break;
      case 'POST': {
        // An address with too many failed logins is refused before anything is read or sent to the master.
        const throttled = throttle?.refusal(clientAddress(req, trustProxy));
        if (throttled || inFlight >= maxInFlight) {
          work = Promise.reject(throttled ?? new TooBusyError());
          break;
        }
        inFlight++;
        work = handlePost(req, res, hangup).finally(() => inFlight--);
        break;
      }
      default:
        work = Promise.reject(new MethodNotAllowedError());
    }
    work.catch((err: unknown) => {
      if (res.headersSent || res.destroyed || hangup.happened) {
        // Nobody is waiting for an answer any more. A failure after the
        // answer started would be a bug of ours: say so.
        if (res.headersSent && !(err instanceof ClientGoneError) && !(err instanceof AnswerAbortedError)) {
          logger.error(`error after the response started (${req.method}): ${describe(err)}`);
        }
        if (!res.writableEnded) res.destroy();
        return;
      }
      if (!(err instanceof HttpError)) {
        logger.error(`unexpected error on ${req.method} from ${clientAddress(req, trustProxy)}: ${describe(err)}`);
      }
      sendError(req, res, closed ? shutdownError(err) : err);
    });
  }) as RestWsgiHandler;

  Object.defineProperties(handler, {
    netapi: { value: netapi, enumerable: true },
    master: { value: master, enumerable: true },
    close: {
      value: () => {
        closed = true;
        netapi.close();
      },
      enumerable: true,
    },
    stats: {
      value: (): HandlerStats => ({ inFlight, failedLoginAddresses: throttle?.addresses ?? 0, ...netapi.stats() }),
      enumerable: true,
    },
  });
  return handler;
}

/** `application/json`, any case, any parameters (`; charset=utf-8`). */
export function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  if (header === 'application/json') return true; // what nearly every client sends
  return header.split(';', 1)[0].trim().toLowerCase() === 'application/json';
}

/**
 * Any error as its answer: an HttpError's status, headers and message; anything else a 500 without detail.
 * A 413 is sent before the body is read: the rest is drained first, so that every client reads the answer.
 */
function sendError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  if (err instanceof HttpError)
    send(res, err.status, { return: err.message }, err.headers, err instanceof PayloadTooLargeError ? req : undefined);
  else send(res, 500, { return: UNEXPECTED_ERROR_MESSAGE });
}

/**
 * Once close() was called, a request cut short hears that the server is going
 * away, not that the master is (nor that the event bus dropped: a job it
 * waited for is named, and goes on).
 */
function shutdownError(err: unknown): unknown {
  if (err instanceof JobWaitLostError) return new ShutdownCutWaitError(err.jid);
  return err instanceof HttpError && err.code === 'SRW_ERR_MASTER_UNAVAILABLE' ? new ShuttingDownError() : err;
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}
