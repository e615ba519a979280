import { GatewayError } from './errors.js';
import { sameBytes } from './certificate/thumbprint.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { TokenClaims } from './token/types.js';

/**
 * A thumbprint's bytes, kept with the immutable object that carries it (a cached token's claims, a
 * connection's certificate): the constant-time comparison costs no allocation per request.
 */
const thumbprintBytes = new WeakMap<object, Buffer>();
function bytesOf(owner: object, thumbprint: string): Buffer {
  let bytes = thumbprintBytes.get(owner);
  if (bytes === undefined) thumbprintBytes.set(owner, (bytes = Buffer.from(thumbprint)));
  return bytes;
}

/**
 * RFC 8705 §3: the token's `cnf.x5t#S256` must equal the presented certificate's thumbprint.
 * Fails closed: a token without `cnf`, or a request without a certificate, is refused.
 */
export function checkBinding(claims: TokenClaims, certificate: CertificateResult): ClientCertificate {
  if (claims.x5tS256 === undefined) throw new GatewayError('unbound_token', 'access token is not certificate-bound');
  if (!certificate.present) {
    throw new GatewayError('certificate_missing', `client certificate required${certificate.why ? `: ${certificate.why}` : ''}`);
  }
  if (!sameBytes(bytesOf(claims, claims.x5tS256), bytesOf(certificate.certificate, certificate.certificate.thumbprint))) {
    throw new GatewayError('certificate_mismatch', 'client certificate does not match the certificate bound to the access token');
  }
  return certificate.certificate;
}

/** Every scope the route lists must have been granted. */
export function checkScopes(claims: TokenClaims, required: readonly string[]): void {
  for (const scope of required) {
    if (!claims.scopes.has(scope)) {
      throw new GatewayError('insufficient_scope', 'access token lacks a required scope', { scope: required });
    }
  }
}
