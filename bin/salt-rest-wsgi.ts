#!/usr/bin/env node
/**
 * salt-rest-wsgi: serve the handler on node:http, configured from the Salt
 * master's config file as salt-api does (its `rest_wsgi:` section).
 */
import http from 'node:http';
import https from 'node:https';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHandler, type RestWsgiHandler } from '../lib/http/handler.js';
import { applyServerTimeouts } from '../lib/http/server-timeouts.js';
import { handlerOptionsOf, readSettings, SETTINGS, settingsHelp, type SettingValues } from '../lib/http/settings.js';
import { loadMasterConfig, type MasterOptions } from '../lib/salt/config.js';
import { eventBusProblem, isMasterRunning } from '../lib/salt/master-sockets.js';
import { WAITING_CLIENTS } from '../lib/clients/table.js';
import {
  createLogger,
  isLogFormat,
  isLogLevel,
  LOG_FORMATS,
  LOG_LEVELS,
  type CommandLogger,
  type LogFormat,
  type Logger,
} from '../lib/log.js';
import { readTls, tlsFilesFrom, withClientCerts, type TlsFiles, type TlsMaterial } from './tls.js';
import { AuditSink, serveMetrics, stopMetrics } from './operations.js';
import type { TLSSocket } from 'node:tls';
import { isLoopback, unknownKeyWarnings } from './checks.js';
import { NAME, version, versionsReport } from './versions.js';
import { exposeGc, feedbackFromFirstCall } from './v8-flags.js';

/** After the shutdown deadline, how long the requests cut short have to send their 503/504. */
const SHUTDOWN_GRACE_MS = 1000;

/** The flags of the command itself; those of `rest_wsgi:` settings come from their table (lib/http/settings.ts). */
const COMMAND_FLAGS = {
  config: { type: 'string', short: 'c' },
  'log-level': { type: 'string', short: 'l' },
  'log-format': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  'versions-report': { type: 'boolean', short: 'V' },
} as const;

const FLAGS = {
  ...COMMAND_FLAGS,
  ...Object.fromEntries(
    SETTINGS.filter((s) => s.flag).map((s) => [s.flag as string, { type: s.kind === 'boolean' ? 'boolean' : 'string' } as const]),
  ),
} as Record<string, { type: 'string' | 'boolean'; short?: string }>;

function usage(): string {
  const flags = SETTINGS.filter((s) => s.flag).map((s) => {
    const name = `--${s.flag}${s.kind === 'boolean' ? '' : ' V'}`;
    return `      ${name.padEnd(24)}as rest_wsgi: ${s.key}`;
  });
  return `Usage: ${NAME} [-c|--config FILE] [options]

Salt's rest_wsgi API: POST a JSON list of lowstate items, get {"return": [...]}.
Settings come from the Salt master's config file, section rest_wsgi: (seconds may have fractions)
${settingsHelp()}

Options:
  -c, --config FILE           master config file, or a directory holding "master"
                              (default: $SALT_MASTER_CONFIG, else /etc/salt/master)
  -l, --log-level L           ${LOG_LEVELS.join(', ')} (default info)
      --log-format F          text (default) or json (one JSON object a line)
${flags.join('\n')}
  -h, --help                  show this help
      --version               show the version
  -V, --versions-report       show the version, the Salt lines and transports it speaks, and its dependencies
`;
}

/** A problem with how we were started: one line on stderr, exit 2. */
class UsageError extends Error {}

interface Settings {
  /** The master config, read once here and handed to the handler. */
  master: MasterOptions;
  /** The `rest_wsgi:` settings as read, flags applied (lib/http/settings.ts). */
  values: SettingValues;
  port: number;
  host: string;
  logLevel: (typeof LOG_LEVELS)[number];
  logFormat: LogFormat;
  /** HTTPS from these files; none: plain HTTP. */
  tls?: TlsFiles;
  /** Said once the logger exists: unknown rest_wsgi: keys. */
  warnings: string[];
}

function parseFlags(argv: string[]): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (see ${NAME} --help)`);
  }
}

function settingsFrom(argv: string[]): Settings | 'help' | 'version' | 'versions-report' {
  const flags = parseFlags(argv);
  if (flags.help) return 'help';
  if (flags['versions-report']) return 'versions-report';
  if (flags.version) return 'version';

  const logLevel = flags['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) throw new UsageError(`invalid --log-level ${JSON.stringify(logLevel)}: one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = flags['log-format'] ?? 'text';
  if (!isLogFormat(logFormat)) throw new UsageError(`invalid --log-format ${JSON.stringify(logFormat)}: one of ${LOG_FORMATS.join(', ')}`);

  // Salt's own commands take -c as the config directory (-c /etc/salt): accept that too.
  let configPath = flags.config as string | undefined;
  if (configPath !== undefined && existsSync(configPath) && statSync(configPath).isDirectory()) {
    configPath = join(configPath, 'master');
  }
  const master = loadMasterConfig(configPath);
  const section = (master.rest_wsgi ?? {}) as Record<string, unknown>;
  const values = readSettings(section, master.conf_file, flags);
  if (values.port === undefined) {
    throw new UsageError(`no port configured: add "rest_wsgi: {port: 8001}" to ${master.conf_file}, or pass --port`);
  }
  return {
    master,
    values,
    port: values.port as number,
    host: values.host as string,
    logLevel,
    logFormat,
    tls: withClientCerts(
      tlsFilesFrom(flags as { 'ssl-crt'?: string; 'ssl-key'?: string }, section, master.conf_file),
      values,
      master.conf_file,
    ),
    warnings: unknownKeyWarnings(section, master.conf_file),
  };
}

function serve(settings: Settings, handler: RestWsgiHandler, logger: CommandLogger, audit: AuditSink, pem?: TlsMaterial): void {
  const inFlight = new Set<http.ServerResponse>();
  let stopping = false;
  const onRequest: http.RequestListener = (req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    if (stopping) res.setHeader('Connection', 'close');
    handler(req, res);
  };
  const server = createServer(settings, onRequest, pem);
  server.on('error', (err: NodeJS.ErrnoException) => {
    logger.error(`cannot listen on ${settings.host}:${settings.port}: ${err.code ?? err.message}`);
    handler.close();
    process.exit(1);
  });
  server.listen(settings.port, settings.host, () => sayListening(server, settings, handler, logger, pem !== undefined));
  const metricsServer = serveMetrics(settings.values, handler, logger);

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    stopMetrics(metricsServer);
    // Requests still running get their audit lines: the file is closed once they all ended.
    server.once('close', () => audit.close());
    stopServing(server, inFlight, settings.values.shutdown_timeout as number, handler, logger, signal);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  onHangup = () => {
    reloadTls(server, settings, logger, pem !== undefined);
    audit.reopen();
  };
}

/** The node:http (or, with a certificate, node:https) server, with its timeouts and its answers to what never reaches the handler. */
function createServer(settings: Settings, onRequest: http.RequestListener, pem?: TlsMaterial): http.Server {
  const v = settings.values as Record<string, number>;
  // https.Server has node:http's request handling (and its timeouts) on TLS sockets.
  const server = (pem ? https.createServer(pem, onRequest) : http.createServer(onRequest)) as http.Server;
  // CERT_OPTIONAL: a certificate is not asked to be there, but one that is must verify (as Python's ssl does).
  if (pem?.requestCert && !pem.rejectUnauthorized) {
    server.on('secureConnection', (socket: TLSSocket) => {
      if (!socket.authorized && socket.getPeerCertificate()?.subject) socket.destroy();
    });
  }
  // Slow clients can't hold connections: headers, then the whole request,
  // must come in time (the handler's body timeouts answer first, in JSON).
  applyServerTimeouts(server, {
    headersTimeoutMs: v.headers_timeout,
    requestTimeoutMs: v.headers_timeout + v.body_timeout + 5000,
    keepAliveTimeoutMs: v.keepalive_timeout,
  });
  // A client that asks before uploading (curl does past 1 KiB) learns of a
  // 413 without sending the body.
  server.on('checkContinue', (req, res) => {
    if (!(Number(req.headers['content-length']) > v.max_request_body_size)) res.writeContinue();
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
  return server;
}

/** Where we listen, and what an operator should know at once: no TLS off loopback, a master we can't reach. */
function sayListening(server: http.Server, settings: Settings, handler: RestWsgiHandler, logger: Logger, tls: boolean): void {
  const address = server.address();
  const where = typeof address === 'object' && address ? address : { address: settings.host, port: settings.port };
  const host = where.address.includes(':') ? `[${where.address}]` : where.address;
  logger.info(`listening on ${tls ? 'https' : 'http'}://${host}:${where.port}/ (master config ${handler.master.conf_file})`);
  if (!tls && !isLoopback(settings.host)) {
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
}

/**
 * SIGTERM/SIGINT: no new connections; running requests get `shutdownMs` to
 * finish, then are cut short (their jobs go on on the master).
 */
function stopServing(
  server: http.Server,
  inFlight: Set<http.ServerResponse>,
  shutdownMs: number,
  handler: RestWsgiHandler,
  logger: Logger,
  signal: NodeJS.Signals,
): void {
  const seconds = shutdownMs / 1000;
  // Answers still to come tell their clients not to send more on the connection.
  for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
  // Past the deadline, the requests still waiting are cut short: closing the
  // master connections ends them with a 503 or 504 (their jobs go on on the
  // master), which they still send; then every connection is closed.
  const deadline = setTimeout(() => {
    logger.warn(`shutdown timeout (${seconds} s): ending ${inFlight.size} running request(s); their jobs go on on the master`);
    handler.close();
    setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
  }, shutdownMs).unref();
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
}

/** SIGHUP: the certificate and key are read again for new connections; nothing else is. */
function reloadTls(server: http.Server, settings: Settings, logger: Logger, tls: boolean): void {
  if (!settings.tls || !tls) {
    logger.info('SIGHUP: no TLS certificate to reload; nothing else is reread (restart to apply config changes)');
    return;
  }
  try {
    const { cert, key, ca } = readTls(settings.tls);
    (server as unknown as https.Server).setSecureContext({ cert, key, ca });
    const cas = settings.tls.ca ? ` and the CA certificates ${settings.tls.ca}` : '';
    logger.info(`SIGHUP: reloaded the TLS certificate ${settings.tls.cert} and key ${settings.tls.key}${cas} for new connections`);
  } catch (err) {
    logger.error(`SIGHUP: kept the current TLS certificate: ${(err as Error).message}`);
  }
}

/** What SIGHUP does once serving; before that (while starting) nothing. */
let onHangup = () => {};

function main(argv: string[]): void {
  // SIGHUP (systemctl reload, certbot's deploy hook) must never kill us, as it would by default.
  process.on('SIGHUP', () => onHangup());
  let settings: ReturnType<typeof settingsFrom>;
  let handler: RestWsgiHandler;
  let logger: CommandLogger;
  let audit: AuditSink;
  let pem: { cert: Buffer; key: Buffer } | undefined;
  try {
    settings = settingsFrom(argv);
    if (settings === 'help') {
      process.stdout.write(usage());
      return;
    }
    if (settings === 'version' || settings === 'versions-report') {
      process.stdout.write(settings === 'version' ? `${NAME} ${version()}\n` : versionsReport());
      return;
    }
    if (settings.tls) pem = readTls(settings.tls);
    const commandLogger = createLogger({ level: settings.logLevel, format: settings.logFormat });
    logger = commandLogger;
    for (const warning of settings.warnings) logger.warn(warning);
    audit = new AuditSink(settings.values.audit_log as string | undefined, settings.logFormat, commandLogger);
    handler = createHandler({
      ...handlerOptionsOf(settings.values),
      master: settings.master,
      logger,
      accessLog: (record) => commandLogger.access(record),
      auditLog: audit.write,
    });
  } catch (err) {
    // Usage and config problems: one line, no stack.
    process.stderr.write(`${NAME}: ${(err as Error).message.split('\n', 1)[0]}\n`);
    process.exit(2);
  }
  serve(settings, handler, logger, audit, pem);
}

exposeGc();
feedbackFromFirstCall();
main(process.argv.slice(2));
