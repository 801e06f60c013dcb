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
import { NetapiClient } from '../clients/netapi.js';
import { loadMasterConfig, applyMasterDefaults, type MasterOptions } from '../salt/config.js';
import {
  HttpError,
  AnswerAbortedError,
  SendTimeoutError,
  AuthenticationError,
  BadRequestError,
  ClientGoneError,
  MethodNotAllowedError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  ShuttingDownError,
  JobWaitLostError,
  ShutdownCutWaitError,
  TooBusyError,
  UNEXPECTED_ERROR_MESSAGE,
  CertificateNotAllowedError,
} from '../errors.js';
import { positiveMs } from '../numbers.js';
import { definedOnly, describe } from '../objects.js';
import { BodyReader } from './body.js';
import { bodyFormatFor } from './body-formats.js';
import { ANSWER_FORMATS, NDJSON_ANSWER, negotiateAnswer, notAcceptable, type AnswerFormat } from './answer-formats.js';
import { withHeaderToken } from './auth-token.js';
import { formatAccess, silentLogger, type AccessRecord, type Logger } from '../log.js';
import { clientAddress, onAccess } from './access.js';
import { authThrottle, type AuthThrottle } from './throttle.js';
import { Hangup } from './hangup.js';
import { DEFAULT_HEARTBEAT_MS, streamAnswer, type CutReason, type ItemRunner } from './ndjson.js';
import { queueLimits, type QueueLimits, type UnsentTally } from './ndjson-queue.js';
import type { HandlerOptions, HandlerStats, RestWsgiHandler } from './handler-options.js';
import { defaultMaxInFlight, handlerOptionsOf, readSettings } from './settings.js';
import { metricsRequestHandler } from './metrics.js';
import { itemStatus } from './audit.js';
import { itemEnded, runItem, type ItemScope } from './item-run.js';
import { operationsFor, type Operations } from './operations.js';

/** The GET answer of rest_wsgi (which sent it split into characters). */
export const GET_MESSAGE = "They found me. I don't know how, but they found me. Run for it, Marty!";

export { UNEXPECTED_ERROR_MESSAGE } from '../errors.js';

export type { HandlerOptions, HandlerStats, RestWsgiHandler } from './handler-options.js';

/** Express's `express.json()` and similar leave the parsed body on the request. */
type MaybeParsedRequest = IncomingMessage & { body?: unknown };

/** What a handler's requests share: its options as resolved, the dispatcher, the throttle and what is in flight. */
interface Service {
  readonly netapi: NetapiClient;
  readonly logger: Logger;
  readonly bodyReader: BodyReader;
  readonly throttle: AuthThrottle | undefined;
  readonly accessLog: ((record: AccessRecord) => void) | undefined;
  readonly maxBodyBytes: number;
  readonly maxInFlight: number;
  readonly trustProxy: boolean;
  readonly acceptSingleObject: boolean;
  readonly ndjsonHeartbeatMs: number;
  /** What a streamed answer may keep waiting for its reader; how long any answer may go untaken (send_timeout). */
  readonly answerLimits: QueueLimits;
  /** The bytes waiting in all of them. */
  readonly unsent: UnsentTally;
  /** Metrics, audit, client certificates (lib/http/operations.ts). */
  readonly ops: Operations;
  inFlight: number;
  closed: boolean;
}

export function createHandler(options: HandlerOptions = {}): RestWsgiHandler {
  const master =
    options.master ??
    (options.config !== undefined && typeof options.config === 'object'
      ? applyMasterDefaults(options.config)
      : loadMasterConfig(options.config));
  const service = serviceFor(master, options);
  const handler = ((req: IncomingMessage, res: ServerResponse) => handleRequest(service, req, res)) as RestWsgiHandler;
  Object.defineProperties(handler, {
    netapi: { value: service.netapi, enumerable: true },
    master: { value: master, enumerable: true },
    close: {
      value: () => {
        service.closed = true;
        service.netapi.close();
      },
      enumerable: true,
    },
    metrics: { value: service.ops.metrics.registry, enumerable: true },
    metricsHandler: { value: metricsRequestHandler(service.ops.metrics, () => service.netapi.notReady()), enumerable: true },
    stats: {
      value: (): HandlerStats => ({
        inFlight: service.inFlight,
        failedLoginAddresses: service.throttle?.addresses ?? 0,
        unsentBytes: service.unsent.bytes,
        ...service.netapi.stats(),
      }),
      enumerable: true,
    },
  });
  return handler;
}

/**
 * The options, each from createHandler's options, else the master config's
 * `rest_wsgi:` section (lib/http/settings.ts reads it as the command does),
 * else its default; an option that can't be used throws RangeError.
 */
function serviceFor(master: MasterOptions, options: HandlerOptions): Service {
  const fromConfig = handlerOptionsOf(readSettings((master.rest_wsgi ?? {}) as Record<string, unknown>, master.conf_file));
  const merged: HandlerOptions = { ...fromConfig, ...definedOnly(options) };
  const maxBodyBytes = merged.maxBodyBytes as number;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new RangeError(`maxBodyBytes must be a non-negative integer, got ${maxBodyBytes}`);
  }
  const maxInFlight = merged.maxInFlight ?? defaultMaxInFlight(maxBodyBytes);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new RangeError(`maxInFlight must be a positive integer, got ${maxInFlight}`);
  }
  const maxResultBytes = merged.maxResultBytes as number;
  if (!Number.isInteger(maxResultBytes) || maxResultBytes < 0) {
    throw new RangeError(`max_result_bytes must be a whole number of bytes (0: no ceiling), got ${String(maxResultBytes)}`);
  }
  const logger = options.logger ?? silentLogger;
  const accessLog =
    typeof options.accessLog === 'function'
      ? options.accessLog
      : options.accessLog
        ? (record: AccessRecord) => logger.info(formatAccess(record))
        : undefined;
  const netapi = new NetapiClient(master, {
    logger,
    masterTimeoutMs: options.masterTimeoutMs ?? options.requestTimeoutMs,
    maxResultBytes: maxResultBytes || undefined,
    // The answers are written with lib/json.ts: returns go there as JSON text, never as objects.
    rawReturns: true,
  });
  const service: Service = {
    netapi,
    logger,
    bodyReader: new BodyReader({
      maxBytes: maxBodyBytes,
      totalMs: positiveMs(merged.bodyTimeoutMs as number, 0, 'bodyTimeoutMs'),
      idleMs: positiveMs(merged.bodyIdleTimeoutMs as number, 0, 'bodyIdleTimeoutMs'),
    }),
    throttle: authThrottle(merged, logger),
    accessLog,
    maxBodyBytes,
    maxInFlight,
    trustProxy: merged.trustProxy ?? false,
    acceptSingleObject: options.acceptSingleObject ?? true,
    ndjsonHeartbeatMs: positiveMs(options.ndjsonHeartbeatMs, DEFAULT_HEARTBEAT_MS, 'ndjsonHeartbeatMs'),
    answerLimits: queueLimits(merged.ndjsonMaxUnsentBytes, merged.sendTimeoutMs),
    unsent: { bytes: 0 },
    ops: operationsFor(
      merged,
      logger,
      netapi,
      () => service.inFlight,
      () => service.unsent.bytes,
    ),
    inFlight: 0,
    closed: false,
  };
  return service;
}

/** One request: its method decides what happens; every failure is answered by answerFailure(). */
function handleRequest(service: Service, req: IncomingMessage, res: ServerResponse): void {
  const { id, log } = service.ops.begin(req, res, service.logger);
  if (service.accessLog) onAccess(req, res, service.trustProxy, service.accessLog);
  const hangup = new Hangup();
  // The client hung up before the answer: stop waiting for the master.
  res.once('close', () => {
    if (!res.writableFinished) hangup.hangUp();
  });

  // Every answer of the request, refusals too, in the format its Accept chose (lib/http/answer-formats.ts).
  const answer = negotiateAnswer(req.headers.accept);
  let work: Promise<void>;
  // ssl_allowed_cn: an unlisted certificate is refused before anything is read or sent to the master.
  const refusal = !service.ops.certificateAllowed(req) ? 'FORBIDDEN' : answer === undefined ? 'NOT_ACCEPTABLE' : undefined;
  switch (refusal ?? req.method) {
    case 'NOT_ACCEPTABLE':
      work = Promise.reject(notAcceptable());
      break;
    case 'GET':
    case 'HEAD':
      work = Promise.resolve().then(() => answer!.send(res, 200, { return: GET_MESSAGE }));
      break;
    case 'POST': {
      // An address with too many failed logins is refused before anything is read or sent to the master.
      const throttled = service.throttle?.refusal(clientAddress(req, service.trustProxy));
      if (throttled || service.inFlight >= service.maxInFlight) {
        service.ops.metrics.refused(throttled !== undefined);
        work = Promise.reject(throttled ?? new TooBusyError());
        break;
      }
      service.inFlight++;
      const scope = service.ops.itemScope(req, clientAddress(req, service.trustProxy), id, log);
      work = handlePost(service, req, res, hangup, answer!, scope).finally(() => service.inFlight--);
      break;
    }
    case 'FORBIDDEN':
      work = Promise.reject(new CertificateNotAllowedError());
      break;
    default:
      work = Promise.reject(new MethodNotAllowedError());
  }
  work.catch((err: unknown) => answerFailure(service, req, res, hangup, err, answer ?? ANSWER_FORMATS[0], log));
}

/** A POST: its lowstates read, all checked, then run in order; the answer written as it is built. */
async function handlePost(
  service: Service,
  req: MaybeParsedRequest,
  res: ServerResponse,
  hangup: Hangup,
  answer: AnswerFormat,
  scope: ItemScope,
): Promise<void> {
  const lowstates = withHeaderToken(await readLowstates(service, req, res), req.headers);
  let current: unknown; // the item being checked or run, for the throttle's log
  let checking = true;
  try {
    // Refuse the whole request before running anything (rest_wsgi ran the
    // items before a bad one). A 401 here (no credentials, raw_shell, a
    // malformed token) is ours, before the master was asked: no failed login.
    const items = lowstates.map((low, index) => {
      current = low;
      return service.netapi.prepare(low, index);
    });
    checking = false;
    if (answer === NDJSON_ANSWER) {
      const onItem = (index: number) => (current = lowstates[index]);
      const failure = (err: unknown) => {
        noteFailure(service, req, err, current);
        return answerable(service, req, err, scope.logger);
      };
      const run: ItemRunner = (item, index, signal, sink, report) => runItem(scope, item, lowstates[index], signal, sink, report);
      const onCut = (reason: CutReason, message: string) => {
        service.ops.metrics.streamCut(reason);
        scope.logger.warn(message);
      };
      const { ndjsonHeartbeatMs: heartbeatMs, answerLimits: limits, unsent: tally } = service;
      return await streamAnswer(res, items, hangup, { heartbeatMs, limits, tally, onCut, onItem, failure, run });
    }
    const results: unknown[] = [];
    for (const [index, item] of items.entries()) {
      if (hangup.happened) throw new ClientGoneError();
      current = lowstates[index];
      results.push(await runItem(scope, item, current, item.waitsForJob ? hangup.signal : undefined));
    }
    // In pieces, with backpressure: the answer may be past what one string can hold (lib/http/response.ts).
    service.ops.metrics.answered(res, await answer.write(res, 200, { return: results }, {}, service.answerLimits.sendTimeoutMs));
  } catch (err) {
    // The item refused: its audit record. Else the master refused it: a failed login if it tried a password (lib/http/throttle.ts).
    if (checking) itemEnded(scope, current, {}, itemStatus(err));
    else noteFailure(service, req, err, current);
    throw err;
  }
}

/** A failed login counts towards the client's throttle. */
function noteFailure(service: Service, req: IncomingMessage, err: unknown, current: unknown): void {
  if (service.throttle && err instanceof AuthenticationError) service.throttle.fail(clientAddress(req, service.trustProxy), current);
}

/** The request's lowstates: its body in the format its Content-Type names (or what a body parser in front of us left), a list or one object. */
async function readLowstates(service: Service, req: MaybeParsedRequest, res: ServerResponse): Promise<unknown[]> {
  const format = bodyFormatFor(req.headers['content-type']);
  let body: unknown;
  // A body parser in front of us (express.json(), express.raw()) read the
  // stream and left its result in req.body. One that skipped the request
  // (express.urlencoded() on JSON) still sets req.body = {} but leaves the
  // stream unread: then the stream is the body.
  const parsed = req.readableEnded ? req.body : undefined;
  if (parsed !== undefined && !Buffer.isBuffer(parsed) && typeof parsed !== 'string') {
    body = format.fromParsed(parsed);
  } else {
    const raw = parsed !== undefined ? Buffer.from(parsed as Buffer | string) : await service.bodyReader.read(req, res);
    if (raw.length > service.maxBodyBytes) throw new PayloadTooLargeError();
    body = format.read(raw);
  }
  if (Array.isArray(body)) return body;
  if (service.acceptSingleObject && body !== null && typeof body === 'object') return [body];
  throw new BadRequestError('Lowstates must be a list');
}

/** A request that failed: its answer, unless nobody waits for one any more. */
function answerFailure(
  service: Service,
  req: IncomingMessage,
  res: ServerResponse,
  hangup: Hangup,
  err: unknown,
  answer: AnswerFormat,
  log: Logger,
): void {
  if (res.headersSent || res.destroyed || hangup.happened) {
    // A reader that stopped reading is the operator's to know of; any other failure after the answer started would be a bug of ours: say so.
    if (err instanceof SendTimeoutError) log.warn(err.message);
    else if (res.headersSent && !(err instanceof ClientGoneError) && !(err instanceof AnswerAbortedError)) {
      log.error(`error after the response started (${req.method}): ${describe(err)}`);
    }
    if (!res.writableEnded) res.destroy();
    return;
  }
  sendError(req, res, answerable(service, req, err, log), answer);
}

/** The error as answered: logged if unexpected, a shutdown's own once close() was called. */
function answerable(service: Service, req: IncomingMessage, err: unknown, log: Logger): unknown {
  if (!(err instanceof HttpError)) {
    log.error(`unexpected error on ${req.method} from ${clientAddress(req, service.trustProxy)}: ${describe(err)}`);
  }
  return service.closed ? shutdownError(err) : err;
}

/**
 * Any error as its answer: an HttpError's status, headers and message; anything else a 500 without detail.
 * A 413 is sent before the body is read: the rest is drained first, so that every client reads the answer.
 */
function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, answer: AnswerFormat): void {
  if (err instanceof HttpError)
    answer.send(res, err.status, { return: err.message }, err.headers, err instanceof PayloadTooLargeError ? req : undefined);
  else answer.send(res, 500, { return: UNEXPECTED_ERROR_MESSAGE });
}

/**
 * Once close() was called, a request cut short hears that the server is going
 * away, not that the master is (nor that the event bus dropped: a job it
 * waited for is named, and goes on).
 */
function shutdownError(err: unknown): unknown {
  if (err instanceof JobWaitLostError) return new ShutdownCutWaitError(err.jid);
  return err instanceof ServiceUnavailableError ? new ShuttingDownError() : err;
}
