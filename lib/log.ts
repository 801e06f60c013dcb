/**
 * A tiny leveled logger: one plain line per message on stderr.
 *
 * Its shape, `{debug, info, warn, error}` taking one string, is what the
 * handler and the dispatcher accept, so pino, console or a test's recorder
 * fit in its place.
 */

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

export interface LoggerOptions {
  /** Messages below this level are dropped. Default `info`. */
  level?: LogLevel;
  /** Where lines go. Default process.stderr. */
  stream?: { write(line: string): unknown };
  /** Prefix each line with an ISO timestamp. Default true. */
  timestamps?: boolean;
}

/**
 * Control characters (newlines first of all) are escaped so that one message
 * is always one line: an error text or a request path cannot forge log lines.
 */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const stream = options.stream ?? process.stderr;
  const timestamps = options.timestamps ?? true;
  const at = (level: LogLevel) => {
    if (LOG_LEVELS.indexOf(level) > threshold) return () => {};
    const label = level.toUpperCase().padEnd(5);
    return (msg: string) => {
      const prefix = timestamps ? `${new Date().toISOString()} ${label}` : label;
      stream.write(`${prefix} ${oneLine(String(msg))}\n`);
    };
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

/** A logger that drops everything (the handler's default when none is given). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface AccessRecord {
  method: string;
  /** The request path; its query string is never logged (it could carry credentials). */
  url: string;
  status: number;
  /** Body bytes sent. */
  bytes: number;
  durationMs: number;
  client: string;
}

/**
 * One access-log line, logfmt style:
 * `access method=POST path=/ status=200 bytes=89 duration_ms=12.3 client=127.0.0.1`.
 * Never a body, a header or a query string: those may hold passwords or tokens.
 */
export function formatAccess(record: AccessRecord): string {
  const path = record.url.split('?', 1)[0] || '/';
  return (
    `access method=${logfmtValue(record.method)} path=${logfmtValue(path)} status=${record.status}` +
    ` bytes=${record.bytes} duration_ms=${record.durationMs.toFixed(1)} client=${logfmtValue(record.client)}`
  );
}

function logfmtValue(value: string): string {
  return /^[\x21\x23-\x3c\x3e-\x7e]+$/.test(value) ? value : JSON.stringify(value);
}
