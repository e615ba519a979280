/**
 * Every failure a request can meet, as one stable code. Tests and metrics use the code, never
 * the message. `respond.ts` is the only place that turns a code into HTTP.
 */
export type ErrorCode =
  // request shape
  | 'bad_path'
  | 'no_route'
  | 'method_not_allowed'
  | 'bad_request'
  | 'too_many_headers'
  | 'request_timeout'
  // bearer token
  | 'missing_token'
  | 'malformed_token'
  | 'token_in_query'
  | 'invalid_token'
  | 'inactive'
  | 'expired'
  | 'not_yet_valid'
  | 'unbound_token'
  | 'token_revoked'
  | 'insufficient_scope'
  // DPoP (RFC 9449)
  | 'invalid_dpop_proof'
  | 'dpop_replay'
  | 'use_dpop_nonce'
  | 'dpop_required'
  | 'dpop_downgrade'
  | 'dpop_unbound_token'
  | 'dpop_key_mismatch'
  | 'dpop_ath_mismatch'
  // client certificate
  | 'certificate_missing'
  | 'certificate_mismatch'
  | 'certificate_untrusted'
  | 'certificate_expired'
  | 'certificate_malformed'
  | 'certificate_header_repeated'
  | 'certificate_header_untrusted'
  | 'transport_certificate_missing'
  | 'certificate_revoked'
  | 'insufficient_role'
  // dependencies
  | 'as_unavailable'
  | 'revocation_unavailable'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'upstream_overloaded';

export interface ErrorDetails {
  /** Scopes the route requires, for `insufficient_scope`. */
  readonly scope?: readonly string[];
  /** Methods the route allows, for `method_not_allowed`. */
  readonly allow?: readonly string[];
  /** Seconds before retrying, for `as_unavailable`, `revocation_unavailable` and `upstream_overloaded`. */
  readonly retryAfter?: number;
  /** A fresh DPoP nonce, sent as DPoP-Nonce, for `use_dpop_nonce`. */
  readonly nonce?: string;
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  constructor(
    readonly code: ErrorCode,
    /** Safe to show the client: never token contents, never a whole certificate. */
    readonly description: string,
    readonly details: ErrorDetails = {},
  ) {
    super(`${code}: ${description}`);
  }
}

export const isGatewayError = (e: unknown): e is GatewayError => e instanceof GatewayError;
