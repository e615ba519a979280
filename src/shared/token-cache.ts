import type { Metrics } from '../observability/metrics.js';
import { claimsOf, membersOf, withinTimes, type Outcome } from '../token/claims.js';
import type { FillBus } from './fills.js';
import type { Sealer } from './seal.js';
import type { SharedStore } from './types.js';

/**
 * The second-level token cache (issue 14): a local miss reads here before introspecting, and an
 * active answer is written here with the local cache's TTL rule, min(exp − now, max_ttl).
 * Values are sealed (./seal.ts): a value that does not open for this token — rewritten, another
 * token's, garbage — is a miss, and the token is introspected. Times, binding and scopes are
 * checked on every request as for any cached token. Concurrent first uses of one token on
 * several replicas make one introspection: a short lock, the others notified (./fills.ts).
 */
export interface SharedTokenCache {
  read(token: string): Promise<Outcome | undefined>;
  /**
   * After a miss: undefined when this replica should introspect (it took the lock, Redis could
   * not say, or the holder did not answer within LOCK_WAIT_MS); otherwise the holder's answer.
   */
  fromHolder(token: string): Promise<Outcome | undefined>;
  /** Stores an answer (active ones) and announces it to waiting replicas. Fire and forget. */
  write(token: string, outcome: Outcome): void;
}

export interface SharedTokenCacheOptions {
  readonly store: SharedStore;
  readonly sealer: Sealer;
  readonly fills: FillBus;
  readonly maxTtlSeconds: number;
  readonly clockSkewSeconds: number;
  /** The authorization server's timeout: a lock outlives one introspection by a second. */
  readonly introspectionTimeoutMs: number;
  readonly clock: () => number;
  readonly metrics?: Metrics;
}

/** How long a replica waits for another's introspection of the same token before asking itself. */
export const LOCK_WAIT_MS = 1000;

const malformed = (member: string): Error => new Error(`shared value: ${member} is malformed`);
const INACTIVE = '{"active":false}';

export function createSharedTokenCache(options: SharedTokenCacheOptions): SharedTokenCache {
  const { store, sealer, fills, clock, metrics } = options;
  const keyOf = (token: string): string => `token:${sealer.keyOf(token)}`;
  const count = (result: 'hit' | 'miss' | 'invalid'): void => void metrics?.sharedCacheLookups.inc({ result });

  /** A sealed answer for `token`: an active one still in its times, inactive, or undefined when it does not open. */
  const outcomeOf = (token: string, sealed: Buffer): Outcome | undefined => {
    const plaintext = sealer.open(token, sealed)?.toString('utf8');
    if (plaintext === undefined) return undefined;
    if (plaintext === INACTIVE) return { active: false };
    try {
      const claims = claimsOf(JSON.parse(plaintext) as Record<string, unknown>, malformed);
      return withinTimes(claims, clock(), options.clockSkewSeconds) ? { active: true, claims } : undefined;
    } catch {
      return undefined;
    }
  };

  return {
    async read(token) {
      const sealed = await store.get(keyOf(token));
      if (sealed === undefined) return void count('miss');
      const outcome = outcomeOf(token, sealed);
      if (outcome === undefined || !outcome.active) return void count('invalid');
      count('hit');
      return outcome;
    },
    async fromHolder(token) {
      const key = keyOf(token);
      // Listening before asking for the lock: the holder's announcement cannot slip in between.
      const waiting = fills.wait(key, LOCK_WAIT_MS);
      const mine = await store.setIfAbsent(`lock:${key}`, Buffer.from('1'), options.introspectionTimeoutMs + 1000);
      if (mine !== false) {
        waiting.cancel();
        return undefined;
      }
      const sealed = await waiting.answer;
      const outcome = sealed === undefined ? undefined : outcomeOf(token, sealed);
      metrics?.sharedLockWaits.inc({ result: outcome === undefined ? 'timeout' : 'notified' });
      return outcome;
    },
    write(token, outcome) {
      const key = keyOf(token);
      if (!outcome.active) return fills.announce(key, sealer.seal(token, Buffer.from(INACTIVE)));
      const { claims } = outcome;
      const max = options.maxTtlSeconds * 1000;
      const ttl = Math.floor(claims.exp === undefined ? max : Math.min(claims.exp * 1000 - clock(), max));
      const sealed = sealer.seal(token, Buffer.from(JSON.stringify(membersOf(claims))));
      fills.announce(key, sealed);
      if (ttl > 0) void store.set(key, sealed, ttl);
    },
  };
}
