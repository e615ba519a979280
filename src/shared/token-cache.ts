import type { Metrics } from '../observability/metrics.js';
import { claimsOf, membersOf, withinTimes, type Outcome } from '../token/claims.js';
import type { TokenClaims } from '../token/types.js';
import type { Sealer } from './seal.js';
import type { SharedStore } from './types.js';

/**
 * The second-level token cache (issue 14): a local miss reads here before introspecting, and an
 * active answer is written here with the local cache's TTL rule, min(exp − now, max_ttl).
 * Values are sealed (./seal.ts): a value that does not open for this token — rewritten, another
 * token's, garbage — is a miss, and the token is introspected. Times, binding and scopes are
 * checked on every request as for any cached token.
 */
export interface SharedTokenCache {
  read(token: string): Promise<Outcome | undefined>;
  /** Fire and forget: a request never waits for it. */
  write(token: string, claims: TokenClaims): void;
}

export interface SharedTokenCacheOptions {
  readonly store: SharedStore;
  readonly sealer: Sealer;
  readonly maxTtlSeconds: number;
  readonly clockSkewSeconds: number;
  readonly clock: () => number;
  readonly metrics?: Metrics;
}

const malformed = (member: string): Error => new Error(`shared value: ${member} is malformed`);

export function createSharedTokenCache(options: SharedTokenCacheOptions): SharedTokenCache {
  const { store, sealer, clock, metrics } = options;
  const keyOf = (token: string): string => `token:${sealer.keyOf(token)}`;
  const count = (result: 'hit' | 'miss' | 'invalid'): void => void metrics?.sharedCacheLookups.inc({ result });
  return {
    async read(token) {
      const sealed = await store.get(keyOf(token));
      if (sealed === undefined) return void count('miss');
      const plaintext = sealer.open(token, sealed);
      let claims: TokenClaims | undefined;
      try {
        claims = plaintext === undefined ? undefined : claimsOf(JSON.parse(plaintext.toString('utf8')) as Record<string, unknown>, malformed);
      } catch {
        claims = undefined;
      }
      if (claims === undefined || !withinTimes(claims, clock(), options.clockSkewSeconds)) return void count('invalid');
      count('hit');
      return { active: true, claims };
    },
    write(token, claims) {
      const max = options.maxTtlSeconds * 1000;
      const ttl = Math.floor(claims.exp === undefined ? max : Math.min(claims.exp * 1000 - clock(), max));
      if (ttl <= 0) return;
      void store.set(keyOf(token), sealer.seal(token, Buffer.from(JSON.stringify(membersOf(claims)))), ttl);
    },
  };
}
