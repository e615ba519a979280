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
  read(token: string): Promise<Known | undefined>;
  /**
   * After a miss: undefined when this replica should introspect (it took the lock, Redis could
   * not say, or the holder did not answer within LOCK_WAIT_MS); otherwise the holder's answer.
   */
  fromHolder(token: string): Promise<Known | undefined>;
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

/**
 * An answer another replica got. An active one carries the end of the TTL it was first cached
 * with (sealed with it): a replica that reads it caches it no longer than that, so no copy outlives
 * max_ttl from the introspection (what a revocation's lifetime counts on).
 */
export interface Known {
  readonly outcome: Outcome;
  /** Epoch ms: cache no longer than this (active answers). */
  readonly untilMs?: number;
}

/** How long a replica waits for another's introspection of the same token before asking itself. */
export const LOCK_WAIT_MS = 1000;

const malformed = (member: string): Error => new Error(`shared value: ${member} is malformed`);
const INACTIVE = '{"active":false}';

export function createSharedTokenCache(options: SharedTokenCacheOptions): SharedTokenCache {
  const { store, sealer, fills, clock, metrics } = options;
  const keyOf = (token: string): string => `token:${sealer.keyOf(token)}`;
  const count = (result: 'hit' | 'miss' | 'invalid'): void => void metrics?.sharedCacheLookups.inc({ result });

  /**
   * A sealed answer for `token`: an active one (`{"u": until ms, "c": claims}`) still in its times
   * and before its until, inactive, or undefined when it does not open or is not one of those.
   */
  const knownOf = (token: string, sealed: Buffer): Known | undefined => {
    const plaintext = sealer.open(token, sealed)?.toString('utf8');
    if (plaintext === undefined) return undefined;
    if (plaintext === INACTIVE) return { outcome: { active: false } };
    try {
      const { u: untilMs, c } = JSON.parse(plaintext) as { u?: unknown; c?: unknown };
      if (typeof untilMs !== 'number' || typeof c !== 'object' || c === null || untilMs <= clock()) return undefined;
      const claims = claimsOf(c as Record<string, unknown>, malformed);
      return withinTimes(claims, clock(), options.clockSkewSeconds) ? { outcome: { active: true, claims }, untilMs } : undefined;
    } catch {
      return undefined;
    }
  };

  return {
    async read(token) {
      const sealed = await store.get(keyOf(token));
      if (sealed === undefined) return void count('miss');
      const known = knownOf(token, sealed);
      if (known === undefined || !known.outcome.active) return void count('invalid');
      count('hit');
      return known;
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
      const known = sealed === undefined ? undefined : knownOf(token, sealed);
      metrics?.sharedLockWaits.inc({ result: known === undefined ? 'timeout' : 'notified' });
      return known;
    },
    write(token, outcome) {
      const key = keyOf(token);
      if (!outcome.active) return fills.announce(key, sealer.seal(token, Buffer.from(INACTIVE)));
      const { claims } = outcome;
      const max = options.maxTtlSeconds * 1000;
      const now = clock();
      const ttl = Math.floor(claims.exp === undefined ? max : Math.min(claims.exp * 1000 - now, max));
      const sealed = sealer.seal(token, Buffer.from(JSON.stringify({ u: now + ttl, c: membersOf(claims) })));
      fills.announce(key, sealed);
      if (ttl > 0) void store.set(key, sealed, ttl);
    },
  };
}
