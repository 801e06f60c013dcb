/**
 * The errors above the salt layer (whose own are in lib/salt/errors.ts),
 * for the clients and the HTTP layer. Each has a stable `code` (as
 * undici's UND_ERR_*): code and class are what callers and tests match on,
 * never a name or a message.
 *
 * HttpError and its subclasses are the refusals and failures that reach the
 * HTTP layer: each carries its status and the headers its answer carries,
 * and the handler writes every one of them the same way. Anything else that
 * reaches it is a bug or an outage and becomes a 500 without detail.
 *
 * Messages are shown to the client as `{"return": "<message>"}`: they must
 * never contain a password, a token or a stack.
 */
import { errorWithCode } from './salt/errors.js';

/** The 408 answer of a body that doesn't arrive in time. */
export const BODY_TIMEOUT_MESSAGE = '408: Request Timeout';
/** The 503 answer past `maxInFlight` (with `Retry-After: 1`). */
export const TOO_BUSY_MESSAGE = 'Too many requests in flight';
/** The 503 answer of requests cut short, or arriving, once close() was called. */
export const SHUTTING_DOWN_MESSAGE = 'The server is shutting down';
export const MASTER_UNAVAILABLE_MESSAGE = 'Salt Master is not available.';
/** The 500 answer of anything that is not an HttpError (a bug or an outage): no detail. */
export const UNEXPECTED_ERROR_MESSAGE = 'An unexpected error occurred';

export class HttpError extends Error {
  /** Headers its answer carries besides Content-Type and Content-Length. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    readonly status: number,
    message: string,
    readonly code = 'SRW_ERR_HTTP',
    headers: Readonly<Record<string, string>> = {},
  ) {
    // No stack: a refusal is an answer, not a bug, and its stack is never
    // shown or logged; capturing one was 6 µs, a tenth of what a refused
    // item costs (npm run bench -- --only ops-cost --profile). The limit is
    // the embedder's again at once.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.headers = headers;
  }
}

/** The unread rest of the body is discarded, not buffered; closing the connection saves reading the rest of it. */
const CLOSE = { Connection: 'close' } as const;

/** The base of one HttpError class: its status, code, headers, and its message when it always says the same. */
function httpError(status: number, code: string, headers: Readonly<Record<string, string>> = {}, fixedMessage = '') {
  return class extends HttpError {
    constructor(message = fixedMessage) {
      super(status, message, code, headers);
      this.name = new.target.name;
    }
  };
}

/** 400: the lowstate is malformed, names an unknown or disabled client, lacks `fun`. */
export class BadRequestError extends httpError(400, 'SRW_ERR_BAD_REQUEST') {}

/** 401: no credentials, bad credentials, or not permitted (eauth). */
export class AuthenticationError extends httpError(401, 'SRW_ERR_AUTHENTICATION') {}

/** 405: anything but GET, HEAD, POST. */
export class MethodNotAllowedError extends httpError(
  405,
  'SRW_ERR_METHOD_NOT_ALLOWED',
  { Allow: 'GET, HEAD, POST' },
  '405: Method Not Allowed',
) {}

/** 406: the request's Accept allows none of the answer formats (lib/http/answer-formats.ts). */
export class NotAcceptableError extends httpError(406, 'SRW_ERR_NOT_ACCEPTABLE') {}

/** 415: a POST whose Content-Type is none of the body formats read (lib/http/body-formats.ts). */
export class UnsupportedMediaTypeError extends httpError(415, 'SRW_ERR_UNSUPPORTED_MEDIA_TYPE') {}

/**
 * 403: the client's certificate is not one `ssl_allowed_cn` lists (or there
 * is none). Refused before the body is read and before the master hears of
 * it; the connection is closed, its body unread.
 */
export class CertificateNotAllowedError extends httpError(
  403,
  'SRW_ERR_CERTIFICATE_NOT_ALLOWED',
  CLOSE,
  '403: Client certificate not allowed',
) {}

/** 408: the body did not arrive in time. */
export class BodyTimeoutError extends httpError(408, 'SRW_ERR_BODY_TIMEOUT', CLOSE, BODY_TIMEOUT_MESSAGE) {}

/** 413: the body is over the configured limit. */
export class PayloadTooLargeError extends httpError(413, 'SRW_ERR_PAYLOAD_TOO_LARGE', CLOSE, '413: Request body too large') {}

/**
 * 429: too many failed logins from the client's address within the window
 * (lib/http/throttle.ts). Nothing was read or run; the connection is shed too,
 * its body unread. The message says the right password fails too, or a
 * client whose retry with it got 429 would think the throttle broken.
 */
export class TooManyFailedLoginsError extends HttpError {
  constructor(retryAfterS: number) {
    super(429, tooManyFailedLoginsMessage(retryAfterS), 'SRW_ERR_TOO_MANY_FAILED_LOGINS', {
      'Retry-After': String(retryAfterS),
      ...CLOSE,
    });
    this.name = 'TooManyFailedLoginsError';
  }
}

/** The 429's text: when to retry, and that until then correct credentials are refused too. */
export function tooManyFailedLoginsMessage(retryAfterS: number): string {
  return `Too many failed logins; retry after ${retryAfterS} s (until then every POST from this address is refused, correct credentials too)`;
}

/** 503: the master is not running or not answering. */
export class ServiceUnavailableError extends httpError(503, 'SRW_ERR_MASTER_UNAVAILABLE', {}, MASTER_UNAVAILABLE_MESSAGE) {}

/** 503 past maxInFlight: the connection is shed too, its body unread. */
export class TooBusyError extends httpError(503, 'SRW_ERR_TOO_BUSY', { 'Retry-After': '1', ...CLOSE }, TOO_BUSY_MESSAGE) {}

/** 503 once the handler is closed: not "Salt Master is not available", it is us going away. */
export class ShuttingDownError extends httpError(503, 'SRW_ERR_SHUTTING_DOWN', {}, SHUTTING_DOWN_MESSAGE) {}

/** 400: the master's list of runner functions has no such function (salt/utils/lazy.py verify_fun, Salt's own text). */
export class FunctionNotAvailableError extends httpError(400, 'SRW_ERR_FUNCTION_NOT_AVAILABLE') {
  constructor(fun: string) {
    super(`'${fun}' is not available.`);
  }
}

/**
 * 502: the master took the runner job but never started the function (no
 * `salt/run/<jid>/new` within gather_job_timeout): its runner process failed
 * to find the function or to bind its arguments, and says why in its log.
 */
export class RunnerNotStartedError extends httpError(502, 'SRW_ERR_RUNNER_NOT_STARTED') {
  constructor(fun: string, jid: string, seconds: number) {
    super(
      `The master started no job for runner function '${fun}' (jid ${jid}) within ${seconds} s: ` +
        'it does not have that function or could not bind its arguments; its log says which.',
    );
  }
}

/**
 * 503: the master may be up, but this process may not reach it: its
 * sock_dir or event bus socket refuses this user (EACCES/EPERM). `what`
 * names the access that is missing (README: "Permission denied").
 */
export class MasterPermissionError extends httpError(503, 'SRW_ERR_MASTER_PERMISSION') {
  constructor(what: string) {
    super(`Salt Master is not reachable: permission denied (${what}).`);
  }
}

/** 504: the master accepted the job but its result did not come in time. */
export class GatewayTimeoutError extends httpError(504, 'SRW_ERR_GATEWAY_TIMEOUT') {}

/** 504 of a call whose wait for job `jid` ended when the event bus dropped: a master restart, or our own close(). */
export class JobWaitLostError extends GatewayTimeoutError {
  constructor(
    readonly jid: string,
    what: string,
  ) {
    super(`Lost the connection to the master's event bus while waiting for ${what}; it may still be running on the master.`);
  }
}

/** 504 once the handler is closed while a call waited for job `jid`: it is us going away, and the job goes on. */
export class ShutdownCutWaitError extends httpError(504, 'SRW_ERR_SHUTDOWN_CUT_WAIT') {
  constructor(jid: string) {
    super(`${SHUTTING_DOWN_MESSAGE}: it stopped waiting for job ${jid}, which goes on on the master.`);
  }
}

/**
 * 507: a synchronous item's returns are more than `rest_wsgi: max_result_bytes`
 * lets it hold (Insufficient Storage: the request is fine, the server won't
 * hold its answer); what it held is let go, the job runs on.
 */
export class ResultTooLargeError extends httpError(507, 'SRW_ERR_RESULT_TOO_LARGE') {}

/**
 * 507 as a streamed answer's error line (lib/http/ndjson.ts): its reader
 * fell behind, lines past `rest_wsgi: ndjson_max_unsent_bytes` waiting
 * unsent. They are let go and the answer ends; the job runs on, its returns
 * in the master's job cache (`jobs.lookup_jid`).
 */
export class ReaderTooSlowError extends httpError(507, 'SRW_ERR_READER_TOO_SLOW') {
  constructor(
    readonly unsentBytes: number,
    readonly maxUnsentBytes: number,
    readonly jid: string | undefined,
  ) {
    super(
      `The reader fell behind: ${unsentBytes} bytes of this streamed answer were waiting unsent ` +
        `(ndjson_max_unsent_bytes: ${maxUnsentBytes}); the answer ends here, its unsent lines dropped. ` +
        (jid
          ? `Job ${jid} runs on; its returns are in the master's job cache: ` +
            `{"client": "runner", "fun": "jobs.lookup_jid", "jid": "${jid}"} (salt-run jobs.lookup_jid ${jid}).`
          : "The job runs on; its returns are in the master's job cache (jobs.lookup_jid)."),
    );
  }
}

/**
 * The master refused a request for a reason that is not about credentials,
 * or answered something we can't read. A 500, answered without detail: the
 * detail goes to the log.
 */
export class MasterError extends errorWithCode('SRW_ERR_MASTER') {}

/** The request went away before it was answered: nothing to answer. */
export class ClientGoneError extends errorWithCode('SRW_ERR_CLIENT_GONE') {}

/** The connection closed while its answer was being written (lib/http/response.ts): nobody to finish it for. */
export class AnswerAbortedError extends errorWithCode('SRW_ERR_ANSWER_ABORTED') {}

/** The reader took nothing of its answer for `rest_wsgi: send_timeout`: the connection was destroyed (lib/http/response.ts). */
export class SendTimeoutError extends errorWithCode('SRW_ERR_SEND_TIMEOUT') {}
