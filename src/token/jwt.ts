import { decodeJwt, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { GatewayError, isGatewayError } from '../errors.js';
import { checkTimes, claimsOf } from './claims.js';
import type { TokenClaims } from './types.js';

export interface JwtVerification {
  readonly issuer: string;
  readonly audience?: string;
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  readonly clock: () => number;
}

/**
 * Verifies a compact JWS and its registered claims and returns the payload; jose's failures become
 * gateway codes: expired, not_yet_valid, invalid_token (as_unavailable comes from the key set).
 */
export async function verifySignedJwt(
  jwt: string,
  getKey: JWTVerifyGetKey,
  opts: JwtVerification & { readonly typ: string },
): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(jwt, getKey, {
      typ: opts.typ,
      issuer: opts.issuer,
      ...(opts.audience === undefined ? {} : { audience: opts.audience }),
      algorithms: opts.algorithms.filter(isAsymmetric),
      clockTolerance: opts.clockSkewSeconds,
      currentDate: new Date(opts.clock()),
    });
    return payload;
  } catch (err) {
    if (isGatewayError(err)) throw err;
    if (err instanceof errors.JWTExpired) throw new GatewayError('expired', 'the access token has expired');
    if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'nbf') {
      throw new GatewayError('not_yet_valid', 'the access token is not valid yet');
    }
    throw new GatewayError('invalid_token', 'the access token could not be verified');
  }
}

/** RFC 9068: a JWT access token of the configured issuer, for the configured audience, with an `exp`. */
export async function verifyAccessToken(token: string, getKey: JWTVerifyGetKey, opts: JwtVerification): Promise<TokenClaims> {
  const payload = await verifySignedJwt(token, getKey, { ...opts, typ: 'at+jwt' });
  const claims = claimsOf(payload, (member) => new GatewayError('invalid_token', `the ${member} claim is malformed`));
  if (claims.exp === undefined) throw new GatewayError('invalid_token', 'the access token has no expiry');
  checkTimes(claims, opts.clock(), opts.clockSkewSeconds);
  return claims;
}

/** `auto` mode: does this look like a JWS whose unverified payload names our issuer? */
export function isJwtOf(token: string, issuer: string): boolean {
  if (token.split('.').length !== 3) return false;
  try {
    return decodeJwt(token).iss === issuer;
  } catch {
    return false;
  }
}

/** Symmetric algorithms and `none` never verify an authorization server's token here, whatever the config lists. */
function isAsymmetric(alg: string): boolean {
  return !/^(HS\d+|none)$/i.test(alg);
}
