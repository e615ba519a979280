import { hash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { IdentityValues, TokenClaims } from './types.js';

/** What validating a token yields: its claims, or the authorization server's "not active". */
export type Outcome = { readonly active: true; readonly claims: TokenClaims } | { readonly active: false };

/**
 * The cache and single-flight key: a token is never stored or compared in the clear. One-shot
 * `crypto.hash` (Node ≥ 20.12): a third of createHash's cost on every request.
 */
export function keyOf(token: string): string {
  return hash('sha256', token, 'base64url');
}

/**
 * Parses the members of an introspection response or a JWT payload into TokenClaims. A member of
 * the wrong type throws `malformed(member)`: a token whose `exp` cannot be read must not pass as eternal.
 */
export function claimsOf(
  raw: Readonly<Record<string, unknown>>,
  malformed: (member: string) => Error,
): TokenClaims & { readonly iat?: number } {
  const bad = (member: string): never => {
    throw malformed(member);
  };
  const text = (member: string): string | undefined => {
    const value = raw[member];
    if (value === undefined) return undefined;
    return typeof value === 'string' ? value : bad(member);
  };
  const seconds = (member: string): number | undefined => {
    const value = raw[member];
    if (value === undefined) return undefined;
    return typeof value === 'number' && Number.isFinite(value) ? value : bad(member);
  };
  const cnf = raw['cnf'];
  if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf))) bad('cnf');
  const thumbprint = cnf === undefined ? undefined : (cnf as Record<string, unknown>)['x5t#S256'];
  if (thumbprint !== undefined && typeof thumbprint !== 'string') bad('cnf');
  // RFC 9449 §6: the thumbprint of the DPoP key the token is bound to.
  const jkt = cnf === undefined ? undefined : (cnf as Record<string, unknown>)['jkt'];
  if (jkt !== undefined && typeof jkt !== 'string') bad('cnf');

  const scope = text('scope');
  const clientId = text('client_id');
  const subject = text('sub');
  const iss = text('iss');
  const exp = seconds('exp');
  const nbf = seconds('nbf');
  const iat = seconds('iat');
  return new Claims(scope, clientId, subject, typeof thumbprint === 'string' ? thumbprint : undefined, exp, nbf, iat, iss, typeof jkt === 'string' ? jkt : undefined);
}

/**
 * Values that repeat across tokens — a client's id, the issuer, a certificate's or key's
 * thumbprint, a scope string — are kept once (issue 15: a million cached tokens in 512 MiB). A
 * pool holds up to `max` distinct values of up to MAX_POOLED characters; when full it starts again
 * empty (entries keep what they hold), so a hostile variety of values costs memory only as any
 * token does. Module-level: the values are immutable, and a reload's new cache shares them.
 */
class Pool<T> {
  private readonly map = new Map<string, T>();
  constructor(
    private readonly max: number,
    private readonly make: (text: string) => T,
  ) {}

  of(text: string): T {
    if (text.length > MAX_POOLED) return this.make(text);
    let value = this.map.get(text);
    if (value === undefined) {
      if (this.map.size >= this.max) this.map.clear();
      value = this.make(text);
      this.map.set(text, value);
    }
    return value;
  }
}
const MAX_POOLED = 256;

/** A thumbprint (cnf x5t#S256 or jkt) and its bytes for the constant-time comparison, made on first use. */
class Thumbprint {
  private bytes: Buffer | undefined = undefined;
  constructor(readonly text: string) {}
  get buffer(): Buffer {
    this.bytes ??= Buffer.from(this.text);
    return this.bytes;
  }
}

const strings = new Pool<string>(4096, (text) => text);
const thumbprints = new Pool<Thumbprint>(4096, (text) => new Thumbprint(text));
const scopeSets = new Pool<ReadonlySet<string>>(1024, (scope) => new Set(scope.split(' ').filter((s) => s !== '')));
const NO_SCOPES: ReadonlySet<string> = new Set();

/**
 * A token's claims, and its active outcome (`active`, `claims`: the cache holds no wrapper). What
 * requests need beyond the members (the identity headers' values) is derived on first use and
 * kept here: a cached token's claims serve every request that carries it, and an entry the cache
 * holds but no request reads again costs nothing more (a million cached tokens: BENCHMARKS.md).
 */
export class Claims implements TokenClaims {
  readonly scopes: ReadonlySet<string>;
  // `declare`: a member is set only when the token has it, not defined as undefined on every instance.
  declare readonly clientId?: string;
  declare readonly subject?: string;
  declare readonly exp?: number;
  declare readonly nbf?: number;
  declare readonly iat?: number;
  declare readonly iss?: string;
  declare private readonly x5t?: Thumbprint;
  declare private readonly key?: Thumbprint;
  private values: IdentityValues | undefined = undefined;

  constructor(scope: string | undefined, clientId?: string, subject?: string, x5tS256?: string, exp?: number, nbf?: number, iat?: number, iss?: string, jkt?: string) {
    this.scopes = scope === undefined ? NO_SCOPES : scopeSets.of(scope);
    if (clientId !== undefined) this.clientId = strings.of(clientId);
    if (subject !== undefined) this.subject = subject;
    if (x5tS256 !== undefined) this.x5t = thumbprints.of(x5tS256);
    if (exp !== undefined) this.exp = exp;
    if (nbf !== undefined) this.nbf = nbf;
    if (iat !== undefined) this.iat = iat;
    if (iss !== undefined) this.iss = strings.of(iss);
    if (jkt !== undefined) this.key = thumbprints.of(jkt);
  }

  /** As an Outcome: active, with itself as the claims. */
  get active(): true {
    return true;
  }

  get claims(): this {
    return this;
  }

  get x5tS256(): string | undefined {
    return this.x5t?.text;
  }

  get x5tS256Bytes(): Buffer | undefined {
    return this.x5t?.buffer;
  }

  get jkt(): string | undefined {
    return this.key?.text;
  }

  get jktBytes(): Buffer | undefined {
    return this.key?.buffer;
  }

  get forwarded(): IdentityValues {
    this.values ??= {
      ...(this.clientId ? { clientId: headerValue(this.clientId) } : {}),
      ...(this.subject ? { subject: headerValue(this.subject) } : {}),
      ...(this.scopes.size > 0 ? { scope: headerValue([...this.scopes].join(' ')) } : {}),
    };
    return this.values;
  }
}

/** The members claimsOf reads, from claims it made: what a shared cache stores and parses back. */
export function membersOf(claims: TokenClaims): Record<string, unknown> {
  const cnf = { ...(claims.x5tS256 !== undefined ? { 'x5t#S256': claims.x5tS256 } : {}), ...(claims.jkt !== undefined ? { jkt: claims.jkt } : {}) };
  return {
    ...(claims.scopes.size > 0 ? { scope: [...claims.scopes].join(' ') } : {}),
    ...(claims.clientId !== undefined ? { client_id: claims.clientId } : {}),
    ...(claims.subject !== undefined ? { sub: claims.subject } : {}),
    ...(claims.iss !== undefined ? { iss: claims.iss } : {}),
    ...(claims.exp !== undefined ? { exp: claims.exp } : {}),
    ...(claims.nbf !== undefined ? { nbf: claims.nbf } : {}),
    ...(claims.iat !== undefined ? { iat: claims.iat } : {}),
    ...(Object.keys(cnf).length > 0 ? { cnf } : {}),
  };
}

/** Printable ASCII as is, anything else percent-encoded as UTF-8: a header value that cannot smuggle a line. */
const headerValue = (claim: string): string => (/^[\x20-\x7e]*$/.test(claim) ? claim : encodeURIComponent(claim));

/** Throws `expired` or `not_yet_valid` when the token's times, widened by the skew, exclude `nowMs`. */
type TimeClaims = { readonly exp?: number; readonly nbf?: number; readonly iat?: number };

/** What the time claims say at `nowMs` (with the skew): nothing against, expired, or not yet valid. */
function timeVerdict(claims: TimeClaims, nowMs: number, skewSeconds: number): 'expired' | 'not_yet_valid' | undefined {
  const now = nowMs / 1000;
  if (claims.exp !== undefined && claims.exp <= now - skewSeconds) return 'expired';
  if ((claims.nbf !== undefined && claims.nbf > now + skewSeconds) || (claims.iat !== undefined && claims.iat > now + skewSeconds)) return 'not_yet_valid';
  return undefined;
}

export const withinTimes = (claims: TimeClaims, nowMs: number, skewSeconds: number): boolean => timeVerdict(claims, nowMs, skewSeconds) === undefined;

export function checkTimes(claims: TimeClaims, nowMs: number, skewSeconds: number): void {
  const verdict = timeVerdict(claims, nowMs, skewSeconds);
  if (verdict === 'expired') throw new GatewayError('expired', 'the access token has expired');
  if (verdict === 'not_yet_valid') throw new GatewayError('not_yet_valid', 'the access token is not valid yet');
}

/** The claims of an outcome still valid at `nowMs`, or the error that refuses it. */
export function claimsAt(outcome: Outcome, nowMs: number, skewSeconds: number): TokenClaims {
  if (!outcome.active) throw new GatewayError('inactive', 'the access token is not active');
  checkTimes(outcome.claims, nowMs, skewSeconds);
  return outcome.claims;
}

export function unavailable(retryAfterSeconds: number): GatewayError {
  return new GatewayError('as_unavailable', 'the authorization server is unavailable', { retryAfter: retryAfterSeconds });
}
