import type { TLSSocket } from 'node:tls';
import { thumbprintOf } from './thumbprint.js';
import { NO_CERTIFICATE, type CertificateResult } from './types.js';

const perConnection = new WeakMap<TLSSocket, CertificateResult>();

/**
 * The peer certificate of a TLS connection, computed once per connection (renegotiation is
 * disabled on accept, so it cannot change). With a client CA configured, a certificate that
 * did not verify counts as none, and says why.
 */
export function certificateFromSocket(socket: TLSSocket, requireVerified: boolean): CertificateResult {
  let result = perConnection.get(socket);
  if (result === undefined) {
    result = readPeer(socket, requireVerified);
    perConnection.set(socket, result);
  }
  return result;
}

function readPeer(socket: TLSSocket, requireVerified: boolean): CertificateResult {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return NO_CERTIFICATE;
  if (requireVerified && !socket.authorized) {
    const reason = socket.authorizationError instanceof Error ? socket.authorizationError.message : String(socket.authorizationError);
    return { present: false, why: `client certificate not verified (${reason})` };
  }
  return { present: true, certificate: { thumbprint: thumbprintOf(x509.raw), x509 } };
}
