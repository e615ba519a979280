/**
 * What the revocation sources (OCSP, CRL) answer, and how they fail. A source either gives a
 * definite, verified answer or throws a RevocationError: nothing in between is ever read as good.
 */

/** What a verified source says of one certificate. `unknown`: the responder does not know it (never "good"). */
export type SourceStatus = 'good' | 'revoked' | 'unknown';

/** A verified answer, with the times it holds for (epoch ms). */
export interface SourceAnswer {
  readonly status: SourceStatus;
  readonly thisUpdate: number;
  /** Absent: the source gives no end (the cache bounds it by max_cache_seconds). */
  readonly nextUpdate?: number;
}

/** Why a source gave no answer. Stable codes: tests and logs use them, never the message. */
export type RevocationFailure =
  /** Not DER, or not the structure it should be. */
  | 'malformed'
  /** An OCSP responseStatus other than successful (tryLater, unauthorized, …). */
  | 'responder_error'
  /** The signature does not verify, or uses an algorithm certbound does not accept. */
  | 'bad_signature'
  /** Signed by neither the issuer nor a responder the issuer delegated to (id-kp-OCSPSigning). */
  | 'untrusted_signer'
  /** An answer about another certificate (CertID), or a CRL of another issuer. */
  | 'wrong_certificate'
  /** thisUpdate in the future beyond the clock skew. */
  | 'not_yet_valid'
  /** nextUpdate has passed. */
  | 'stale'
  /** The nonce sent is not the one returned. */
  | 'nonce_mismatch'
  /** A critical extension certbound does not understand. */
  | 'unsupported'
  /** No URL to ask, no issuer to check against. */
  | 'no_source'
  /** Connection refused, timeout, an HTTP status other than 200, a body too large. */
  | 'unavailable';

export class RevocationError extends Error {
  override readonly name = 'RevocationError';
  constructor(
    readonly reason: RevocationFailure,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

export const isRevocationError = (e: unknown): e is RevocationError => e instanceof RevocationError;

/**
 * A serial number as one canonical key: upper-case hex without leading zeros, as both
 * X509Certificate.serialNumber (which may keep a leading 00) and a CRL's INTEGER bytes give it.
 */
export function serialKey(hexOrBytes: string | Uint8Array): string {
  if (typeof hexOrBytes === 'string') {
    const trimmed = hexOrBytes.toUpperCase().replace(/^0+/, '');
    return trimmed === '' ? '0' : trimmed;
  }
  // A CRL lists many thousand: no regular expression, no copy.
  let start = 0;
  while (start < hexOrBytes.length - 1 && hexOrBytes[start] === 0) start++;
  const hex = Buffer.from(hexOrBytes.buffer, hexOrBytes.byteOffset + start, hexOrBytes.length - start).toString('hex').toUpperCase();
  return hex.charCodeAt(0) === 48 /* 0 */ && hex.length > 1 ? hex.slice(1) : hex;
}
