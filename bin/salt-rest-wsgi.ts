#!/usr/bin/env node
/**
 * salt-rest-wsgi: serve the handler on node:http, configured from the Salt
 * master's config file as salt-api does (its `rest_wsgi:` section).
 */
import http from 'node:http';
import https from 'node:https';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  applyServerTimeouts,
  createHandler,
  defaultMaxInFlight,
  DEFAULT_BODY_IDLE_TIMEOUT_MS,
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  type RestWsgiHandler,
} from '../lib/http/handler.js';
import { loadMasterConfig, type MasterOptions } from '../lib/salt/config.js';
import { positiveNumber, secondsToMs } from '../lib/numbers.js';
import { eventBusProblem, isMasterRunning } from '../lib/salt/master-sockets.js';
import { WAITING_CLIENTS } from '../lib/clients/table.js';
import { DEFAULT_AUTH_FAILURE_LIMIT, DEFAULT_AUTH_FAILURE_WINDOW_MS } from '../lib/http/throttle.js';
import { createLogger, isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger } from '../lib/log.js';
import { readTls, tlsFilesFrom, type TlsFiles } from './tls.js';
import { isLoopback, unknownKeyWarnings } from './checks.js';

const NAME = 'salt-rest-wsgi';
const DEFAULT_HOST = '127.0.0.1'; // rest_wsgi binds localhost: credentials travel in clear text
/** Under systemd's usual stop timeouts (the README's unit: 30 s), so that we exit on our own first. */
const DEFAULT_SHUTDOWN_TIMEOUT_S = 25;
/** After the shutdown deadline, how long the requests cut short have to send their 503/504. */
const SHUTDOWN_GRACE_MS = 1000;

const USAGE = `Usage: ${NAME} [-c|--config FILE] [--port N] [--host ADDR] [--log-level LEVEL] [--log-format FORMAT] [--trust-proxy]
                      [--max-in-flight N] [--shutdown-timeout S] [--ssl-crt FILE --ssl-key FILE]

Salt's rest_wsgi API: POST a JSON list of lowstate items, get {"return": [...]}.
Settings come from the Salt master's config file, section rest_wsgi:
  rest_wsgi:
    port: 8001          # required (here or --port)
    host: 127.0.0.1     # default 127.0.0.1
    ssl_crt: /etc/pki/tls/certs/salt-api.crt   # HTTPS with ssl_key (as rest_cherrypy); SIGHUP reloads both
    ssl_key: /etc/pki/tls/private/salt-api.key # disable_ssl: true serves HTTP even with them
    max_request_body_size: 1048576
    trust_proxy: false  # true behind your proxy: log the client from X-Forwarded-For
    max_in_flight: 1024 # POSTs handled at once, then 503 (default: from the machine's memory)
    shutdown_timeout: ${DEFAULT_SHUTDOWN_TIMEOUT_S}  # seconds to finish running requests on SIGTERM
    max_result_bytes: 0 # what one sync item may hold of returns, bytes, then 507 (0: no ceiling)
    headers_timeout: ${DEFAULT_HEADERS_TIMEOUT_MS / 1000}   # seconds; also body_timeout (${DEFAULT_BODY_TIMEOUT_MS / 1000}), body_idle_timeout (${DEFAULT_BODY_IDLE_TIMEOUT_MS / 1000}),
                        # keepalive_timeout (${DEFAULT_KEEP_ALIVE_TIMEOUT_MS / 1000})
    auth_failure_limit: ${DEFAULT_AUTH_FAILURE_LIMIT}   # failed logins (401s) from one client address within
    auth_failure_window: ${DEFAULT_AUTH_FAILURE_WINDOW_MS / 1000}  # seconds, then its POSTs get 429; 0 turns it off

Options:
  -c, --config FILE    master config file, or a directory holding "master"
                       (default: $SALT_MASTER_CONFIG, else /etc/salt/master)
      --port N         port to listen on (overrides rest_wsgi: port)
      --host ADDR      address to listen on (overrides rest_wsgi: host)
  -l, --log-level L    ${LOG_LEVELS.join(', ')} (default info)
      --log-format F   text (default) or json (one JSON object a line)
      --trust-proxy    the access log's client is the right-most X-Forwarded-For
                       entry, the address your proxy saw (as rest_wsgi: trust_proxy)
      --max-in-flight N
                       POST requests handled at once; more get 503 (as rest_wsgi: max_in_flight)
      --shutdown-timeout S
                       on SIGTERM/SIGINT, wait up to S seconds for running requests
                       (default ${DEFAULT_SHUTDOWN_TIMEOUT_S}; as rest_wsgi: shutdown_timeout)
      --ssl-crt FILE, --ssl-key FILE
                       serve HTTPS with this certificate (PEM, chain after it) and key
                       (as rest_wsgi: ssl_crt and ssl_key); SIGHUP reads them again
  -h, --help           show this help
      --version        show the version
`;

/** A problem with how we were started: one line on stderr, exit 2. */
class UsageError extends Error {}

interface Settings {
  /** The master config, read once here and handed to the handler. */
  master: MasterOptions;
  port: number;
  host: string;
  maxBodyBytes: number;
  logLevel: (typeof LOG_LEVELS)[number];
  logFormat: LogFormat;
  trustProxy: boolean;
  maxInFlight: number;
  shutdownTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  bodyIdleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  authFailureLimit: number;
  authFailureWindowMs: number;
  /** HTTPS from these files; none: plain HTTP. */
  tls?: TlsFiles;
  /** Said once the logger exists: unknown rest_wsgi: keys. */
  warnings: string[];
}

function version(): string {
  // bin/ when run from source, dist/bin/ when built: the package root is one or two levels up.
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === NAME && pkg.version) return pkg.version;
    } catch {
      // try the next place
    }
  }
  return 'unknown';
}

function parsePort(value: unknown, where: string): number {
  const port = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`invalid port ${JSON.stringify(value)} (${where}): expected a number from 0 to 65535`);
  }
  return port;
}

/** A positive (or with `zero`, non-negative) number of seconds (fractions allowed) from a flag or `rest_wsgi:`, as ms. */
function secondsSetting(value: unknown, fallbackMs: number, name: string, file?: string, zero = false): number {
  if (value === undefined || value === null) return fallbackMs;
  const n = zero && (value === 0 || value === '0') ? 0 : positiveNumber(value);
  if (n === undefined) {
    const expected = zero ? 'a number of seconds, 0 or more' : 'a positive number of seconds';
    throw new UsageError(`invalid ${name} ${JSON.stringify(value)}${file ? ` in ${file}` : ''}: expected ${expected}`);
  }
  return secondsToMs(n);
}

const FLAGS = {
  config: { type: 'string', short: 'c' },
  port: { type: 'string' },
  host: { type: 'string' },
  'log-level': { type: 'string', short: 'l' },
  'log-format': { type: 'string' },
  'trust-proxy': { type: 'boolean' },
  'max-in-flight': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'ssl-crt': { type: 'string' },
  'ssl-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (see ${NAME} --help)`);
  }
}

function settingsFrom(argv: string[]): Settings | 'help' | 'version' {
  const values = parseFlags(argv);
  if (values.help) return 'help';
  if (values.version) return 'version';

  const logLevel = values['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) throw new UsageError(`invalid --log-level ${JSON.stringify(logLevel)}: one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = values['log-format'] ?? 'text';
  if (!isLogFormat(logFormat)) throw new UsageError(`invalid --log-format ${JSON.stringify(logFormat)}: one of ${LOG_FORMATS.join(', ')}`);

  // Salt's own commands take -c as the config directory (-c /etc/salt): accept that too.
  let configPath = values.config;
  if (configPath !== undefined && existsSync(configPath) && statSync(configPath).isDirectory()) {
    configPath = join(configPath, 'master');
  }
  const master = loadMasterConfig(configPath);
  const section = (master.rest_wsgi ?? {}) as Record<string, unknown>;

  let port: number;
  if (values.port !== undefined) port = parsePort(values.port, '--port');
  else if (section.port !== undefined && section.port !== null) port = parsePort(section.port, `rest_wsgi: port in ${master.conf_file}`);
  else {
    throw new UsageError(`no port configured: add "rest_wsgi: {port: 8001}" to ${master.conf_file}, or pass --port`);
  }
  const host = values.host ?? (typeof section.host === 'string' && section.host ? section.host : DEFAULT_HOST);
  const size = section.max_request_body_size;
  const maxBodyBytes = size === undefined || size === null ? DEFAULT_MAX_BODY_BYTES : Number(size);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new UsageError(`invalid rest_wsgi: max_request_body_size ${JSON.stringify(size)} in ${master.conf_file}`);
  }
  const trust = section.trust_proxy;
  if (trust !== undefined && trust !== null && typeof trust !== 'boolean') {
    throw new UsageError(`invalid rest_wsgi: trust_proxy ${JSON.stringify(trust)} in ${master.conf_file}: true or false`);
  }
  const trustProxy = values['trust-proxy'] ?? trust ?? false;

  const file = master.conf_file;
  const cap = values['max-in-flight'] ?? section.max_in_flight;
  const maxInFlight = cap === undefined || cap === null ? defaultMaxInFlight(maxBodyBytes) : Number(cap);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || (typeof cap === 'string' && !/^\s*\d+\s*$/.test(cap))) {
    const where =
      values['max-in-flight'] !== undefined
        ? `--max-in-flight ${JSON.stringify(cap)}`
        : `rest_wsgi: max_in_flight ${JSON.stringify(cap)} in ${file}`;
    throw new UsageError(`invalid ${where}: expected a positive integer`);
  }
  const failures = section.auth_failure_limit;
  const authFailureLimit =
    failures === undefined || failures === null
      ? DEFAULT_AUTH_FAILURE_LIMIT
      : typeof failures === 'string' && /^\s*\d+\s*$/.test(failures)
        ? Number(failures)
        : failures;
  if (typeof authFailureLimit !== 'number' || !Number.isInteger(authFailureLimit) || authFailureLimit < 0) {
    throw new UsageError(
      `invalid rest_wsgi: auth_failure_limit ${JSON.stringify(failures)} in ${file}: expected an integer, 0 (off) or more`,
    );
  }
  const shutdownTimeoutMs =
    values['shutdown-timeout'] !== undefined
      ? secondsSetting(values['shutdown-timeout'], 0, '--shutdown-timeout')
      : secondsSetting(section.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT_S * 1000, 'rest_wsgi: shutdown_timeout', file);
  return {
    master,
    port,
    host,
    maxBodyBytes,
    logLevel,
    logFormat,
    trustProxy,
    maxInFlight,
    shutdownTimeoutMs,
    headersTimeoutMs: secondsSetting(section.headers_timeout, DEFAULT_HEADERS_TIMEOUT_MS, 'rest_wsgi: headers_timeout', file),
    bodyTimeoutMs: secondsSetting(section.body_timeout, DEFAULT_BODY_TIMEOUT_MS, 'rest_wsgi: body_timeout', file),
    bodyIdleTimeoutMs: secondsSetting(section.body_idle_timeout, DEFAULT_BODY_IDLE_TIMEOUT_MS, 'rest_wsgi: body_idle_timeout', file),
    keepAliveTimeoutMs: secondsSetting(section.keepalive_timeout, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, 'rest_wsgi: keepalive_timeout', file),
    authFailureLimit,
    authFailureWindowMs: secondsSetting(
      section.auth_failure_window,
      DEFAULT_AUTH_FAILURE_WINDOW_MS,
      'rest_wsgi: auth_failure_window',
      file,
      true,
    ),
    tls: tlsFilesFrom(values, section, file),
    warnings: unknownKeyWarnings(section, file),
  };
}

function serve(settings: Settings, handler: RestWsgiHandler, logger: Logger, pem?: { cert: Buffer; key: Buffer }): void {
  const inFlight = new Set<http.ServerResponse>();
  let stopping = false;

  const onRequest: http.RequestListener = (req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    if (stopping) res.setHeader('Connection', 'close');
    handler(req, res);
  };
  // https.Server has node:http's request handling (and its timeouts) on TLS sockets.
  const server = (pem ? https.createServer(pem, onRequest) : http.createServer(onRequest)) as http.Server;
  // Slow clients can't hold connections: headers, then the whole request,
  // must come in time (the handler's body timeouts answer first, in JSON).
  applyServerTimeouts(server, {
    headersTimeoutMs: settings.headersTimeoutMs,
    requestTimeoutMs: settings.headersTimeoutMs + settings.bodyTimeoutMs + 5000,
    keepAliveTimeoutMs: settings.keepAliveTimeoutMs,
  });
  // A client that asks before uploading (curl does past 1 KiB) learns of a
  // 413 without sending the body.
  server.on('checkContinue', (req, res) => {
    if (!(Number(req.headers['content-length']) > settings.maxBodyBytes)) res.writeContinue();
    onRequest(req, res);
  });

  // Requests Node's parser rejects (bad framing, huge headers, too slow)
  // still get a JSON body, in the shape of every other answer.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout']
          : [400, 'Bad Request'];
    const body = JSON.stringify({ return: `${status}: ${reason}` });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  server.on('error', (err: NodeJS.ErrnoException) => {
    logger.error(`cannot listen on ${settings.host}:${settings.port}: ${err.code ?? err.message}`);
    handler.close();
    process.exit(1);
  });

  server.listen(settings.port, settings.host, () => {
    const address = server.address();
    const where = typeof address === 'object' && address ? address : { address: settings.host, port: settings.port };
    const host = where.address.includes(':') ? `[${where.address}]` : where.address;
    logger.info(`listening on ${pem ? 'https' : 'http'}://${host}:${where.port}/ (master config ${handler.master.conf_file})`);
    if (!pem && !isLoopback(settings.host)) {
      logger.warn(
        `serving ${settings.host} without TLS: credentials travel in clear; set rest_wsgi: ssl_crt and ssl_key, or keep 127.0.0.1 behind a TLS proxy`,
      );
    }
    const denied = eventBusProblem(handler.master, WAITING_CLIENTS);
    if (denied) {
      logger.error(`permission denied: ${denied.log} (README: "Permission denied")`);
    } else if (handler.master.ipc_mode !== 'tcp' && !isMasterRunning(handler.master)) {
      // With ipc_mode: tcp the master makes no socket file: nothing to tell from at start.
      logger.warn(`master not running at ${handler.master.sock_dir}: requests get 503 until it starts`);
    }
  });

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    const seconds = settings.shutdownTimeoutMs / 1000;
    // Answers still to come tell their clients not to send more on the connection.
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    // Past the deadline, the requests still waiting are cut short: closing the
    // master connections ends them with a 503 or 504 (their jobs go on on the
    // master), which they still send; then every connection is closed.
    const deadline = setTimeout(() => {
      logger.warn(`shutdown timeout (${seconds} s): ending ${inFlight.size} running request(s); their jobs go on on the master`);
      handler.close();
      setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
    }, settings.shutdownTimeoutMs).unref();
    server.close(() => {
      clearTimeout(deadline);
      // The ZeroMQ socket and the event bus connection: once they are closed
      // nothing is left, and the process exits by itself with status 0.
      handler.close();
      logger.info('stopped');
      setTimeout(() => {
        logger.warn('still holding handles after stopping: exiting anyway');
        process.exit(0);
      }, 2000).unref();
    });
    server.closeIdleConnections();
    // Said once the listening socket is closed: whoever reads it may count on new connections being refused.
    logger.info(`${signal}: stopping${inFlight.size ? ` after ${inFlight.size} running request(s) (at most ${seconds} s)` : ''}`);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  onHangup = () => {
    if (!settings.tls || !pem) {
      logger.info('SIGHUP: no TLS certificate to reload; nothing else is reread (restart to apply config changes)');
      return;
    }
    try {
      (server as unknown as https.Server).setSecureContext(readTls(settings.tls));
      logger.info(`SIGHUP: reloaded the TLS certificate ${settings.tls.cert} and key ${settings.tls.key} for new connections`);
    } catch (err) {
      logger.error(`SIGHUP: kept the current TLS certificate: ${(err as Error).message}`);
    }
  };
}

/** What SIGHUP does once serving; before that (while starting) nothing. */
let onHangup = () => {};

function main(argv: string[]): void {
  // SIGHUP (systemctl reload, certbot's deploy hook) must never kill us, as it would by default.
  process.on('SIGHUP', () => onHangup());
  let settings: ReturnType<typeof settingsFrom>;
  let handler: RestWsgiHandler;
  let logger: Logger;
  let pem: { cert: Buffer; key: Buffer } | undefined;
  try {
    settings = settingsFrom(argv);
    if (settings === 'help') {
      process.stdout.write(USAGE);
      return;
    }
    if (settings === 'version') {
      process.stdout.write(`${NAME} ${version()}\n`);
      return;
    }
    if (settings.tls) pem = readTls(settings.tls);
    const commandLogger = createLogger({ level: settings.logLevel, format: settings.logFormat });
    logger = commandLogger;
    for (const warning of settings.warnings) logger.warn(warning);
    handler = createHandler({
      master: settings.master,
      maxBodyBytes: settings.maxBodyBytes,
      logger,
      accessLog: (record) => commandLogger.access(record),
      trustProxy: settings.trustProxy,
      maxInFlight: settings.maxInFlight,
      bodyTimeoutMs: settings.bodyTimeoutMs,
      bodyIdleTimeoutMs: settings.bodyIdleTimeoutMs,
      authFailureLimit: settings.authFailureLimit,
      authFailureWindowMs: settings.authFailureWindowMs,
    });
  } catch (err) {
    // Usage and config problems: one line, no stack.
    process.stderr.write(`${NAME}: ${(err as Error).message.split('\n', 1)[0]}\n`);
    process.exit(2);
  }
  serve(settings, handler, logger, pem);
}

/**
 * gc() for the handler, which collects right after writing a large answer
 * (hundreds of MB of returns), so that the memory goes back to the system
 * at once rather than when V8 next feels like collecting.
 */
function exposeGc(): void {
  if (typeof (globalThis as { gc?: unknown }).gc === 'function') return;
  setFlagsFromString('--expose-gc');
  (globalThis as { gc?: unknown }).gc = runInNewContext('gc');
}

exposeGc();
main(process.argv.slice(2));
