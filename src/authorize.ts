import { GatewayError } from './errors.js';
import { accessToken, type Credentials } from './bearer.js';
import { checkBinding, refuseDowngrade } from './binding.js';
import { checkScopes } from './policy.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { RouteConfig } from './config/types.js';
import type { TokenClaims, TokenValidator } from './token/types.js';
import type { Target } from './route.js';
import type { RequestView } from './gateway.js';
import { hasAnyRole } from './certificate/psd2.js';
import type { RevocationChecker } from './revocation/checker.js';
import { bindKey, claimFirstUse, proveKey, type DpopParts, type ProvenKey } from './dpop/stage.js';

/**
 * A route's auth stages, compiled once from its `auth`: credentials (the access token, the
 * certificate, the DPoP proof: read from the request and checked before any network call) →
 * certificate trust → token validation → binding (cnf.x5t#S256 or cnf.jkt) → policy. A token the
 * cache holds is checked synchronously: the common request costs no promise.
 */

/** Who the request proved to be. */
export interface Identity {
  readonly claims?: TokenClaims;
  readonly certificate?: ClientCertificate;
  /** The RFC 7638 thumbprint of the DPoP key the request proved possession of. */
  readonly jkt?: string;
  /** A fresh DPoP nonce for the response (RFC 9449 §8.2). */
  readonly dpopNonce?: string;
}
export const NO_IDENTITY: Identity = Object.freeze({});

export type Authorize = (view: RequestView, target: Target) => Identity | Promise<Identity>;

/** What the auth stages need of the gateway. */
export interface AuthParts {
  readonly readCertificate: (view: RequestView) => CertificateResult;
  readonly tokens: TokenValidator | undefined;
  /** Revocation (OCSP, CRL), when client_certificate.revocation.mode is not off. */
  readonly revocation?: RevocationChecker | undefined;
  /** DPoP, when a route takes DPoP proofs. */
  readonly dpop?: DpopParts | undefined;
}

type Trust = (certificate: ClientCertificate) => void | Promise<void>;

/**
 * Certificate trust beyond the chain: the route's PSD2 roles (a synchronous check, before any
 * network call), then revocation (synchronous while the status is cached). Undefined when the
 * route asks neither, so such routes pay nothing.
 */
export function trustStageFor(route: RouteConfig, revocation: RevocationChecker | undefined): Trust | undefined {
  const roles = route.psd2Roles;
  if (roles.length === 0 && revocation === undefined) return undefined;
  const lacking = `client certificate lacks PSD2 role ${roles.join(' or ')}`;
  return (certificate) => {
    if (roles.length > 0 && !hasAnyRole(certificate.psd2, roles)) throw new GatewayError('insufficient_role', lacking);
    return revocation?.check(certificate);
  };
}

const then = <T, U>(value: T | Promise<T>, next: (value: T) => U | Promise<U>): U | Promise<U> =>
  value instanceof Promise ? value.then(next) : next(value);

const missingCertificate = (cert: CertificateResult): GatewayError =>
  new GatewayError('certificate_missing', `client certificate required${!cert.present && cert.why ? `: ${cert.why}` : ''}`);

const noServer = (): never => {
  throw new GatewayError('as_unavailable', 'no authorization server configured');
};

/** The token's claims: from the cache synchronously, else validated (introspection, JWT). */
function claimsOf(tokens: TokenValidator | undefined, token: string): TokenClaims | Promise<TokenClaims> {
  if (!tokens) return noServer();
  return tokens.cached(token) ?? tokens.validate(token);
}

/**
 * A Bearer token bound to the client certificate (RFC 8705), never a DPoP-bound one (RFC 9449
 * §7.2). Written without closures: a trusted certificate and a cached token cost no allocation.
 */
function certificateBound(route: RouteConfig, parts: AuthParts, trust: Trust | undefined) {
  const bound = (claims: TokenClaims, cert: CertificateResult): Identity => {
    refuseDowngrade(claims);
    const certificate = checkBinding(claims, cert);
    checkScopes(claims, route.scopes);
    return { claims, certificate };
  };
  const validated = (token: string, cert: CertificateResult): Identity | Promise<Identity> => {
    const claims = claimsOf(parts.tokens, token);
    return claims instanceof Promise ? claims.then((c) => bound(c, cert)) : bound(claims, cert);
  };
  return (view: RequestView, token: string): Identity | Promise<Identity> => {
    const cert = parts.readCertificate(view);
    // No certificate can never pass the binding check: refuse before spending an introspection call.
    if (!cert.present) throw missingCertificate(cert);
    const trusted = trust?.(cert.certificate);
    return trusted instanceof Promise ? trusted.then(() => validated(token, cert)) : validated(token, cert);
  };
}

/** A DPoP token bound to the key of the request's proof (RFC 9449 §7.1); a token also bound to a certificate needs that too. */
function keyBound(route: RouteConfig, parts: AuthParts, dpop: DpopParts, trust: Trust | undefined) {
  const origin = route.publicOrigin as string;
  return (view: RequestView, target: Target, method: string, token: string): Identity | Promise<Identity> => {
    const proven: ProvenKey = proveKey(dpop, { proofs: view.headers['dpop'], method, origin, encodedPath: target.encodedPath, accessToken: token });
    // The binding before the scopes, as on the certificate path: a token used with another key
    // learns nothing about its scopes. A cached token: the proof counts as used once the binding
    // holds. A token to look up: its first use is claimed meanwhile, so that the Redis calls of
    // the two overlap (a request waits at most 2 × timeout_ms on Redis in all); the verdict still
    // comes after the binding.
    const tokens = parts.tokens ?? noServer();
    const cached = tokens.cached(token);
    const claimed = cached === undefined ? claimFirstUse(dpop, proven) : undefined;
    return then(cached ?? tokens.validate(token), (claims) => then(bindKey(dpop, claims, proven, claimed), () => {
      const certificate = claims.x5tS256Bytes === undefined ? undefined : checkBinding(claims, parts.readCertificate(view));
      checkScopes(claims, route.scopes);
      const identity: Identity = {
        claims,
        jkt: proven.proof.jkt,
        ...(certificate ? { certificate } : {}),
        ...(proven.freshNonce !== undefined ? { dpopNonce: proven.freshNonce } : {}),
      };
      // A certificate the token is bound to is trusted as on the certificate path (revocation).
      return certificate === undefined ? identity : then(trust?.(certificate), () => identity);
    }));
  };
}

export function authorizerFor(route: RouteConfig, parts: AuthParts): Authorize {
  const { readCertificate } = parts;
  const trust = trustStageFor(route, parts.revocation);
  const credentials = (view: RequestView, target: Target): Credentials => accessToken(view.headers.authorization, target.query);
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
        return then(trust?.(cert.certificate), () => identity);
      };
    case 'certificate_bound_token': {
      const bound = certificateBound(route, parts, trust);
      return (view, target) => {
        const { scheme, token } = credentials(view, target);
        // RFC 6750 §3.1: another scheme is no credential at all here (401, no error code).
        if (scheme !== 'bearer') throw new GatewayError('missing_token', 'bearer token required');
        return bound(view, token);
      };
    }
    case 'dpop_bound_token': {
      const bound = keyBound(route, parts, parts.dpop as DpopParts, trust);
      return (view, target) => {
        const { scheme, token } = credentials(view, target);
        if (scheme !== 'dpop') throw new GatewayError('dpop_required', 'this route accepts only DPoP-bound access tokens (Authorization: DPoP)');
        return bound(view, target, view.method, token);
      };
    }
    case 'sender_constrained_token': {
      const byCertificate = certificateBound(route, parts, trust);
      const byKey = keyBound(route, parts, parts.dpop as DpopParts, trust);
      return (view, target) => {
        const { scheme, token } = credentials(view, target);
        return scheme === 'dpop' ? byKey(view, target, view.method, token) : byCertificate(view, token);
      };
    }
  }
}

