import { LRUCache } from 'lru-cache';
import type { TokenCacheConfig } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import { Claims, type Outcome } from './claims.js';

export interface TokenCache {
  get(key: string): Outcome | undefined;
  /**
   * Stores an outcome for as long as it may be trusted: never past `exp`, never past the configured
   * TTLs, never past `untilMs` (epoch ms) when given.
   */
  set(key: string, outcome: Outcome, untilMs?: number): void;
  keys(): string[];
}

/**
 * A bounded LRU of validation outcomes keyed by token hash (see keyOf). Active entries live
 * min(exp − now, max_ttl); inactive ones only with a negative TTL. `clock` drives expiry.
 */
export function createTokenCache(config: TokenCacheConfig, deps: { clock: () => number; metrics?: Metrics }): TokenCache {
  if (config.maxEntries === 0) return { get: () => undefined, set: () => undefined, keys: () => [] };
  // ttlResolution 0: expiry reads the clock on every check, so a frozen test clock is exact.
  const lru = new LRUCache<string, Outcome>({ max: config.maxEntries, ttlResolution: 0, perf: { now: deps.clock } });
  const count = () => deps.metrics?.cacheEntries.set(lru.size);

  const ttlOf = (outcome: Outcome): number => {
    if (!outcome.active) return config.negativeTtlSeconds * 1000;
    const max = config.maxTtlSeconds * 1000;
    return outcome.claims.exp === undefined ? max : Math.min(outcome.claims.exp * 1000 - deps.clock(), max);
  };

  return {
    get: (key) => {
      const outcome = lru.get(key); // drops the entry if it has expired
      if (outcome === undefined) count(); // a hit leaves the size as it was
      return outcome;
    },
    set: (key, outcome, untilMs) => {
      // lru-cache reads a TTL of 0 as "forever": a non-positive TTL means "don't cache".
      const ttl = Math.floor(untilMs === undefined ? ttlOf(outcome) : Math.min(ttlOf(outcome), untilMs - deps.clock()));
      if (ttl <= 0) return;
      // Claims made by claimsOf are their own active outcome: no wrapper object per entry.
      lru.set(key, outcome.active && outcome.claims instanceof Claims ? outcome.claims : outcome, { ttl });
      count();
    },
    keys: () => [...lru.keys()],
  };
}

/** Concurrent calls for one key share one promise; the key is free again once it settles. */
export function singleFlight<T>(): (key: string, run: () => Promise<T>) => Promise<T> {
  const flights = new Map<string, Promise<T>>();
  return (key, run) => {
    const pending = flights.get(key);
    if (pending) return pending;
    const flight = run().finally(() => flights.delete(key));
    flights.set(key, flight);
    return flight;
  };
}
