/**
 * Every `rest_wsgi:` setting, once: its kind (how it is read and what a bad
 * value is told), default, command-line flag, the createHandler option it
 * feeds and one line of help. The command's parsing, its unknown-key
 * warning, `--help`, createHandler's reading of the master config and the
 * README's settings table all come from this table, so that a key can't be
 * known in one place and unknown in another (the shape of Fastify's
 * lib/config-validator: one place says what is valid).
 */
import { totalmem } from 'node:os';
import type { HandlerOptions } from './handler.js';
import { ConfigError } from '../salt/errors.js';
import { nonNegativeInteger, positiveInteger, positiveNumber, secondsToMs } from '../numbers.js';
import { DEFAULT_AUTH_FAILURE_LIMIT, DEFAULT_AUTH_FAILURE_WINDOW_MS } from './throttle.js';
import { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS } from './server-timeouts.js';
import { DEFAULT_MAX_UNSENT_BYTES } from './ndjson.js';
import { DEFAULT_SEND_TIMEOUT_MS } from './response.js';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;
export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 10_000;
/** Under systemd's usual stop timeouts (the README's unit: 30 s), so that the command exits on its own first. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;
/** rest_wsgi binds localhost: credentials travel in clear text. */
export const DEFAULT_HOST = '127.0.0.1';

/**
 * The default cap on requests in flight, from the machine's memory. A
 * request holds at most its body and the parsed copy of it (a few times
 * maxBodyBytes); a synchronous one then mostly waits for the master (a
 * socket, a timer, a subscription: a few KB, no CPU). One request per 8
 * body-sized slices of RAM, between 64 and 4096: 1024 on an 8 GiB machine
 * with the 1 MiB default body.
 */
export function defaultMaxInFlight(maxBodyBytes = DEFAULT_MAX_BODY_BYTES): number {
  const perRequest = 8 * Math.max(maxBodyBytes, 64 * 1024);
  return Math.min(4096, Math.max(64, Math.floor(totalmem() / perRequest)));
}

/** How a kind of value is read (from YAML or from a flag's text), and what a bad one is told. */
interface Kind {
  read(value: unknown): unknown;
  expected: string;
}

/** Positive seconds (fractions allowed) as whole ms. */
function msOfSeconds(value: unknown): number | undefined {
  const n = positiveNumber(value);
  return n === undefined ? undefined : secondsToMs(n);
}

/** rest_cherrypy's ssl_cert_reqs values (Python's ssl.CERT_* names). */
export const CERT_REQS: readonly string[] = ['CERT_NONE', 'CERT_OPTIONAL', 'CERT_REQUIRED'];

const KINDS = {
  port: {
    read: (v) => {
      const n = nonNegativeInteger(v);
      return n !== undefined && n <= 65535 ? n : undefined;
    },
    expected: 'expected a number from 0 to 65535',
  },
  address: { read: (v) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined), expected: 'expected an address' },
  path: { read: (v) => (typeof v === 'string' && v !== '' ? v : undefined), expected: 'expected a file path' },
  boolean: { read: (v) => (typeof v === 'boolean' ? v : undefined), expected: 'true or false' },
  bytes: { read: (v) => nonNegativeInteger(v), expected: 'expected a whole number of bytes, 0 or more' },
  count: { read: (v) => positiveInteger(v), expected: 'expected a positive integer' },
  countOrOff: { read: (v) => nonNegativeInteger(v), expected: 'expected an integer, 0 (off) or more' },
  seconds: { read: (v) => msOfSeconds(v), expected: 'expected a positive number of seconds' },
  certReqs: {
    read: (v) => (typeof v === 'string' && CERT_REQS.includes(v.toUpperCase()) ? v.toUpperCase() : undefined),
    expected: `one of ${['CERT_NONE', 'CERT_OPTIONAL', 'CERT_REQUIRED'].join(', ')}`,
  },
  names: {
    // A YAML list, or (a flag) names separated by commas.
    read: (v) => {
      const list = typeof v === 'string' ? v.split(',').map((n) => n.trim()) : v;
      return Array.isArray(list) && list.length > 0 && list.every((n) => typeof n === 'string' && n !== '') ? list : undefined;
    },
    expected: 'expected a list of names',
  },
  secondsOrOff: {
    read: (v) => (v === 0 || v === '0' ? 0 : msOfSeconds(v)),
    expected: 'expected a number of seconds, 0 or more',
  },
} satisfies Record<string, Kind>;

export interface Setting {
  /** The key under `rest_wsgi:`. */
  readonly key: string;
  readonly kind: keyof typeof KINDS;
  /** What it is when absent, as read (ms for seconds); none: absent stays absent. */
  readonly default?: number | string | boolean;
  /** The default as --help and the README say it, where its value doesn't (shownDefault). */
  readonly shown?: string;
  /** The command-line flag that overrides it (`--port`). */
  readonly flag?: string;
  /** The createHandler option it feeds. */
  readonly option?: keyof HandlerOptions;
  readonly help: string;
}

export const SETTINGS: readonly Setting[] = [
  { key: 'port', kind: 'port', shown: 'required', flag: 'port', help: 'port to listen on (here or --port)' },
  { key: 'host', kind: 'address', default: DEFAULT_HOST, flag: 'host', help: 'address to listen on' },
  { key: 'ssl_crt', kind: 'path', shown: 'none', flag: 'ssl-crt', help: "HTTPS with ssl_key (rest_cherrypy's keys); SIGHUP reloads both" },
  { key: 'ssl_key', kind: 'path', shown: 'none', flag: 'ssl-key', help: 'the private key of ssl_crt' },
  { key: 'ssl_chain', kind: 'path', shown: 'none', help: 'certificates sent after ssl_crt' },
  { key: 'disable_ssl', kind: 'boolean', default: false, help: 'true: serve HTTP even with ssl_crt and ssl_key' },
  {
    key: 'ssl_ca_certs',
    kind: 'path',
    shown: 'none',
    help: 'CA certificates (a file, or a directory of them) that client certificates must chain to; SIGHUP reloads',
  },
  {
    key: 'ssl_cert_reqs',
    kind: 'certReqs',
    default: 'CERT_NONE',
    help: 'client certificates: CERT_NONE, CERT_OPTIONAL (verified if sent) or CERT_REQUIRED (no handshake without)',
  },
  {
    key: 'ssl_allowed_cn',
    kind: 'names',
    shown: 'any',
    option: 'allowedCn',
    help: 'subject CNs of the client certificates served; others get 403',
  },
  {
    key: 'max_request_body_size',
    kind: 'bytes',
    default: DEFAULT_MAX_BODY_BYTES,
    shown: '1048576 (1 MiB)',
    option: 'maxBodyBytes',
    help: 'bytes of a request body, then 413',
  },
  {
    key: 'trust_proxy',
    kind: 'boolean',
    default: false,
    flag: 'trust-proxy',
    option: 'trustProxy',
    help: 'behind your proxy: the client is the right-most X-Forwarded-For entry',
  },
  {
    key: 'max_in_flight',
    kind: 'count',
    shown: 'RAM / (8 × body limit), 64 to 4096',
    flag: 'max-in-flight',
    option: 'maxInFlight',
    help: 'POSTs handled at once, then 503',
  },
  {
    key: 'max_result_bytes',
    kind: 'bytes',
    default: 0,
    shown: '0 (no ceiling)',
    option: 'maxResultBytes',
    help: 'bytes of returns one synchronous item may hold, then 507',
  },
  {
    key: 'ndjson_max_unsent_bytes',
    kind: 'bytes',
    default: DEFAULT_MAX_UNSENT_BYTES,
    shown: '8388608 (8 MiB)',
    option: 'ndjsonMaxUnsentBytes',
    help: "bytes of a streamed answer's lines waiting for a slow reader, then a 507 line ends it (0: no cap)",
  },
  {
    key: 'send_timeout',
    kind: 'seconds',
    default: DEFAULT_SEND_TIMEOUT_MS,
    option: 'sendTimeoutMs',
    help: 'an answer (JSON, YAML or streamed) whose reader takes nothing of it for this long is disconnected',
  },
  {
    key: 'headers_timeout',
    kind: 'seconds',
    default: DEFAULT_HEADERS_TIMEOUT_MS,
    help: 'for the request headers, then 408',
  },
  {
    key: 'body_timeout',
    kind: 'seconds',
    default: DEFAULT_BODY_TIMEOUT_MS,
    option: 'bodyTimeoutMs',
    help: 'for the whole body, then 408',
  },
  {
    key: 'body_idle_timeout',
    kind: 'seconds',
    default: DEFAULT_BODY_IDLE_TIMEOUT_MS,
    option: 'bodyIdleTimeoutMs',
    help: 'between two pieces of the body, then 408',
  },
  {
    key: 'keepalive_timeout',
    kind: 'seconds',
    default: DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    help: 'an idle connection is closed after it',
  },
  {
    key: 'shutdown_timeout',
    kind: 'seconds',
    default: DEFAULT_SHUTDOWN_TIMEOUT_MS,
    flag: 'shutdown-timeout',
    help: 'on SIGTERM/SIGINT, what running requests get to finish',
  },
  {
    key: 'auth_failure_limit',
    kind: 'countOrOff',
    default: DEFAULT_AUTH_FAILURE_LIMIT,
    option: 'authFailureLimit',
    help: 'failed logins (passwords the master refused) of one client address in the window, then 429 (0: off)',
  },
  {
    key: 'auth_failure_window',
    kind: 'secondsOrOff',
    default: DEFAULT_AUTH_FAILURE_WINDOW_MS,
    option: 'authFailureWindowMs',
    help: 'the sliding window of auth_failure_limit (0: off)',
  },
  {
    key: 'metrics_port',
    kind: 'port',
    shown: 'none (off)',
    flag: 'metrics-port',
    help: 'serve /metrics, /healthz and /readyz on this port, never on the API port',
  },
  { key: 'metrics_host', kind: 'address', default: DEFAULT_HOST, help: 'address of the metrics listener' },
  {
    key: 'audit_log',
    kind: 'path',
    shown: 'the log (stderr)',
    help: 'file of the audit lines, one per lowstate item; reopened on SIGHUP',
  },
  {
    key: 'audit_args',
    kind: 'boolean',
    default: false,
    option: 'auditArgs',
    help: "audit lines carry the items' arguments, secret-looking values masked",
  },
];

export const SETTING_KEYS: readonly string[] = SETTINGS.map((setting) => setting.key);

/** The values as read (ms for seconds), defaults applied; flags (their text, or true) win over the section. */
export type SettingValues = Record<string, unknown>;

/**
 * The values of `section` as read, each refusal a ConfigError naming the key
 * (or flag), where it came from and what it takes.
 */
export function readSettings(section: Record<string, unknown>, file: string, flags: Record<string, unknown> = {}): SettingValues {
  const values: SettingValues = {};
  for (const setting of SETTINGS) {
    const flagged = setting.flag !== undefined && flags[setting.flag] !== undefined;
    const given = flagged ? flags[setting.flag as string] : section[setting.key];
    if (given === undefined || given === null) {
      values[setting.key] = setting.default;
      continue;
    }
    const kind = KINDS[setting.kind];
    const value = kind.read(given);
    if (value === undefined) {
      const where = flagged
        ? `--${setting.flag} ${JSON.stringify(given)}`
        : `rest_wsgi: ${setting.key} ${JSON.stringify(given)} in ${file}`;
      throw new ConfigError(`invalid ${where}: ${kind.expected}`);
    }
    values[setting.key] = value;
  }
  return values;
}

/** The createHandler options of the values that feed one. */
export function handlerOptionsOf(values: SettingValues): Partial<HandlerOptions> {
  const options: Record<string, unknown> = {};
  for (const setting of SETTINGS) if (setting.option && values[setting.key] !== undefined) options[setting.option] = values[setting.key];
  return options as Partial<HandlerOptions>;
}

/** The default as people read it: seconds as seconds, else as written, or what `shown` says. */
export function shownDefault(setting: Setting): string {
  if (setting.shown !== undefined) return setting.shown;
  if (setting.kind.startsWith('seconds')) return `${(setting.default as number) / 1000} s`;
  return String(setting.default);
}

/** The README's settings table (test/http/settings.test.ts holds the README to it). */
export function settingsMarkdown(): string {
  const rows = SETTINGS.map(
    (s) => `| \`${s.key}\` | ${s.flag ? `\`--${s.flag}\`` : ''} | ${s.option ? `\`${s.option}\`` : ''} | ${shownDefault(s)} | ${s.help} |`,
  );
  return ['| `rest_wsgi:` | flag | createHandler option | default | what it is |', '|---|---|---|---|---|', ...rows].join('\n');
}

/** The `rest_wsgi:` part of --help: each key with its default and help. */
export function settingsHelp(): string {
  return SETTINGS.map((s) => `    ${`${s.key}:`.padEnd(26)}${shownDefault(s)}; ${s.help}`).join('\n');
}
