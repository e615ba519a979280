import { GatewayError } from './errors.js';

/** RFC 6750 §2.1 b64token (token68). */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The bearer token from `Authorization: Bearer …`. Tokens are accepted only in the header: FAPI forbids the
 * query string, and reading the form body would make a streaming proxy buffer it.
 */
export function bearerToken(authorization: readonly string[] | undefined, query: string): string {
  const credentials = accessToken(authorization, query);
  // RFC 6750 §3.1: another scheme is no credential at all here (401, no error code).
  if (credentials.scheme !== 'bearer') throw new GatewayError('missing_token', 'bearer token required');
  return credentials.token;
}

export type Scheme = 'bearer' | 'dpop';
export interface Credentials {
  readonly scheme: Scheme;
  readonly token: string;
}

/** The scheme of a request's Authorization, when it is one certbound reads; for the challenges of a refusal. */
export function schemeOf(authorization: readonly string[] | undefined): Scheme | undefined {
  if (authorization?.length !== 1) return undefined;
  const value = authorization[0] as string;
  const space = value.indexOf(' ');
  const scheme = (space === -1 ? value : value.slice(0, space)).toLowerCase();
  return scheme === 'bearer' || scheme === 'dpop' ? scheme : undefined;
}

/** The access token from `Authorization: Bearer …` or `Authorization: DPoP …` (RFC 9449 §7.1), schemes in any case. */
export function accessToken(authorization: readonly string[] | undefined, query: string): Credentials {
  if (query.length > 1 && /(?:^\?|&)access_token(?:=|&|$)/.test(query)) {
    throw new GatewayError('token_in_query', 'access tokens are accepted only in the Authorization header');
  }
  if (authorization === undefined || authorization.length === 0) {
    throw new GatewayError('missing_token', 'access token required');
  }
  if (authorization.length > 1) throw new GatewayError('malformed_token', 'more than one Authorization header');
  const value = authorization[0] as string;
  const space = value.indexOf(' ');
  const scheme = (space === -1 ? value : value.slice(0, space)).toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'dpop') throw new GatewayError('missing_token', 'access token required');
  if (space === -1) throw new GatewayError('malformed_token', 'malformed access token');
  const token = value.slice(space + 1).trim();
  if (!TOKEN68.test(token)) throw new GatewayError('malformed_token', 'malformed access token');
  return { scheme, token };
}
