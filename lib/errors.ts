/**
 * One error type per HTTP status the API answers with. Every refusal and
 * failure that reaches the HTTP layer is one of these; anything else is a
 * bug or an outage and becomes a 500 without detail.
 *
 * Messages are shown to the client as `{"return": "<message>"}`: they must
 * never contain a password, a token or a stack.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** 400: the lowstate is malformed, names an unknown or disabled client, lacks `fun`. */
export class BadRequestError extends HttpError {
  override name = 'BadRequestError';
  constructor(message: string) {
    super(400, message);
  }
}

/** 401: no credentials, bad credentials, or not permitted (eauth). */
export class AuthenticationError extends HttpError {
  override name = 'AuthenticationError';
  constructor(message: string) {
    super(401, message);
  }
}

/** 405: anything but GET, HEAD, POST. */
export class MethodNotAllowedError extends HttpError {
  override name = 'MethodNotAllowedError';
  constructor() {
    super(405, '405: Method Not Allowed');
  }
}

/** 406: a POST whose body is not declared JSON. */
export class NotAcceptableError extends HttpError {
  override name = 'NotAcceptableError';
  constructor() {
    super(406, '406: JSON required');
  }
}

/** 413: the body is over the configured limit. */
export class PayloadTooLargeError extends HttpError {
  override name = 'PayloadTooLargeError';
  constructor() {
    super(413, '413: Request body too large');
  }
}

/** 503: the master is not running or not answering, or the server is at capacity. */
export class ServiceUnavailableError extends HttpError {
  override name = 'ServiceUnavailableError';
  constructor(message = 'Salt Master is not available.') {
    super(503, message);
  }
}

/** 504: the master accepted the job but its result did not come in time. */
export class GatewayTimeoutError extends HttpError {
  override name = 'GatewayTimeoutError';
  constructor(message: string) {
    super(504, message);
  }
}
