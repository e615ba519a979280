/**
 * A claim as a header value: printable ASCII as is; anything else (UTF-8 names, control
 * characters) percent-encoded as UTF-8, so the header is always valid and never smuggles a line.
 */
export interface IdentityValues {
  readonly clientId?: string;
  readonly subject?: string;
  readonly scope?: string;
}

/** What a validated access token tells the gateway, whatever validated it (introspection or JWT). */
export interface TokenClaims {
  readonly clientId?: string;
  readonly subject?: string;
  /** Granted scopes (space-separated `scope` split). */
  readonly scopes: ReadonlySet<string>;
  /** `cnf["x5t#S256"]`, when the token is certificate-bound. */
  readonly x5tS256?: string;
  /** Its bytes, for the constant-time comparison (derived once: a cached token's claims serve many requests). */
  readonly x5tS256Bytes?: Buffer;
  /** `cnf.jkt`, when the token is DPoP-bound (RFC 9449 §6): the RFC 7638 thumbprint of the proof key. */
  readonly jkt?: string;
  /** Its bytes, for the constant-time comparison with the proof's key. */
  readonly jktBytes?: Buffer;
  /** client_id, sub and scope as header values for the upstream, derived once. */
  readonly forwarded: IdentityValues;
  /** Seconds since the epoch. */
  readonly exp?: number;
  readonly iat?: number;
  readonly nbf?: number;
  readonly iss?: string;
}

export interface TokenValidator {
  /**
   * Resolves the claims of an active, unexpired token, or throws a GatewayError:
   * `inactive`, `expired`, `not_yet_valid`, `invalid_token` (bad signature, issuer, audience, typ…)
   * or `as_unavailable` (timeout, 5xx, garbage, overload; carries `retryAfter`).
   */
  validate(token: string): Promise<TokenClaims>;
  /**
   * The request hot path: the claims of a token the cache holds as active and that is within its
   * time window now, synchronously; otherwise undefined, and `validate` decides (a miss, an
   * inactive or expired entry). Counts a cache hit only when it answers.
   */
  cached(token: string): TokenClaims | undefined;
  /** False until what validation needs is loaded (e.g. the JWKS when token_validation is jwt). */
  ready(): boolean;
  /** Starts loading what validation needs (the JWKS); the serving gateway calls it, `validate` never does. Idempotent. */
  start(): void;
  close(): Promise<void>;
}
