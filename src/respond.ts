import { STATUS_CODES } from 'node:http';
import type { AuthMode } from './config/types.js';
import type { ErrorCode, GatewayError } from './errors.js';

export interface ErrorResponse {
  readonly status: number;
  /** Arrays are sent as one header line each (a route accepting Bearer and DPoP sends both challenges). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: string;
}

/** What a DPoP challenge needs beyond the route's kind. */
export interface DpopChallenge {
  /** dpop.algorithms, space-separated, in their configured order (RFC 9449 §7.1 algs). */
  readonly algs: string;
  /** The scheme the request's Authorization used, when Bearer or DPoP: its challenge carries the error. */
  readonly scheme?: 'bearer' | 'dpop';
}

/** What a client gets for each code. `oauth` is the RFC 6750 / RFC 6749 §5.2 error code. */
interface Shape {
  readonly status: number;
  readonly oauth: string;
  /** Send `WWW-Authenticate` (API routes only). */
  readonly challenge: boolean;
  /** A DPoP failure: its error goes in the DPoP challenge, whatever scheme the route also takes. */
  readonly dpop?: true;
}

const s = (status: number, oauth: string, challenge = false): Shape => ({ status, oauth, challenge });
const d = (oauth: string): Shape => ({ status: 401, oauth, challenge: true, dpop: true });

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
  token_revoked: s(401, 'invalid_token', true),
  insufficient_scope: s(403, 'insufficient_scope', true),
  invalid_dpop_proof: d('invalid_dpop_proof'),
  dpop_replay: d('invalid_dpop_proof'),
  use_dpop_nonce: d('use_dpop_nonce'),
  dpop_required: d('invalid_token'),
  // A DPoP-bound token sent as a bearer token (RFC 9449 §7.2): the Bearer challenge carries it.
  dpop_downgrade: s(401, 'invalid_token', true),
  dpop_unbound_token: d('invalid_token'),
  dpop_key_mismatch: d('invalid_token'),
  dpop_ath_mismatch: d('invalid_token'),
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

const BEARER_ROUTES: ReadonlySet<AuthMode | undefined> = new Set([undefined, 'none', 'certificate_bound_token', 'sender_constrained_token']);
const DPOP_ROUTES: ReadonlySet<AuthMode | undefined> = new Set(['dpop_bound_token', 'sender_constrained_token']);

/**
 * RFC 6750 §3 and RFC 9449 §7.1: the challenges of the route's schemes. The error goes in one of
 * them: DPoP's for a DPoP failure or a request that used DPoP, Bearer's otherwise. A request
 * without credentials (§3.1) gets no error code at all.
 */
function challenges(error: GatewayError, shape: Shape, auth: AuthMode | undefined, realm: string, description: string, dpop: DpopChallenge | undefined): string[] {
  const params = [`error="${shape.oauth}"`, `error_description="${description}"`];
  if (error.code === 'insufficient_scope' && error.details.scope) params.push(`scope="${error.details.scope.join(' ')}"`);
  const bearer = BEARER_ROUTES.has(auth);
  const offersDpop = DPOP_ROUTES.has(auth);
  const inDpop = offersDpop && (shape.dpop === true || !bearer || dpop?.scheme === 'dpop');
  const withError = (scheme: 'Bearer' | 'DPoP', carries: boolean, extra: string[]) =>
    `${scheme} ${[`realm="${realm}"`, ...(carries && error.code !== 'missing_token' ? params : []), ...extra].join(', ')}`;
  const out: string[] = [];
  if (bearer) out.push(withError('Bearer', !inDpop, []));
  if (offersDpop) out.push(withError('DPoP', inDpop, [`algs="${dpop?.algs ?? ''}"`]));
  return out;
}

/** The one place that turns a GatewayError into HTTP. */
export function errorResponse(error: GatewayError, auth: AuthMode | undefined, realm: string, dpop?: DpopChallenge): ErrorResponse {
  const shape = (auth === 'mtls' ? TOKEN_ENDPOINT[error.code] : undefined) ?? API[error.code];
  const headers: Record<string, string | string[]> = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
  };
  const description = quotable(error.description);
  if (shape.challenge && auth !== 'mtls') {
    const list = challenges(error, shape, auth, realm, description, dpop);
    headers['www-authenticate'] = list.length === 1 ? (list[0] as string) : list;
  }
  if (error.details.nonce !== undefined) headers['dpop-nonce'] = error.details.nonce;
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
  for (const [k, v] of Object.entries(headers)) for (const one of typeof v === 'string' ? [v] : v) lines.push(`${k}: ${one}`);
  return `${lines.join('\r\n')}\r\n\r\n${response.body}`;
}
