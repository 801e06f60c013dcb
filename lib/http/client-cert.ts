/**
 * Client certificates (mTLS), as rest_cherrypy has them since 2026
 * (`ssl_ca_certs`, `ssl_cert_reqs`, `ssl_allowed_cn`: salt/netapi/rest_cherrypy/__init__.py).
 * The TLS server (bin/tls.ts, or an embedder's https.Server with
 * `requestCert`) verifies the certificate against the CAs; here the handler
 * reads the verified certificate's subject CN, for the logs and for
 * `ssl_allowed_cn`. A certificate that was not verified has no CN here.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

const cns = new WeakMap<object, string | null>();

/** The subject CN of the connection's verified client certificate, else undefined (read once per connection). */
export function verifiedCn(req: IncomingMessage): string | undefined {
  const socket = req.socket as TLSSocket | undefined;
  if (!socket || typeof socket.getPeerCertificate !== 'function') return undefined;
  let cn = cns.get(socket);
  if (cn === undefined) {
    cn = null;
    if (socket.authorized) {
      const subjectCn = socket.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
      const first = Array.isArray(subjectCn) ? subjectCn[0] : subjectCn;
      if (typeof first === 'string' && first !== '') cn = first.slice(0, 256);
    }
    cns.set(socket, cn);
  }
  return cn ?? undefined;
}

/** With `ssl_allowed_cn` set, a request whose verified certificate's CN is not listed (or that has none) is refused. */
export function certificateAllowed(req: IncomingMessage, allowed: ReadonlySet<string> | undefined): boolean {
  if (!allowed) return true;
  const cn = verifiedCn(req);
  return cn !== undefined && allowed.has(cn);
}
