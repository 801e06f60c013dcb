/**
 * The errors of the salt layer: talking to the master (request channel,
 * event bus), reading its wire formats, reading its config. Each has a
 * stable `code` (as undici's UND_ERR_*): callers tell them apart by class
 * (instanceof), never by name or message. They are imported from here
 * (lib/index.ts exports them to embedders); lib/errors.ts holds the HTTP
 * errors above this layer.
 */

/**
 * The base of an error class with a stable `code`; its `name` is the class's
 * own (for stacks and logs only).
 */
export function errorWithCode<Code extends string>(code: Code) {
  return class extends Error {
    readonly code: Code = code;
    constructor(message?: string, options?: ErrorOptions) {
      super(message, options);
      this.name = new.target.name;
    }
  };
}

/**
 * A request the master did not answer, whatever the transport: the base of
 * the three ways it happens below. The dispatcher answers 503 to any of them
 * (lib/clients/context.ts: request).
 */
export abstract class MasterNotAnsweringError extends Error {
  abstract readonly code: string;
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No reply to a request within its timeout: the master is not answering. */
export class RequestTimeoutError extends MasterNotAnsweringError {
  readonly code = 'SRW_ERR_REQUEST_TIMEOUT';
}

/**
 * The connection dropped after the request was written and before its reply
 * came: the master (a restart, a crash) can't answer it on a new connection,
 * since its ROUTER routes replies by connection. Failing it at once beats
 * waiting out the timeout; whether the master acted on it is unknown.
 */
export class ConnectionLostError extends MasterNotAnsweringError {
  readonly code = 'SRW_ERR_CONNECTION_LOST';
}

/** A request on, or pending when, the request channel is closed. */
export class ChannelClosedError extends MasterNotAnsweringError {
  readonly code = 'SRW_ERR_CHANNEL_CLOSED';
}

/** Not connected to the event bus in time. */
export class EventBusTimeoutError extends errorWithCode('SRW_ERR_EVENT_BUS_TIMEOUT') {}

/** ready() on an event bus that is, or gets, closed. */
export class EventBusClosedError extends errorWithCode('SRW_ERR_EVENT_BUS_CLOSED') {}

/** The event bus stream is not msgpack, or a frame passes the size limit: the stream is dropped. */
export class FrameStreamError extends errorWithCode('SRW_ERR_FRAME_STREAM') {}

/** The peer on ret_port is not a ZeroMQ peer we can talk to: the connection is dropped. */
export class ZmtpError extends errorWithCode('SRW_ERR_ZMTP') {}

/** The master config can't be read or holds an invalid value (one line, naming the file). */
export class ConfigError extends errorWithCode('SRW_ERR_CONFIG') {}
