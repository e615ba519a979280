import type { AuthorizationServerConfig, TokenValidationMode } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import { claimsAt, keyOf, withinTimes, type Outcome } from './claims.js';
import { createTokenCache, singleFlight, type TokenCache } from './cache.js';
import { createClientAuthentication } from './client-auth.js';
import { createDispatcher } from './http.js';
import { createIntrospection, type WarningLogger } from './introspection.js';
import { createKeySet, type KeySetTuning } from './jwks.js';
import { isJwtOf, verifyAccessToken } from './jwt.js';
import type { TokenClaims, TokenValidator } from './types.js';

export interface TokenValidatorDeps {
  readonly metrics?: Metrics;
  /** Milliseconds since the epoch. Default Date.now. */
  readonly clock?: () => number;
  /** Failed introspection calls are logged here: the client only ever sees `as_unavailable`. */
  readonly logger?: WarningLogger;
  /** Tests: JWKS timing in ms, overriding the configured seconds. */
  readonly jwks?: Partial<KeySetTuning>;
}

/** The validator with its cache exposed, for tests that inspect what is stored. */
export interface InspectableTokenValidator extends TokenValidator {
  readonly cache: Pick<TokenCache, 'keys'>;
}

/**
 * cache → (JWT | introspection), composed once from the configuration:
 * `jwt` verifies every token locally, `introspection` asks the authorization server,
 * `auto` verifies locally what looks like a JWT of our issuer and introspects the rest.
 */
export function createTokenValidator(
  config: AuthorizationServerConfig,
  mode: TokenValidationMode,
  deps: TokenValidatorDeps = {},
): InspectableTokenValidator {
  const clock = deps.clock ?? Date.now;
  const { metrics } = deps;
  const dispatcher = createDispatcher(config);
  const needsKeys = mode !== 'introspection' || config.signedIntrospection;
  const keys = needsKeys
    ? createKeySet({
        jwksUri: required(config.jwksUri, 'jwks_uri'),
        dispatcher,
        timeoutMs: config.timeoutMs,
        retryAfterSeconds: config.retryAfterSeconds,
        clock,
        ...(metrics ? { metrics } : {}),
        tuning: { cooldownMs: config.jwksCooldownSeconds * 1000, cacheMaxAgeMs: config.jwksMaxAgeSeconds * 1000, ...deps.jwks },
      })
    : undefined;

  const introspection = () => createIntrospection({
    config,
    endpoint: required(config.introspectionEndpoint, 'introspection_endpoint'),
    dispatcher,
    authenticate: createClientAuthentication(config, clock),
    clock,
    ...(config.signedIntrospection && keys ? { getKey: keys.getKey } : {}),
    ...(metrics ? { metrics } : {}),
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  const jwtVerification = () => {
    const getKey = required(keys, 'jwks_uri').getKey;
    const verification = {
      issuer: config.issuer,
      audience: required(config.audience, 'audience'),
      algorithms: config.allowedAlgorithms,
      clockSkewSeconds: config.clockSkewSeconds,
      clock,
    };
    return async (token: string): Promise<Outcome> => ({ active: true, claims: await verifyAccessToken(token, getKey, verification) });
  };
  const resolve = ((): ((token: string) => Promise<Outcome>) => {
    switch (mode) {
      case 'introspection':
        return introspection();
      case 'jwt':
        return jwtVerification();
      case 'auto': {
        const introspect = introspection();
        const verify = jwtVerification();
        return (token) => (isJwtOf(token, config.issuer) ? verify(token) : introspect(token));
      }
    }
  })();

  const cache = createTokenCache(config.cache, { clock, ...(metrics ? { metrics } : {}) });
  const shared = singleFlight<Outcome>();

  return {
    cache,
    async validate(token: string): Promise<TokenClaims> {
      const key = keyOf(token);
      const cached = cache.get(key);
      if (cached) {
        metrics?.cacheHits.inc();
        // The entry's TTL already ends at exp; re-checking keeps that true whatever the cache does.
        return claimsAt(cached, clock(), config.clockSkewSeconds);
      }
      metrics?.cacheMisses.inc();
      const outcome = await shared(key, async () => {
        const fresh = await resolve(token);
        cache.set(key, fresh);
        return fresh;
      });
      return claimsAt(outcome, clock(), config.clockSkewSeconds);
    },
    cached(token: string): TokenClaims | undefined {
      const outcome = cache.get(keyOf(token));
      if (outcome === undefined || !outcome.active || !withinTimes(outcome.claims, clock(), config.clockSkewSeconds)) return undefined;
      metrics?.cacheHits.inc();
      return outcome.claims;
    },
    ready: () => keys?.ready() ?? true,
    close: () => dispatcher.close(),
  };
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new Error(`authorization_server.${name} is required for this token_validation mode`);
  return value;
}
