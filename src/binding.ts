import { GatewayError } from './errors.js';
import { sameBytes } from './certificate/thumbprint.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { TokenClaims } from './token/types.js';

/**
 * RFC 8705 §3: the token's `cnf.x5t#S256` must equal the presented certificate's thumbprint,
 * compared in constant time (both sides' bytes were derived with their objects: no allocation
 * here). Fails closed: a token without `cnf`, or a request without a certificate, is refused.
 */
export function checkBinding(claims: TokenClaims, certificate: CertificateResult): ClientCertificate {
  if (claims.x5tS256Bytes === undefined) throw new GatewayError('unbound_token', 'access token is not certificate-bound');
  if (!certificate.present) {
    throw new GatewayError('certificate_missing', `client certificate required${certificate.why ? `: ${certificate.why}` : ''}`);
  }
  if (!sameBytes(claims.x5tS256Bytes, certificate.certificate.thumbprintBytes)) {
    throw new GatewayError('certificate_mismatch', 'client certificate does not match the certificate bound to the access token');
  }
  return certificate.certificate;
}
