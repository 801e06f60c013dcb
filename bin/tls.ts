/**
 * TLS for the command: the certificate and key of `rest_wsgi: ssl_crt` /
 * `ssl_key` (the keys rest_cherrypy reads, which Salt operators already
 * have, see salt/netapi/rest_cherrypy/__init__.py) or `--ssl-crt` /
 * `--ssl-key`, served with node:https; SIGHUP reads them again for new
 * connections. createHandler knows nothing of it: TLS belongs to the server.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';

/** Where the certificate comes from; `chain` (rest_cherrypy's ssl_chain) is appended to the certificate. */
export interface TlsFiles {
  cert: string;
  key: string;
  chain?: string;
  /** Client certificates (mTLS): CA certificates, a file or a directory of them (rest_cherrypy's ssl_ca_certs). */
  ca?: string;
  /** rest_cherrypy's ssl_cert_reqs: CERT_NONE (default), CERT_OPTIONAL, CERT_REQUIRED. */
  certReqs?: string;
}

/** What node:tls is given: the certificate and key, and for client certificates the CAs and whether one is asked for. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer[];
  requestCert?: boolean;
  /** CERT_REQUIRED: no handshake without a certificate the CAs signed. */
  rejectUnauthorized?: boolean;
}

/**
 * The client-certificate settings added to `files`, checked: asking for
 * certificates takes CAs and HTTPS; CAs or a CN list without asking is a
 * mistake worth stopping for (the operator believes clients are checked).
 */
export function withClientCerts(files: TlsFiles | undefined, values: Record<string, unknown>, file: string): TlsFiles | undefined {
  const ca = values.ssl_ca_certs as string | undefined;
  const certReqs = (values.ssl_cert_reqs as string | undefined) ?? 'CERT_NONE';
  const asks = certReqs !== 'CERT_NONE';
  if (!files) {
    if (asks || ca !== undefined || values.ssl_allowed_cn !== undefined) {
      throw new Error(`rest_wsgi: ssl_cert_reqs, ssl_ca_certs and ssl_allowed_cn need HTTPS (ssl_crt and ssl_key) in ${file}`);
    }
    return undefined;
  }
  if (asks && ca === undefined)
    throw new Error(`rest_wsgi: ssl_cert_reqs ${certReqs} needs ssl_ca_certs (the CAs to verify them with) in ${file}`);
  if (!asks && (ca !== undefined || values.ssl_allowed_cn !== undefined)) {
    throw new Error(
      `rest_wsgi: ssl_ca_certs and ssl_allowed_cn check client certificates: set ssl_cert_reqs CERT_OPTIONAL or CERT_REQUIRED in ${file}`,
    );
  }
  return asks ? { ...files, ca, certReqs } : files;
}

/** What the certificate and key options say, as rest_cherrypy reads them; undefined: plain HTTP. */
export function tlsFilesFrom(
  flags: { 'ssl-crt'?: string; 'ssl-key'?: string },
  section: Record<string, unknown>,
  file: string,
): TlsFiles | undefined {
  // Flags win over the config, disable_ssl included: they are the more explicit.
  if (flags['ssl-crt'] !== undefined || flags['ssl-key'] !== undefined) {
    if (!flags['ssl-crt'] || !flags['ssl-key']) throw new Error('--ssl-crt and --ssl-key go together: give both, or neither');
    return { cert: flags['ssl-crt'], key: flags['ssl-key'] };
  }
  // disable_ssl: true serves plain HTTP whatever ssl_crt and ssl_key say, as in rest_cherrypy.
  const disable = section.disable_ssl;
  if (disable !== undefined && disable !== null && typeof disable !== 'boolean') {
    throw new Error(`invalid rest_wsgi: disable_ssl ${JSON.stringify(disable)} in ${file}: true or false`);
  }
  if (disable === true) return undefined;
  const { ssl_crt: cert, ssl_key: key, ssl_chain: chain } = section;
  if (cert === undefined && key === undefined) return undefined; // rest_wsgi never had TLS: plain HTTP stays the default
  for (const [name, value] of [
    ['ssl_crt', cert],
    ['ssl_key', key],
    ['ssl_chain', chain],
  ] as const) {
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new Error(`invalid rest_wsgi: ${name} ${JSON.stringify(value)} in ${file}: expected a file path`);
    }
  }
  if (cert === undefined || key === undefined) {
    throw new Error(`rest_wsgi: ssl_crt and ssl_key go together in ${file}: give both, or neither (or disable_ssl: true)`);
  }
  return { cert: cert as string, key: key as string, chain: chain as string | undefined };
}

/** The PEM contents, checked by building a secure context from them (a key that doesn't match fails here, not at the first client). */
export function readTls(files: TlsFiles): TlsMaterial {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new Error(
        `cannot read the TLS ${what} ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : (e.code ?? e.message)}`,
      );
    }
  };
  const cert = files.chain
    ? Buffer.concat([read(files.cert, 'certificate'), Buffer.from('\n'), read(files.chain, 'chain')])
    : read(files.cert, 'certificate');
  const key = read(files.key, 'key');
  const ca = files.ca === undefined ? undefined : readCas(files.ca, read);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`unusable TLS certificate ${files.cert} and key ${files.key}: ${(err as Error).message.split('\n', 1)[0]}`);
  }
  if (!ca) return { cert, key };
  try {
    createSecureContext({ ca });
  } catch (err) {
    throw new Error(`unusable CA certificates ${files.ca}: ${(err as Error).message.split('\n', 1)[0]}`);
  }
  return { cert, key, ca, requestCert: true, rejectUnauthorized: files.certReqs === 'CERT_REQUIRED' };
}

/** The CA certificates of a file, or of every file in a directory (Python's capath: its PEM files, whatever their names). */
function readCas(path: string, read: (path: string, what: string) => Buffer): Buffer[] {
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    // read() says why
  }
  if (!isDir) return [read(path, 'CA certificates')];
  const pems = readdirSync(path)
    .sort()
    .map((name) => join(path, name))
    .filter((p) => statSync(p, { throwIfNoEntry: false })?.isFile())
    .map((p) => read(p, 'CA certificate'))
    .filter((pem) => pem.includes('-----BEGIN CERTIFICATE-----'));
  if (pems.length === 0) throw new Error(`no CA certificate (PEM) in the directory ${path}`);
  return pems;
}
