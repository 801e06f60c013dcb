/**
 * salt-rest-wsgi: Salt's rest_wsgi netapi as a node:http handler, and the
 * dispatcher behind it for use without HTTP (README: Embedding).
 *
 *   import http from 'node:http';
 *   import { createHandler } from 'salt-rest-wsgi';
 *   http.createServer(createHandler({ config: '/etc/salt/master' })).listen(8001, '127.0.0.1');
 *
 *   import { NetapiClient, loadMasterConfig } from 'salt-rest-wsgi';
 *   const netapi = new NetapiClient(loadMasterConfig());
 *   await netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', eauth: 'pam', username, password });
 *   netapi.close();
 */
export { createHandler, type HandlerOptions, type HandlerStats, type RestWsgiHandler } from './http/handler.js';
export { applyServerTimeouts, type ServerTimeouts } from './http/server-timeouts.js';
export {
  NetapiClient,
  CLIENTS,
  type ClientName,
  type Lowstate,
  type NetapiClientOptions,
  type NetapiStats,
  type PreparedItem,
} from './clients/netapi.js';
export { loadMasterConfig, applyMasterDefaults, type MasterOptions } from './salt/config.js';
// Every error class, each with its stable `code` (and, for HttpError, `status` and `headers`).
export {
  HttpError,
  BadRequestError,
  AuthenticationError,
  MethodNotAllowedError,
  NotAcceptableError,
  UnsupportedMediaTypeError,
  CertificateNotAllowedError,
  BodyTimeoutError,
  PayloadTooLargeError,
  TooManyFailedLoginsError,
  ServiceUnavailableError,
  TooBusyError,
  ShuttingDownError,
  GatewayTimeoutError,
  FunctionNotAvailableError,
  RunnerNotStartedError,
  MasterPermissionError,
  ResultTooLargeError,
  JobWaitLostError,
  ShutdownCutWaitError,
  MasterError,
  ClientGoneError,
  AnswerAbortedError,
} from './errors.js';
export {
  ConfigError,
  MasterNotAnsweringError,
  RequestTimeoutError,
  ConnectionLostError,
  ChannelClosedError,
  EventBusTimeoutError,
  EventBusClosedError,
  FrameStreamError,
  ZmtpError,
} from './salt/errors.js';
export type { Logger, AccessRecord } from './log.js';
