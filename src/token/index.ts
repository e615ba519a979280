import type { JWTVerifyGetKey } from 'jose';
import type { AuthorizationServerConfig, IntrospectionConfig, JwksConfig, JwtConfig } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import { claimsAt, keyOf, withinTimes, type Outcome } from './claims.js';
import { createTokenCache, singleFlight, type TokenCache } from './cache.js';
import { createClientAuthentication } from './client-auth.js';
import { createDispatcher } from './http.js';
import { createIntrospection, type WarningLogger } from './introspection.js';
import { createKeySet, type KeySet, type KeySetTuning } from './jwks.js';
import { isJwtOf, verifyAccessToken } from './jwt.js';
import type { TokenClaims, TokenValidator } from './types.js';
import { GatewayError } from '../errors.js';
import type { RevocationList } from '../shared/revocations.js';
import type { SharedTokenCache } from '../shared/token-cache.js';

export interface TokenValidatorDeps {
  readonly metrics?: Metrics;
  /** Milliseconds since the epoch. Default Date.now. */
  readonly clock?: () => number;
  /** Failed introspection calls are logged here: the client only ever sees `as_unavailable`. */
  readonly logger?: WarningLogger;
  /** Tests: JWKS timing in ms, overriding the configured seconds. */
  readonly jwks?: Partial<KeySetTuning>;
  /** Tokens revoked through POST /revocations: refused without asking the server. */
  readonly revocations?: RevocationList;
  /** The second-level cache shared with the other replicas (shared_state.redis_url). */
  readonly shared?: SharedTokenCache;
}

const revokedToken = (): GatewayError => new GatewayError('token_revoked', 'the access token has been revoked');

/** The validator with its cache exposed, for tests that inspect what is stored. */
export interface InspectableTokenValidator extends TokenValidator {
  readonly cache: Pick<TokenCache, 'keys'>;
}

/**
 * cache → (JWT | introspection), composed once from the configuration:
 * `jwt` verifies every token locally, `introspection` asks the authorization server,
 * `auto` verifies locally what looks like a JWT of our issuer and introspects the rest.
 */
export function createTokenValidator(config: AuthorizationServerConfig, deps: TokenValidatorDeps = {}): InspectableTokenValidator {
  const clock = deps.clock ?? Date.now;
  const { metrics } = deps;
  const { validation } = config;
  const dispatcher = createDispatcher(config);
  const keySet = (jwks: JwksConfig) =>
    createKeySet({
      jwksUri: jwks.uri,
      dispatcher,
      timeoutMs: config.timeoutMs,
      retryAfterSeconds: config.retryAfterSeconds,
      ...(metrics ? { metrics } : {}),
      tuning: { cooldownMs: jwks.cooldownSeconds * 1000, cacheMaxAgeMs: jwks.maxAgeSeconds * 1000, ...deps.jwks },
    });
  const introspection = (introspect: IntrospectionConfig, getKey: JWTVerifyGetKey | undefined) => createIntrospection({
    config,
    endpoint: introspect.endpoint,
    clientId: introspect.authentication.clientId,
    dispatcher,
    authenticate: createClientAuthentication(introspect.authentication, clock),
    clock,
    ...(getKey ? { getKey } : {}),
    ...(metrics ? { metrics } : {}),
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  const jwtVerification = (jwt: JwtConfig, getKey: JWTVerifyGetKey) => {
    const verification = {
      issuer: config.issuer,
      audience: jwt.audience,
      algorithms: config.allowedAlgorithms,
      clockSkewSeconds: config.clockSkewSeconds,
      clock,
    };
    return async (token: string): Promise<Outcome> => ({ active: true, claims: await verifyAccessToken(token, getKey, verification) });
  };
  // Each mode gets exactly the parts its config carries (the config step required them).
  const { resolve, keys } = ((): { resolve: (token: string) => Promise<Outcome>; keys?: KeySet } => {
    switch (validation.mode) {
      case 'introspection': {
        if (!('jwks' in validation)) return { resolve: introspection(validation.introspection, undefined) };
        const keys = keySet(validation.jwks);
        return { resolve: introspection(validation.introspection, keys.getKey), keys };
      }
      case 'jwt': {
        const keys = keySet(validation.jwks);
        return { resolve: jwtVerification(validation.jwt, keys.getKey), keys };
      }
      case 'auto': {
        const keys = keySet(validation.jwks);
        const verify = jwtVerification(validation.jwt, keys.getKey);
        const introspect = introspection(validation.introspection, validation.introspection.signed ? keys.getKey : undefined);
        return { resolve: (token) => (isJwtOf(token, config.issuer) ? verify(token) : introspect(token)), keys };
      }
    }
  })();

  const cache = createTokenCache(config.cache, { clock, ...(metrics ? { metrics } : {}) });
  const shared = singleFlight<Outcome>();

  const { revocations, shared: sharedCache } = deps;
  /** The claims, unless revoked since (checked only while the revocation list holds anything). */
  const unlessRevoked = (key: string, claims: TokenClaims): TokenClaims => {
    if (revocations !== undefined && revocations.revoked(key, claims)) throw revokedToken();
    return claims;
  };

  return {
    cache,
    async validate(token: string): Promise<TokenClaims> {
      const key = keyOf(token);
      if (revocations !== undefined && revocations.revoked(key, undefined)) throw revokedToken();
      const cached = cache.get(key);
      if (cached) {
        metrics?.cacheHits.inc();
        // The entry's TTL already ends at exp; re-checking keeps that true whatever the cache does.
        return unlessRevoked(key, claimsAt(cached, clock(), config.clockSkewSeconds));
      }
      metrics?.cacheMisses.inc();
      const outcome = await shared(key, async () => {
        // Another replica may know it, or be asking the server about it right now.
        const known = sharedCache && ((await sharedCache.read(token)) ?? (await sharedCache.fromHolder(token)));
        if (known) {
          cache.set(key, known.outcome, known.untilMs);
          return known.outcome;
        }
        const fresh = await resolve(token);
        cache.set(key, fresh);
        sharedCache?.write(token, fresh);
        return fresh;
      });
      return unlessRevoked(key, claimsAt(outcome, clock(), config.clockSkewSeconds));
    },
    cached(token: string): TokenClaims | undefined {
      const key = keyOf(token);
      const outcome = cache.get(key);
      if (outcome === undefined || !outcome.active || !withinTimes(outcome.claims, clock(), config.clockSkewSeconds)) return undefined;
      // A revoked token goes to validate, which refuses it.
      if (revocations !== undefined && revocations.revoked(key, outcome.claims)) return undefined;
      metrics?.cacheHits.inc();
      return outcome.claims;
    },
    ready: () => keys?.ready() ?? true,
    start: () => keys?.start(),
    close: () => {
      keys?.close();
      return dispatcher.close();
    },
  };
}
