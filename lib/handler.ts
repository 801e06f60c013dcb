/**
 * The HTTP handler: Salt's rest_wsgi (salt/netapi/rest_wsgi.py) as one
 * `(req, res)` function for node:http, Express or anything that gives Node's
 * request and response objects.
 *
 * POST a JSON list of lowstate items; every item is checked before any runs,
 * then they run in order through the dispatcher, and the reply is
 * `{"return": [result, ...]}`. Every refusal is `{"return": "<message>"}`
 * with the status of CONTRACT.md. Like rest_wsgi, the URL path is ignored.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NetapiClient } from './netapi.js';
import { loadMasterConfig, applyMasterDefaults, type MasterOptions } from './salt/config.js';
import {
  HttpError,
  BadRequestError,
  MethodNotAllowedError,
  NotAcceptableError,
  PayloadTooLargeError,
} from './errors.js';
import { parseJson, toJson } from './json.js';
import { formatAccess, silentLogger, type AccessRecord, type Logger } from './log.js';
import { clientAddress, onAccess } from './access.js';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The GET answer of rest_wsgi (which sent it split into characters). */
export const GET_MESSAGE = "They found me. I don't know how, but they found me. Run for it, Marty!";

export const UNEXPECTED_ERROR_MESSAGE = 'An unexpected error occurred';

export interface HandlerOptions {
  /**
   * The master config: a file path, or options as an object (Salt's defaults
   * are applied). Absent: env SALT_MASTER_CONFIG, else /etc/salt/master.
   */
  config?: string | Partial<MasterOptions>;
  /** Largest request body read, in bytes; larger gets 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Where unexpected errors and job messages go. Default: nowhere. */
  logger?: Logger;
  /** Timeout of one request/reply towards the master, ms (the dispatcher's default when absent). */
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
   * Behind a proxy you run: the client address logged is the right-most
   * `X-Forwarded-For` entry (the one that proxy appended) instead of the
   * socket's peer. Only logging uses it. Default false.
   */
  trustProxy?: boolean;
}

export interface RestWsgiHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Release the dispatcher's sockets. Requests still running fail. */
  close(): void;
  /** The dispatcher (for tests and embedding). */
  readonly netapi: NetapiClient;
  /** The master options in use, Salt's defaults applied. */
  readonly master: MasterOptions;
}

/** Express's `express.json()` and similar leave the parsed body on the request. */
type MaybeParsedRequest = IncomingMessage & { body?: unknown };

/** The request went away before it was answered: nothing to send. */
class ClientGoneError extends Error {
  override name = 'ClientGoneError';
}

export function createHandler(options: HandlerOptions = {}): RestWsgiHandler {
  const master =
    options.config !== undefined && typeof options.config === 'object'
      ? applyMasterDefaults(options.config)
      : loadMasterConfig(options.config);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new RangeError(`maxBodyBytes must be a non-negative integer, got ${maxBodyBytes}`);
  }
  const logger = options.logger ?? silentLogger;
  const acceptSingleObject = options.acceptSingleObject ?? true;
  const trustProxy = options.trustProxy ?? false;
  const accessLog =
    typeof options.accessLog === 'function'
      ? options.accessLog
      : options.accessLog
        ? (record: AccessRecord) => logger.info(formatAccess(record))
        : undefined;
  const netapi = new NetapiClient(master, { logger, requestTimeoutMs: options.requestTimeoutMs });

  async function handlePost(req: MaybeParsedRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
    if (!isJsonContentType(req.headers['content-type'])) throw new NotAcceptableError();

    let body: unknown;
    // A body parser in front of us (express.json(), express.raw()) read the
    // stream and left its result in req.body. One that skipped the request
    // (express.urlencoded() on JSON) still sets req.body = {} but leaves the
    // stream unread: then the stream is the body.
    const parsed = req.readableEnded ? req.body : undefined;
    if (parsed !== undefined && !Buffer.isBuffer(parsed) && typeof parsed !== 'string') {
      body = parsed;
    } else {
      const raw = parsed !== undefined ? Buffer.from(parsed as Buffer | string) : await readBody(req, res, maxBodyBytes);
      if (raw.length > maxBodyBytes) throw new PayloadTooLargeError();
      body = parseBody(raw);
    }

    let lowstates: unknown[];
    if (Array.isArray(body)) lowstates = body;
    else if (acceptSingleObject && body !== null && typeof body === 'object') lowstates = [body];
    else throw new BadRequestError('Lowstates must be a list');

    // Refuse the whole request before running anything (rest_wsgi ran the
    // items before a bad one).
    lowstates.forEach((low, index) => netapi.check(low, index));

    const results: unknown[] = [];
    for (const low of lowstates) {
      if (signal.aborted) throw new ClientGoneError();
      results.push(await netapi.run(low, signal));
    }
    send(res, 200, { return: results });
  }

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    if (accessLog) onAccess(req, res, trustProxy, accessLog);
    const abort = new AbortController();
    // The client hung up before the answer: stop waiting for the master.
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });

    let work: Promise<void>;
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        work = Promise.resolve().then(() => send(res, 200, { return: GET_MESSAGE }));
        break;
      case 'POST':
        work = handlePost(req, res, abort.signal);
        break;
      default:
        work = Promise.reject(new MethodNotAllowedError());
    }
    work.catch((err: unknown) => {
      if (res.headersSent || res.destroyed || abort.signal.aborted) {
        // Nobody is waiting for an answer any more. A failure after the
        // answer started would be a bug of ours: say so.
        if (res.headersSent && !(err instanceof ClientGoneError)) {
          logger.error(`error after the response started (${req.method}): ${describe(err)}`);
        }
        if (!res.writableEnded) res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        const headers: Record<string, string> = {};
        if (err instanceof MethodNotAllowedError) headers.Allow = 'GET, HEAD, POST';
        // The unread rest of the body is discarded, not buffered; closing the
        // connection saves reading the rest of an oversized upload.
        if (err instanceof PayloadTooLargeError) headers.Connection = 'close';
        send(res, err.status, { return: err.message }, headers);
        return;
      }
      logger.error(`unexpected error on ${req.method} from ${clientAddress(req, trustProxy)}: ${describe(err)}`);
      send(res, 500, { return: UNEXPECTED_ERROR_MESSAGE });
    });
  }) as RestWsgiHandler;

  Object.defineProperties(handler, {
    netapi: { value: netapi, enumerable: true },
    master: { value: master, enumerable: true },
    close: { value: () => netapi.close(), enumerable: true },
  });
  return handler;
}

/** `application/json`, any case, any parameters (`; charset=utf-8`). */
export function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  return header.split(';', 1)[0].trim().toLowerCase() === 'application/json';
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = toJson(body);
  // setHeader rather than writeHead(status, headers): wrappers (an access
  // log, middleware) can read them back with getHeader.
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(status);
  res.end(text); // Node leaves the body out for HEAD
}

/**
 * The body as bytes, reading at most `limit` of them: a declared
 * Content-Length over the limit is refused before reading, and a stream
 * passing the limit stops being collected at once (what still arrives is
 * discarded by Node, never kept).
 */
function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new PayloadTooLargeError());
  if (req.readableEnded) return Promise.reject(new BadRequestError('Request body already read'));

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      res.off('close', onGone);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        chunks.length = 0;
        reject(new PayloadTooLargeError());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError());
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onGone);
    res.once('close', onGone);
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseBody(raw: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(raw); // also drops a leading BOM
  } catch {
    throw new BadRequestError('400: Request body is not valid UTF-8');
  }
  try {
    // Integers past 2^53 stay exact (BigInt), as Python's json keeps them.
    // A `__proto__` key stays an own property, and parsed input is never
    // merged into other objects: it can't pollute prototypes.
    return parseJson(text);
  } catch (err) {
    throw new BadRequestError(`400: ${jsonErrorMessage(err)}`);
  }
}

/**
 * V8's parser message on one line, without the excerpt of the input it
 * quotes for some errors (`Unexpected token 'x', "xyz..." is not valid JSON`):
 * the body may hold a password.
 */
function jsonErrorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const firstLine = message.split('\n', 1)[0];
  const trimmed = firstLine.replace(/, ".*"(\.\.\.)? is not valid JSON$/, ' in JSON');
  return trimmed.length > 200 ? `${trimmed.slice(0, 200)}...` : trimmed;
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}
