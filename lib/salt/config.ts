/**
 * The master's configuration, read as Salt reads it (salt/config/__init__.py:
 * master_config): the YAML file, its includes, Salt's defaults for the
 * options we use, and root_dir prepended to the directories.
 *
 * Two deliberate differences from Salt: a missing or unreadable config file is
 * an error here (Salt falls back to defaults silently, which for an API server
 * means talking to the wrong sockets), and so is invalid YAML in an included
 * file (Salt logs it and skips the file).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import YAML from 'yaml';
import { ConfigError } from './errors.js';
import { isPlainObject } from '../objects.js';

/** The master options this server uses, after defaults (DEFAULT_MASTER_OPTS). */
export interface MasterOptions {
  conf_file: string;
  root_dir: string;
  interface: string;
  ret_port: number;
  sock_dir: string;
  cachedir: string;
  pki_dir: string;
  ipc_mode: string; // 'ipc' | 'tcp'
  tcp_master_pub_port: number;
  transport: string; // 'zeromq' | 'tcp' | 'ws'
  timeout: number; // seconds (may be fractional in tests)
  gather_job_timeout: number; // seconds
  netapi_enable_clients: string[];
  netapi_allow_raw_shell: boolean;
  rest_wsgi?: { port?: number; host?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** Where Salt looks when nothing else is said (salt.syspaths.CONFIG_DIR + 'master'). */
export const DEFAULT_MASTER_CONFIG = '/etc/salt/master';

/**
 * Salt's DEFAULT_MASTER_OPTS for every option this server reads (Linux
 * syspaths: ROOT_DIR '/', SOCK_DIR /var/run/salt, CACHE_DIR /var/cache/salt,
 * LIB_STATE_DIR = CONFIG_DIR /etc/salt).
 */
export const MASTER_DEFAULTS = {
  conf_file: DEFAULT_MASTER_CONFIG,
  root_dir: '/',
  interface: '0.0.0.0',
  ret_port: 4506,
  sock_dir: '/var/run/salt/master',
  cachedir: '/var/cache/salt/master',
  pki_dir: '/etc/salt/pki/master',
  ipc_mode: 'ipc',
  tcp_master_pub_port: 4512,
  transport: 'zeromq',
  timeout: 5,
  gather_job_timeout: 10,
  netapi_enable_clients: [] as string[],
  netapi_allow_raw_shell: false,
  default_include: 'master.d/*.conf',
} as const;

/** The directory options apply_master_config passes to prepend_root_dir that we use. */
const ROOT_RELATIVE_DIRS = ['pki_dir', 'cachedir', 'sock_dir'] as const;

/** Read the master config file: `path`, else env SALT_MASTER_CONFIG, else /etc/salt/master. Throws ConfigError (one line, naming the file). */
export function loadMasterConfig(path?: string): MasterOptions {
  const file = path || process.env.SALT_MASTER_CONFIG || DEFAULT_MASTER_CONFIG;
  const overrides = readConfFile(file);
  overrides.conf_file = file;

  // master_config: default_include and include are taken from the main file,
  // and whatever they hold overrides it key by key (a shallow update).
  const defaultInclude = 'default_include' in overrides ? overrides.default_include : MASTER_DEFAULTS.default_include;
  const include = overrides.include ?? [];
  Object.assign(overrides, includeConfig(defaultInclude, file, [file]));
  Object.assign(overrides, includeConfig(include, file, [file]));
  return finish(overrides, file);
}

/** Apply Salt's defaults (and root_dir) to options given as an object, as if read from a file. */
export function applyMasterDefaults(options: Partial<MasterOptions>): MasterOptions {
  return finish({ ...options }, undefined);
}

function finish(overrides: Record<string, unknown>, file: string | undefined): MasterOptions {
  // apply_master_config: defaults.copy() then update(overrides), shallow.
  const opts: Record<string, unknown> = { ...MASTER_DEFAULTS, netapi_enable_clients: [] };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) opts[key] = value;
  }
  normalize(opts, file);
  prependRootDir(opts, ROOT_RELATIVE_DIRS);
  return opts as MasterOptions;
}

/**
 * The yaml package's message ends its first line with "at line N, column M:"
 * and puts an excerpt on the lines after it; the command shows one line, so
 * the offending source line goes on that line, quoted.
 */
function yamlErrorLine(err: Error & { linePos?: Array<{ line: number; col: number }> }, text: string): string {
  const message = firstLine(err.message);
  const line = err.linePos?.[0]?.line;
  const source = line === undefined ? undefined : text.split(/\r?\n/)[line - 1];
  return source === undefined ? message : `${message} ${JSON.stringify(source)}`;
}

/** salt.config._read_conf_file: a YAML mapping (empty file = no options). */
function readConfFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EISDIR'
            ? 'is a directory'
            : firstLine(e.message);
    throw new ConfigError(`Cannot read master config ${file}: ${why}`);
  }
  let value: unknown;
  try {
    // PyYAML is YAML 1.1: `yes`/`no`/`on`/`off` are booleans, 0755 is octal.
    value = YAML.parse(text, { version: '1.1' });
  } catch (err) {
    throw new ConfigError(`Invalid YAML in master config ${file}: ${yamlErrorLine(err as Error, text)}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(
      `Invalid master config ${file}: expected a mapping of options, got ${Array.isArray(value) ? 'a list' : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

/**
 * salt.config.include_config: each entry is a path or glob, relative to the
 * including file's directory; matches are read in sorted order, each file's
 * own `include` is applied on top of it, and files are merged into each other
 * recursively (dicts merged, lists extended without duplicates).
 */
function includeConfig(include: unknown, origFile: string, chain: string[]): Record<string, unknown> {
  if (!include) return {};
  const entries = Array.isArray(include) ? include : [include];
  const configuration: Record<string, unknown> = {};
  for (const entry of entries) {
    if (typeof entry !== 'string') {
      throw new ConfigError(`Invalid master config ${origFile}: include entries must be paths, got ${JSON.stringify(entry)}`);
    }
    let pattern = entry.replace(/^~(?=$|\/)/, homedir());
    if (!path.isAbsolute(pattern)) pattern = path.join(path.dirname(origFile), pattern);
    for (const file of globSync(pattern)) {
      if (chain.includes(file)) {
        throw new ConfigError(`Invalid master config ${origFile}: include loop through ${file}`);
      }
      const opts = readConfFile(file);
      if (opts.include) Object.assign(opts, includeConfig(opts.include, file, [...chain, file]));
      mergeInto(configuration, opts);
    }
  }
  return configuration;
}

/** salt.utils.dictupdate.update(dest, upd, recursive_update=True, merge_lists=True). */
function mergeInto(dest: Record<string, unknown>, upd: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(upd)) {
    const current = dest[key];
    if (isPlainObject(current) && isPlainObject(value)) {
      mergeInto(current, value);
    } else if (Array.isArray(current) && Array.isArray(value)) {
      const merged = [...current];
      for (const item of value) if (!merged.some((m) => isDeepStrictEqual(m, item))) merged.push(item);
      dest[key] = merged;
    } else {
      dest[key] = value;
    }
  }
}

/**
 * Python's glob.glob for the patterns config includes use (`*`, `?`, `[...]`
 * in any segment), sorted. Like Python, `*` does not match a leading dot, and
 * a directory that does not exist simply matches nothing.
 */
function globSync(pattern: string): string[] {
  const segments = pattern.split('/');
  let found = [segments[0] === '' ? '/' : segments[0]];
  for (const segment of segments.slice(1)) {
    if (segment === '') continue;
    const next: string[] = [];
    for (const dir of found) {
      if (!/[*?[]/.test(segment)) {
        next.push(path.join(dir, segment));
        continue;
      }
      const re = globSegmentRegExp(segment);
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue; // not a directory, or missing: no matches
      }
      for (const name of names) if (re.test(name)) next.push(path.join(dir, name));
    }
    found = next;
  }
  // Literal segments were taken on trust, and only files can be read.
  return found.filter(isFile).sort();
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function globSegmentRegExp(segment: string): RegExp {
  let re = segment.startsWith('.') ? '' : '(?!\\.)';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = segment.indexOf(']', i + 2);
      if (end === -1) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, end);
      body = body.startsWith('!') ? `^${escapeClass(body.slice(1))}` : escapeClass(body);
      re += `[${body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

function escapeClass(body: string): string {
  return body.replace(/[\\\]^]/g, '\\$&');
}

/**
 * salt.config.prepend_root_dir with Salt's default ROOT_DIR '/': every
 * absolute path is placed under root_dir unless it already is (the root_dir
 * prefix is stripped first, so the result is the same), and relative paths
 * are joined to root_dir.
 */
function prependRootDir(opts: Record<string, unknown>, keys: readonly string[]): void {
  const rootDir = path.resolve(String(opts.root_dir));
  for (const key of keys) {
    const value = opts[key];
    if (typeof value !== 'string') continue;
    const rel = rootDir !== '/' && value.startsWith(`${rootDir}/`) ? value.slice(rootDir.length) : value;
    opts[key] = path.join(rootDir, rel.replace(/^\/+/, ''));
  }
}

/** Check, and where Salt would accept it convert, the options this server reads. */
function normalize(opts: Record<string, unknown>, file: string | undefined): void {
  const where = file ? `master config ${file}` : 'master options';
  const fail = (key: string, want: string): never => {
    throw new ConfigError(`Invalid ${where}: ${key} must be ${want}, got ${JSON.stringify(opts[key])}`);
  };
  for (const key of ['conf_file', 'root_dir', 'interface', 'sock_dir', 'cachedir', 'pki_dir', 'ipc_mode', 'transport'] as const) {
    if (typeof opts[key] !== 'string' || opts[key] === '') fail(key, 'a non-empty string');
  }
  for (const key of ['ret_port', 'tcp_master_pub_port'] as const) {
    const port = toNumber(opts[key]);
    if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) fail(key, 'a port number');
    opts[key] = port;
  }
  for (const key of ['timeout', 'gather_job_timeout'] as const) {
    const seconds = toNumber(opts[key]);
    if (seconds === undefined || seconds < 0) fail(key, 'a number of seconds');
    opts[key] = seconds;
  }
  // `netapi_enable_clients:` with nothing after it is YAML null: none enabled.
  if (opts.netapi_enable_clients === null) opts.netapi_enable_clients = [];
  const clients = opts.netapi_enable_clients;
  if (!Array.isArray(clients) || !clients.every((c) => typeof c === 'string')) fail('netapi_enable_clients', 'a list of client names');
  if (opts.netapi_allow_raw_shell === null) opts.netapi_allow_raw_shell = false;
  if (typeof opts.netapi_allow_raw_shell !== 'boolean') fail('netapi_allow_raw_shell', 'true or false');
  if (opts.rest_wsgi !== undefined && opts.rest_wsgi !== null && !isPlainObject(opts.rest_wsgi)) fail('rest_wsgi', 'a mapping');
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return undefined;
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0].trim();
}
