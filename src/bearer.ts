import { GatewayError } from './errors.js';

/** RFC 6750 §2.1 b64token (token68). */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The bearer token from `Authorization`. Tokens are accepted only in the header: FAPI forbids the
 * query string, and reading the form body would make a streaming proxy buffer it.
 */
export function bearerToken(authorization: readonly string[] | undefined, query: string): string {
  if (query.length > 1 && /(?:^\?|&)access_token(?:=|&|$)/.test(query)) {
    throw new GatewayError('token_in_query', 'access tokens are accepted only in the Authorization header');
  }
  if (authorization === undefined || authorization.length === 0) {
    throw new GatewayError('missing_token', 'bearer token required');
  }
  if (authorization.length > 1) throw new GatewayError('malformed_token', 'more than one Authorization header');
  const value = authorization[0] as string;
  const space = value.indexOf(' ');
  const scheme = (space === -1 ? value : value.slice(0, space)).toLowerCase();
  // RFC 6750 §3.1: another scheme is no credential at all here (401, no error code).
  if (scheme !== 'bearer') throw new GatewayError('missing_token', 'bearer token required');
  if (space === -1) throw new GatewayError('malformed_token', 'malformed bearer token');
  const token = value.slice(space + 1).trim();
  if (!TOKEN68.test(token)) throw new GatewayError('malformed_token', 'malformed bearer token');
  return token;
}
