/**
 * salt-rest-wsgi: Salt's rest_wsgi netapi as a node:http handler.
 *
 *   import http from 'node:http';
 *   import { createHandler } from 'salt-rest-wsgi';
 *   http.createServer(createHandler({ config: '/etc/salt/master' })).listen(8001, '127.0.0.1');
 */
export {
  createHandler,
  isJsonContentType,
  DEFAULT_MAX_BODY_BYTES,
  GET_MESSAGE,
  UNEXPECTED_ERROR_MESSAGE,
  type HandlerOptions,
  type RestWsgiHandler,
} from './handler.js';
export { NetapiClient, CLIENTS, type Lowstate, type NetapiClientOptions } from './netapi.js';
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
export { createLogger, silentLogger, formatAccess, type Logger, type LogLevel, type LoggerOptions, type AccessRecord } from './log.js';
