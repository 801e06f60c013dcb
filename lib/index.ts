/**
 * salt-rest-wsgi: Salt's rest_wsgi netapi as a node:http handler, and the
 * dispatcher behind it for use without HTTP.
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
export {
  createHandler,
  isJsonContentType,
  DEFAULT_MAX_BODY_BYTES,
  GET_MESSAGE,
  UNEXPECTED_ERROR_MESSAGE,
  applyServerTimeouts,
  defaultMaxInFlight,
  MAX_JSON_DEPTH,
  type HandlerOptions,
  type HandlerStats,
  type RestWsgiHandler,
  type ServerTimeouts,
} from './handler.js';
export { NetapiClient, CLIENTS, type ClientName, type Lowstate, type NetapiClientOptions, type NetapiStats, type PreparedItem } from './netapi.js';
export { MasterError } from './clients/context.js';
export { loadMasterConfig, applyMasterDefaults, ConfigError, type MasterOptions } from './salt/config.js';
export {
  HttpError,
  BadRequestError,
  AuthenticationError,
  MethodNotAllowedError,
  NotAcceptableError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  GatewayTimeoutError,
} from './errors.js';
export { toJson, parseJson, bytesToText } from './json.js';
export {
  createLogger,
  silentLogger,
  formatAccess,
  type Logger,
  type CommandLogger,
  type LogLevel,
  type LogFormat,
  type LoggerOptions,
  type AccessRecord,
} from './log.js';
export { clientAddress } from './access.js';
