import type { TLSSocket } from 'node:tls';
import { checkValidity, type ValidityWindow } from './verify.js';
import { thumbprintOf } from './thumbprint.js';
import { NO_CERTIFICATE, type CertificateResult } from './types.js';

interface Peer {
  readonly present: CertificateResult;
  /** Why the handshake did not verify it against the client CA, if it did not. */
  readonly unverified?: string;
  /** The handshake verified the issuers when a client CA is set; only the leaf's dates are checked here. */
  readonly validity: ValidityWindow;
}

const perConnection = new WeakMap<TLSSocket, Peer | null>();

export interface SocketCertificateOptions {
  /** A client CA is configured: a certificate the handshake did not verify counts as none. */
  readonly requireVerified: boolean;
  /** Refuse a certificate outside its validity window (matters without a client CA). */
  readonly checkValidity: boolean;
  readonly now: () => number;
}

/**
 * The peer certificate of a TLS connection, parsed once per connection (renegotiation is
 * disabled on accept, so it cannot change). The policy is applied on every request, so a reload
 * that adds a client CA also governs connections opened before it.
 */
export function certificateFromSocket(socket: TLSSocket, options: SocketCertificateOptions): CertificateResult {
  let peer = perConnection.get(socket);
  if (peer === undefined) {
    peer = readPeer(socket);
    perConnection.set(socket, peer);
  }
  if (peer === null) return NO_CERTIFICATE;
  if (options.requireVerified && peer.unverified !== undefined) {
    return { present: false, why: `client certificate not verified (${peer.unverified})` };
  }
  if (options.checkValidity) checkValidity(peer.validity, options.now());
  return peer.present;
}

function readPeer(socket: TLSSocket): Peer | null {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return null;
  const error: unknown = socket.authorizationError;
  const unverified = socket.authorized ? undefined : error instanceof Error ? error.message : String(error);
  return {
    present: { present: true, certificate: { thumbprint: thumbprintOf(x509.raw), x509 } },
    ...(unverified !== undefined ? { unverified } : {}),
    validity: { notBefore: Date.parse(x509.validFrom), notAfter: Date.parse(x509.validTo), issuersNotBefore: -Infinity, issuersNotAfter: Infinity },
  };
}
