/**
 * A tiny leveled logger: one line per message on stderr, plain text or JSON.
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
  /** A logger whose every line carries `fields` (the request's id): JSON fields, or ` key=value` after the text. */
  child?(fields: LogFields): Logger;
}

/** Fields every line of a child logger carries; undefined ones are left out. */
export type LogFields = Readonly<Record<string, string | undefined>>;

/**
 * `logger` with `fields` on every line: its own child() when it has one,
 * else each message followed by the fields in logfmt (a recorder, console).
 */
export function withFields(logger: Logger, fields: LogFields): Logger {
  if (logger.child) return logger.child(fields);
  const suffix = logfmtFields(fields);
  if (suffix === '') return logger;
  return {
    debug: (msg) => logger.debug(msg + suffix),
    info: (msg) => logger.info(msg + suffix),
    warn: (msg) => logger.warn(msg + suffix),
    error: (msg) => logger.error(msg + suffix),
  };
}

/** ` key=value` for each field that is set. */
export function logfmtFields(fields: LogFields): string {
  let text = '';
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) text += ` ${key}=${logfmtValue(value)}`;
  return text;
}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function isLogFormat(value: unknown): value is LogFormat {
  return typeof value === 'string' && (LOG_FORMATS as readonly string[]).includes(value);
}

export interface LoggerOptions {
  /** Messages below this level are dropped. Default `info`. */
  level?: LogLevel;
  /** Where lines go. Default process.stderr. */
  stream?: { write(line: string): unknown };
  /** Prefix each line with an ISO timestamp (`time` in JSON). Default true. */
  timestamps?: boolean;
  /**
   * `text`: `2026-11-22T18:50:37.123Z INFO  message`.
   * `json`: `{"time":"2026-11-22T18:50:37.123Z","level":"info","msg":"message"}`,
   * one object a line, for log collectors. Default `text`.
   */
  format?: LogFormat;
}

/** The command's logger: the handler's Logger plus structured access records. */
export interface CommandLogger extends Logger {
  /** One access-log entry at level info: a `formatAccess` line, or its fields in JSON. */
  access(record: AccessRecord): void;
  /** One structured entry at level info: `msg key=value...`, or `msg` and the fields in JSON (the audit lines). */
  entry(msg: string, fields: Readonly<Record<string, string | number>>): void;
  child(fields: LogFields): CommandLogger;
}

/**
 * Control characters (newlines first of all) are escaped so that one message
 * is always one line: an error text or a request path cannot forge log lines.
 */
export function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return unicodeEscape(c);
  });
}

/** `\uXXXX` for one UTF-16 unit: what JSON.stringify leaves as it is and a log line must not hold. */
function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

export function createLogger(options: LoggerOptions = {}, fields: LogFields = {}): CommandLogger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const stream = options.stream ?? process.stderr;
  const timestamps = options.timestamps ?? true;
  const json = options.format === 'json';
  const suffix = logfmtFields(fields);
  const defined = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
  const enabled = (level: LogLevel) => LOG_LEVELS.indexOf(level) <= threshold;
  const write = (level: LogLevel, msg: string, more?: Record<string, unknown>) => {
    if (json) {
      const entry = { ...(timestamps ? { time: new Date().toISOString() } : {}), level, msg: String(msg), ...more, ...defined };
      stream.write(`${jsonLine(entry)}\n`);
    } else {
      const label = level.toUpperCase().padEnd(5);
      const prefix = timestamps ? `${new Date().toISOString()} ${label}` : label;
      stream.write(`${prefix} ${oneLine(String(msg))}${suffix}\n`);
    }
  };
  const at = (level: LogLevel) => (enabled(level) ? (msg: string) => write(level, msg) : () => {});
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => createLogger(options, { ...fields, ...more }),
    entry(msg, more) {
      if (!enabled('info')) return;
      if (json) return write('info', msg, more);
      write(
        'info',
        msg +
          Object.entries(more)
            .map(([k, v]) => ` ${k}=${typeof v === 'number' ? v : logfmtValue(v)}`)
            .join(''),
      );
    },
    access(record) {
      if (!enabled('info')) return;
      if (!json) return write('info', formatAccess(record));
      write('info', 'access', accessFields(record));
    },
  };
}

/** An access record's JSON fields. */
function accessFields(record: AccessRecord): Record<string, unknown> {
  return {
    method: record.method,
    path: accessPath(record.url),
    status: record.status,
    bytes: record.bytes,
    duration_ms: Math.round(record.durationMs * 10) / 10,
    client: record.client,
    ...(record.cn !== undefined ? { cn: record.cn } : {}),
    ...(record.requestId !== undefined ? { request_id: record.requestId } : {}),
    ...(record.traceId !== undefined ? { trace_id: record.traceId } : {}),
  };
}

/**
 * JSON.stringify already escapes every control character; U+2028 and U+2029
 * are escaped too, since some readers take them for line breaks.
 */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(/[\u2028\u2029]/g, unicodeEscape);
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
  /** The subject CN of the client's verified certificate (mTLS). */
  cn?: string;
  /** The request's id (lib/http/request-id.ts) and its traceparent's trace id. */
  requestId?: string;
  traceId?: string;
}

/**
 * One access-log line, logfmt style:
 * `access method=POST path=/ status=200 bytes=89 duration_ms=12.3 client=127.0.0.1`.
 * Never a body, a header or a query string: those may hold passwords or tokens.
 */
export function formatAccess(record: AccessRecord): string {
  const path = accessPath(record.url);
  return (
    `access method=${logfmtValue(record.method)} path=${logfmtValue(path)} status=${record.status}` +
    ` bytes=${record.bytes} duration_ms=${record.durationMs.toFixed(1)} client=${logfmtValue(record.client)}` +
    logfmtFields({ cn: record.cn, request_id: record.requestId, trace_id: record.traceId })
  );
}

/** The path of a request URL, never its query string. */
function accessPath(url: string): string {
  return url.split('?', 1)[0] || '/';
}

/**
 * A logfmt value: as it is when it is printable ASCII without `"`, `=` or a
 * space, else a JSON string. Either way one line: JSON.stringify escapes
 * the C0 controls, and DEL, U+2028 and U+2029 are escaped here, so that a
 * line made of these values needs no oneLine() pass of its own.
 */
export function logfmtValue(value: string): string {
  if (/^[\x21\x23-\x3c\x3e-\x7e]+$/.test(value)) return value;
  return JSON.stringify(value).replace(/[\u007f\u2028\u2029]/g, unicodeEscape);
}
