import { GatewayError } from './errors.js';
import { sameThumbprint } from './certificate/thumbprint.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { TokenClaims } from './token/types.js';

/**
 * RFC 8705 §3: the token's `cnf.x5t#S256` must equal the presented certificate's thumbprint.
 * Fails closed: a token without `cnf`, or a request without a certificate, is refused.
 */
export function checkBinding(claims: TokenClaims, certificate: CertificateResult): ClientCertificate {
  if (claims.x5tS256 === undefined) throw new GatewayError('unbound_token', 'access token is not certificate-bound');
  if (!certificate.present) {
    throw new GatewayError('certificate_missing', `client certificate required${certificate.why ? `: ${certificate.why}` : ''}`);
  }
  if (!sameThumbprint(claims.x5tS256, certificate.certificate.thumbprint)) {
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
