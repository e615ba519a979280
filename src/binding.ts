import { GatewayError } from './errors.js';
import { sameBytes } from './certificate/thumbprint.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { TokenClaims } from './token/types.js';
import type { Proof } from './dpop/proof.js';

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

/**
 * RFC 9449 §6, §7.1: the token's `cnf.jkt` must equal the thumbprint of the key that signed the
 * proof, compared in constant time. A token bound to no key is refused.
 */
export function checkKeyBinding(claims: TokenClaims, proof: Proof): void {
  if (claims.jktBytes === undefined) throw new GatewayError('dpop_unbound_token', 'access token is not DPoP-bound');
  if (!sameBytes(claims.jktBytes, proof.jktBytes)) throw new GatewayError('dpop_key_mismatch', 'DPoP proof key does not match the key bound to the access token');
}

/** RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused, whatever the route. */
export function refuseDowngrade(claims: TokenClaims): void {
  if (claims.jkt !== undefined) throw new GatewayError('dpop_downgrade', 'DPoP-bound access token presented as a bearer token');
}
