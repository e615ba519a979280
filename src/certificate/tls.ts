import type { TLSSocket } from 'node:tls';
import { checkValidity } from './verify.js';
import { ClientCertificate, NO_CERTIFICATE, type CertificateResult, type ConnectionCertificates, type TlsPeer } from './types.js';

export interface SocketCertificateOptions {
  /** A client CA is configured: a certificate the handshake did not verify counts as none. */
  readonly requireVerified: boolean;
  /** Refuse a certificate outside its validity window (matters without a client CA). */
  readonly checkValidity: boolean;
  readonly now: () => number;
}

/**
 * The peer certificate of a TLS connection, parsed once per connection and kept with it. The
 * policy is applied on every request, so a reload that adds a client CA also governs connections
 * opened before it.
 */
export function certificateFromSocket(socket: TLSSocket, connection: ConnectionCertificates, options: SocketCertificateOptions): CertificateResult {
  const peer = connection.tlsPeer === undefined ? (connection.tlsPeer = readPeer(socket)) : connection.tlsPeer;
  if (peer === null) return NO_CERTIFICATE;
  if (options.requireVerified && peer.unverified !== undefined) {
    return { present: false, why: `client certificate not verified (${peer.unverified})` };
  }
  // The handshake verified the issuers when a client CA is set; only the leaf's dates are checked here.
  if (options.checkValidity) checkValidity({ notBefore: peer.notBefore, notAfter: peer.notAfter, issuersNotBefore: -Infinity, issuersNotAfter: Infinity }, options.now());
  return peer.result;
}

function readPeer(socket: TLSSocket): TlsPeer | null {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return null;
  const error: unknown = socket.authorizationError;
  const unverified = socket.authorized ? undefined : error instanceof Error ? error.message : String(error);
  return {
    result: Object.freeze({ present: true, certificate: new ClientCertificate(x509) }),
    ...(unverified !== undefined ? { unverified } : {}),
    notBefore: Date.parse(x509.validFrom),
    notAfter: Date.parse(x509.validTo),
  };
}
