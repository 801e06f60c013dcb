/**
 * A throwaway self-signed certificate for localhost and 127.0.0.1, made with
 * the openssl command (Debian's openssl package) in a temp dir the caller
 * owns, valid for a day.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SelfSigned {
  keyPath: string;
  certPath: string;
  key: Buffer;
  cert: Buffer;
}

export function selfSignedCert(dir: string): SelfSigned {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { keyPath, certPath, key: readFileSync(keyPath), cert: readFileSync(certPath) };
}

/** A throwaway certificate authority: its certificate and key, for issueCert. */
export interface TestCa {
  certPath: string;
  keyPath: string;
  cert: Buffer;
}

/** A CA certificate (EC P-256, quick to make) named `name`, in `dir`. */
export function testCa(dir: string, name: string): TestCa {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { certPath, keyPath, cert: readFileSync(certPath) };
}

/** A client certificate with subject CN `cn`, signed by `ca`: its files. */
export function issueClientCert(dir: string, ca: TestCa, cn: string): { certPath: string; keyPath: string } {
  const base = join(dir, `client-${cn}-${ca.certPath.split('/').pop()}`);
  const keyPath = `${base}.key`;
  const certPath = `${base}.crt`;
  const csrPath = `${base}.csr`;
  const extPath = `${base}.ext`;
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      keyPath,
      '-out',
      csrPath,
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  writeFileSync(extPath, 'extendedKeyUsage=clientAuth\n');
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csrPath,
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      extPath,
      '-out',
      certPath,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { certPath, keyPath };
}
