/**
 * TLS towards the master from the master config's `ssl` option, read as
 * Salt's tcp and ws request clients read it (salt/transport/base.py:
 * ssl_context, and tornado's ssl_options_to_context for ws; the config
 * loader turns `cert_reqs`/`ssl_version` names into ssl constants,
 * salt/config/__init__.py: _update_ssl_config):
 *
 *   ssl: null / false        plain TCP (Salt's default)
 *   ssl: true / {}           TLS, the master's certificate checked against the system CAs
 *   certfile, keyfile        our client certificate (keyfile defaults to certfile, as load_cert_chain)
 *   ca_certs                 CA file to check the master's certificate with (added to the system CAs)
 *   verify_locations         more CAs: file paths, or {cafile|capath|cadata: ...}
 *   cert_reqs                CERT_NONE: the master's certificate is not checked;
 *                            CERT_OPTIONAL / CERT_REQUIRED (default): it is, host name included
 *   ssl_version              PROTOCOL_TLSv1_2 etc.: exactly that version; PROTOCOL_TLS*: any
 *   ciphers                  OpenSSL cipher list
 *
 * `verify_flags` (X509 flags) has no Node equivalent and is not read.
 * A file that can't be read is a ConfigError naming it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { ConfigError } from './errors.js';

const VERSIONS: Record<string, tls.SecureVersion> = {
  PROTOCOL_TLSv1: 'TLSv1',
  PROTOCOL_TLSv1_1: 'TLSv1.1',
  PROTOCOL_TLSv1_2: 'TLSv1.2',
};

/** Python's ssl constants, for configs that give numbers (CERT_NONE 0, CERT_OPTIONAL 1, CERT_REQUIRED 2). */
const CERT_REQS = ['CERT_NONE', 'CERT_OPTIONAL', 'CERT_REQUIRED'];

/** tls.connect options for the master at `host`, or undefined when the config asks for no TLS. */
export function tlsConnectOptions(ssl: unknown, host: string): tls.ConnectionOptions | undefined {
  if (ssl === undefined || ssl === null || ssl === false) return undefined;
  if (ssl === true) ssl = {};
  if (typeof ssl !== 'object' || Array.isArray(ssl))
    throw new ConfigError('Invalid master config: ssl must be true, false or a mapping of TLS options');
  const o = ssl as Record<string, unknown>;
  const options: tls.ConnectionOptions = { host };
  // An IP address is checked against the certificate's IP names; a name is also sent as SNI.
  if (isIP(host) === 0) options.servername = host;

  if (o.certfile !== undefined) {
    options.cert = readTlsFile('certfile', o.certfile);
    options.key = o.keyfile !== undefined ? readTlsFile('keyfile', o.keyfile) : options.cert;
  }
  const cas: Buffer[] = [];
  if (o.ca_certs !== undefined) cas.push(readTlsFile('ca_certs', o.ca_certs));
  for (const location of listOf(o.verify_locations)) cas.push(...verifyLocation(location));
  // Python adds these to the default CAs (create_default_context); Node's `ca` replaces them.
  if (cas.length > 0) options.ca = [...tls.rootCertificates, ...cas.map((b) => b.toString('latin1'))];

  const reqs = typeof o.cert_reqs === 'number' ? CERT_REQS[o.cert_reqs] : o.cert_reqs;
  if (reqs !== undefined) {
    if (typeof reqs !== 'string' || !CERT_REQS.includes(reqs.toUpperCase())) {
      throw new ConfigError(
        `Invalid master config: ssl cert_reqs must be one of ${CERT_REQS.join(', ')}, got ${JSON.stringify(o.cert_reqs)}`,
      );
    }
    if (reqs.toUpperCase() === 'CERT_NONE') {
      options.rejectUnauthorized = false;
      options.checkServerIdentity = () => undefined;
    }
  }
  if (typeof o.ssl_version === 'string' && VERSIONS[o.ssl_version]) {
    options.minVersion = options.maxVersion = VERSIONS[o.ssl_version];
  }
  if (typeof o.ciphers === 'string') options.ciphers = o.ciphers;
  return options;
}

function readTlsFile(key: string, file: unknown): Buffer {
  if (typeof file !== 'string' || file === '') throw new ConfigError(`Invalid master config: ssl ${key} must be a file path`);
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new ConfigError(`Cannot read the master config's ssl ${key} ${file}: ${why}`);
  }
}

function listOf(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** One verify_locations entry: a CA file path, or {cafile | capath | cadata}. */
function verifyLocation(location: unknown): Buffer[] {
  if (typeof location === 'string') return [readTlsFile('verify_locations', location)];
  if (typeof location !== 'object' || location === null) return [];
  const out: Buffer[] = [];
  for (const [key, value] of Object.entries(location)) {
    const k = key.toLowerCase();
    if (k === 'cafile') out.push(readTlsFile('verify_locations cafile', value));
    else if (k === 'cadata' && typeof value === 'string') out.push(Buffer.from(value));
    else if (k === 'capath' && typeof value === 'string') {
      // OpenSSL's hashed CA directory: every file in it is a PEM certificate.
      let names: string[];
      try {
        names = readdirSync(value);
      } catch {
        throw new ConfigError(`Cannot read the master config's ssl verify_locations capath ${value}`);
      }
      for (const name of names) out.push(readTlsFile('verify_locations capath', join(value, name)));
    }
  }
  return out;
}
