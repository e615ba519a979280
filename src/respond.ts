import { STATUS_CODES } from 'node:http';
import type { AuthMode } from './config/types.js';
import type { ErrorCode, GatewayError } from './errors.js';

export interface ErrorResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What a client gets for each code. `oauth` is the RFC 6750 / RFC 6749 §5.2 error code. */
interface Shape {
  readonly status: number;
  readonly oauth: string;
  /** Send `WWW-Authenticate: Bearer` (API routes only). */
  readonly challenge: boolean;
}

const s = (status: number, oauth: string, challenge = false): Shape => ({ status, oauth, challenge });

const API: Record<ErrorCode, Shape> = {
  bad_path: s(400, 'invalid_request'),
  no_route: s(404, 'not_found'),
  method_not_allowed: s(405, 'method_not_allowed'),
  bad_request: s(400, 'invalid_request'),
  too_many_headers: s(431, 'invalid_request'),
  request_timeout: s(408, 'request_timeout'),
  missing_token: s(401, 'invalid_request', true),
  malformed_token: s(400, 'invalid_request', true),
  token_in_query: s(400, 'invalid_request', true),
  invalid_token: s(401, 'invalid_token', true),
  inactive: s(401, 'invalid_token', true),
  expired: s(401, 'invalid_token', true),
  not_yet_valid: s(401, 'invalid_token', true),
  unbound_token: s(401, 'invalid_token', true),
  insufficient_scope: s(403, 'insufficient_scope', true),
  certificate_missing: s(401, 'invalid_token', true),
  certificate_mismatch: s(401, 'invalid_token', true),
  certificate_untrusted: s(401, 'invalid_token', true),
  certificate_expired: s(401, 'invalid_token', true),
  certificate_malformed: s(401, 'invalid_token', true),
  certificate_header_repeated: s(400, 'invalid_request'),
  certificate_header_untrusted: s(400, 'invalid_request'),
  transport_certificate_missing: s(400, 'invalid_request'),
  certificate_revoked: s(401, 'invalid_token', true),
  // Not an RFC 6750 code (so no challenge): the certificate, not the token, lacks the right.
  insufficient_role: s(403, 'insufficient_role'),
  revocation_unavailable: s(503, 'temporarily_unavailable'),
  as_unavailable: s(503, 'temporarily_unavailable'),
  upstream_unavailable: s(502, 'bad_gateway'),
  upstream_timeout: s(504, 'gateway_timeout'),
  upstream_overloaded: s(503, 'temporarily_unavailable'),
};

/**
 * On a token-endpoint route (`auth: mtls`) the client speaks RFC 6749 §5.2, not RFC 6750: a
 * certificate that cannot be used is `invalid_client`, as in WSO2's token filter.
 */
const TOKEN_ENDPOINT: Partial<Record<ErrorCode, Shape>> = {
  certificate_missing: s(400, 'invalid_request'),
  certificate_untrusted: s(400, 'invalid_client'),
  certificate_expired: s(400, 'invalid_client'),
  certificate_malformed: s(400, 'invalid_client'),
  certificate_revoked: s(401, 'invalid_client'),
};

/** RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E. */
const quotable = (text: string): string => text.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?');

/** The one place that turns a GatewayError into HTTP. */
export function errorResponse(error: GatewayError, auth: AuthMode | undefined, realm: string): ErrorResponse {
  const shape = (auth === 'mtls' ? TOKEN_ENDPOINT[error.code] : undefined) ?? API[error.code];
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
  };
  const description = quotable(error.description);
  if (shape.challenge && auth !== 'mtls') {
    // RFC 6750 §3.1: a request without credentials gets no error code.
    const params = [`realm="${realm}"`];
    if (error.code !== 'missing_token') params.push(`error="${shape.oauth}"`, `error_description="${description}"`);
    if (error.code === 'insufficient_scope' && error.details.scope) params.push(`scope="${error.details.scope.join(' ')}"`);
    headers['www-authenticate'] = `Bearer ${params.join(', ')}`;
  }
  if (error.details.allow) headers.allow = error.details.allow.join(', ');
  if (error.details.retryAfter !== undefined) headers['retry-after'] = String(error.details.retryAfter);
  // The rest of a stalled body is not worth waiting for: the connection ends with this answer.
  if (error.code === 'request_timeout') headers.connection = 'close';
  const body = JSON.stringify({ error: error.code === 'missing_token' ? 'unauthorized' : shape.oauth, error_description: description });
  return { status: shape.status, headers, body };
}

/**
 * A whole HTTP/1.1 response as bytes, for a socket no ServerResponse owns (an upgrade refused, a
 * client Node gave up on): the date, the interaction id, its length, and the end of the connection.
 */
export function rawResponse(response: ErrorResponse, interactionId: string): string {
  const lines = [`HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ''}`];
  const headers = { ...response.headers, date: new Date().toUTCString(), 'x-fapi-interaction-id': interactionId, 'content-length': String(Buffer.byteLength(response.body)), connection: 'close' };
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n${response.body}`;
}
