import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError, isGatewayError } from './errors.js';
import { bearerToken } from './bearer.js';
import { checkBinding } from './binding.js';
import { checkScopes } from './policy.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { RouteConfig } from './config/types.js';
import type { TokenClaims, TokenValidator } from './token/types.js';
import type { Routed, Target } from './route.js';
import type { CompiledRoute, Gateway, RequestView } from './gateway.js';
import { upstreamRequestHeaders, type HeaderList } from './forward/headers.js';
import { errorResponse, type ErrorResponse } from './respond.js';
import type { Outcome, Reason } from './observability/record.js';
import { uuidV4 } from './uuid.js';
import { hasAnyRole } from './certificate/psd2.js';
import type { RevocationChecker } from './revocation/checker.js';

/**
 * The stages every request goes through, in order: route → credentials (the bearer token and the
 * certificate, read from the request) → token validation → binding → policy → forward. Each takes
 * plain values and returns one, or throws a GatewayError; pipeline.ts runs them and has the one
 * catch. A token the cache holds is checked synchronously: the common request costs no promise.
 */

/** Who the request proved to be. */
export interface Identity {
  readonly claims?: TokenClaims;
  readonly certificate?: ClientCertificate;
}
export const NO_IDENTITY: Identity = Object.freeze({});

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

/** A route's auth stages, compiled once: credentials, token validation, binding and policy, as its `auth` asks. */
export type Authorize = (view: RequestView, target: Target) => Identity | Promise<Identity>;

/** What the auth stages need of the gateway. */
export interface AuthParts {
  readonly readCertificate: (view: RequestView) => CertificateResult;
  readonly tokens: TokenValidator | undefined;
  /** Revocation (OCSP, CRL), when client_certificate.revocation.mode is not off. */
  readonly revocation?: RevocationChecker | undefined;
}

/**
 * Certificate trust beyond the chain: the route's PSD2 roles (a synchronous check, before any
 * network call), then revocation (synchronous while the status is cached). Undefined when the
 * route asks neither, so such routes pay nothing.
 */
export function trustStageFor(route: RouteConfig, revocation: RevocationChecker | undefined): ((certificate: ClientCertificate) => void | Promise<void>) | undefined {
  const roles = route.psd2Roles;
  if (roles.length === 0 && revocation === undefined) return undefined;
  const lacking = `client certificate lacks PSD2 role ${roles.join(' or ')}`;
  return (certificate) => {
    if (roles.length > 0 && !hasAnyRole(certificate.psd2, roles)) throw new GatewayError('insufficient_role', lacking);
    return revocation?.check(certificate);
  };
}

export function authorizerFor(route: RouteConfig, parts: AuthParts): Authorize {
  const { readCertificate, tokens } = parts;
  const trust = trustStageFor(route, parts.revocation);
  switch (route.auth) {
    case 'none':
      return () => NO_IDENTITY;
    case 'mtls':
      return (view) => {
        const cert = readCertificate(view);
        if (!cert.present) {
          throw new GatewayError('transport_certificate_missing', `transport certificate not found in the request${cert.why ? `: ${cert.why}` : ''}`);
        }
        const identity: Identity = { certificate: cert.certificate };
        // A revoked certificate never reaches the token endpoint.
        const trusted = trust?.(cert.certificate);
        return trusted instanceof Promise ? trusted.then(() => identity) : identity;
      };
    case 'certificate_bound_token': {
      const bound = (claims: TokenClaims, cert: CertificateResult): Identity => {
        const certificate = checkBinding(claims, cert);
        checkScopes(claims, route.scopes);
        return { claims, certificate };
      };
      const validated = (token: string, cert: CertificateResult): Identity | Promise<Identity> => {
        if (!tokens) throw new GatewayError('as_unavailable', 'no authorization server configured');
        const cached = tokens.cached(token);
        if (cached) return bound(cached, cert);
        return tokens.validate(token).then((claims) => bound(claims, cert));
      };
      return (view, target) => {
        const token = bearerToken(view.headers.authorization, target.query);
        const cert = readCertificate(view);
        // No certificate can never pass the binding check: refuse before spending an introspection call.
        if (!cert.present) throw new GatewayError('certificate_missing', `client certificate required${cert.why ? `: ${cert.why}` : ''}`);
        const trusted = trust?.(cert.certificate);
        return trusted instanceof Promise ? trusted.then(() => validated(token, cert)) : validated(token, cert);
      };
    }
  }
}

/** Headers certbound itself sends upstream (interaction id, identity, forwarded certificate), as name, value, … */
function addedHeaders(route: CompiledRoute, identity: Identity, interactionId: string): string[] {
  const names = route.identity;
  const add = ['x-fapi-interaction-id', interactionId];
  const { claims, certificate } = identity;
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

/** The answer to a failure, and the reason recorded for it. */
export function answerTo(error: unknown, route: CompiledRoute | undefined, realm: string): { response: ErrorResponse; reason: Reason } {
  if (!isGatewayError(error)) return { response: INTERNAL_ERROR, reason: 'internal' };
  return { response: errorResponse(error, route?.config.auth, realm), reason: error.code };
}

/** How a request ended, for its record. */
export function outcomeOf(status: number, reason: Reason | undefined): Outcome {
  if (reason === 'client_closed') return 'client_closed';
  if (reason === undefined) return 'forwarded';
  return reason === 'internal' || status >= 500 ? 'error' : 'rejected';
}

/** nginx's code for a client that closed the connection before its answer was complete. */
export const CLIENT_CLOSED_STATUS = 499;
