import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError, isGatewayError } from './errors.js';
import type { Routed } from './route.js';
import type { CompiledRoute, Gateway } from './gateway.js';
import { upstreamRequestHeaders, type HeaderList } from './forward/headers.js';
import { errorResponse, type ErrorResponse } from './respond.js';
import type { Outcome, Reason } from './observability/record.js';
import { uuidV4 } from './uuid.js';
import { schemeOf } from './bearer.js';
import type { Identity } from './authorize.js';

export { NO_IDENTITY, authorizerFor, trustStageFor, type Authorize, type AuthParts, type Identity } from './authorize.js';

/**
 * The stages every request goes through, in order: route → auth (authorize.ts: credentials,
 * certificate trust, token validation, binding, policy) → forward. Each takes
 * plain values and returns one, or throws a GatewayError; pipeline.ts runs them and has the one
 * catch. A token the cache holds is checked synchronously: the common request costs no promise.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** FAPI: echo the client's x-fapi-interaction-id when it is a UUID, otherwise mint one. */
export function interactionIdOf(value: string | string[] | undefined): string {
  return typeof value === 'string' && UUID.test(value) ? value : uuidV4();
}

/** Route: the matched route, or the refusal the router's finding calls for. */
export function routeOf(routed: Routed<CompiledRoute>, method: string): CompiledRoute {
  if (routed.kind === 'no_route') throw new GatewayError('no_route', 'no route for this path');
  if (routed.kind === 'method_not_allowed') {
    throw new GatewayError('method_not_allowed', `method ${method} is not allowed on this route`, { allow: routed.route.config.methods });
  }
  return routed.route;
}

/** Headers certbound itself sends upstream (interaction id, identity, forwarded certificate), as name, value, … */
function addedHeaders(route: CompiledRoute, identity: Identity, interactionId: string): string[] {
  const names = route.identity;
  const add = ['x-fapi-interaction-id', interactionId];
  const { claims, certificate, jkt } = identity;
  if (jkt !== undefined) add.push(names.dpopJkt, jkt);
  if (claims) {
    const values = claims.forwarded;
    if (values.clientId) add.push(names.clientId, values.clientId);
    if (values.subject) add.push(names.subject, values.subject);
    if (values.scope) add.push(names.scope, values.scope);
  }
  if (certificate) {
    add.push(names.certificateThumbprint, certificate.thumbprint);
    const { organizationId, roles } = certificate.psd2;
    if (organizationId !== undefined) add.push(names.organizationId, organizationId);
    if (roles.length > 0) add.push(names.psd2Roles, roles.join(' '));
    const forward = route.config.forwardCertificateHeader;
    if (forward) add.push(forward, certificate.forwardedValue);
  }
  return add;
}

/** Forward: the request headers the upstream receives. */
export function forwardedHeaders(incoming: IncomingHttpHeaders, peer: string | undefined, route: CompiledRoute, gateway: Gateway, identity: Identity, interactionId: string): HeaderList {
  return upstreamRequestHeaders({
    incoming,
    drop: route.drop,
    add: addedHeaders(route, identity, interactionId),
    peer: peer ?? '',
    peerTrusted: gateway.peerTrusted(peer),
    proto: gateway.config.listen.tls ? 'https' : 'http',
  });
}

/** A bug, never bad input: logged, and answered without details. */
export const INTERNAL_ERROR: ErrorResponse = {
  status: 500,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: '{"error":"server_error","error_description":"internal error"}',
};

/** The answer to a failure, and the reason recorded for it. `authorization`: the request's, for the challenge its scheme gets. */
export function answerTo(error: unknown, route: CompiledRoute | undefined, gateway: Gateway, authorization?: readonly string[]): { response: ErrorResponse; reason: Reason } {
  if (!isGatewayError(error)) return { response: INTERNAL_ERROR, reason: 'internal' };
  const scheme = schemeOf(authorization);
  const dpop = { algs: gateway.dpopAlgs, ...(scheme ? { scheme } : {}) };
  return { response: errorResponse(error, route?.config.auth, gateway.config.realm, dpop), reason: error.code };
}

/** How a request ended, for its record. */
export function outcomeOf(status: number, reason: Reason | undefined): Outcome {
  if (reason === 'client_closed') return 'client_closed';
  if (reason === undefined) return 'forwarded';
  return reason === 'internal' || status >= 500 ? 'error' : 'rejected';
}

/** nginx's code for a client that closed the connection before its answer was complete. */
export const CLIENT_CLOSED_STATUS = 499;
