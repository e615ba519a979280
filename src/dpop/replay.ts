import { LRUCache } from 'lru-cache';

/**
 * RFC 9449 §11.1: a proof's `jti` is accepted once within the window its `iat` allows. Keyed by
 * (jkt, jti): one client cannot spend another's identifiers. An interface, so the store can be
 * shared across replicas (Redis) without the stage changing.
 */
export interface ReplayStore {
  /**
   * Records the proof; true when it is the first use, false when it was seen before. `untilMs`:
   * after this the proof's iat is outside the window anyway, so it need not be remembered.
   */
  firstUse(jkt: string, jti: string, untilMs: number): boolean | Promise<boolean>;
  readonly size: number;
}

/**
 * The in-process store: at most `entries` proofs (LRU), each kept until its window ends. When full
 * of live proofs the oldest is forgotten first: a bound on memory, at the price of replay
 * protection for proofs older than the `entries` newest ones (counted by the caller's metric).
 */
export function createLocalReplayStore(entries: number, clock: () => number, evicted?: () => void): ReplayStore {
  // Each entry holds the end of its window: only a proof pushed out before it counts as evicted.
  const seen = new LRUCache<string, number>({
    max: entries,
    // ttlResolution 0: expiry reads the clock on every check, so a frozen test clock is exact.
    ttlResolution: 0,
    perf: { now: clock },
    ...(evicted ? { dispose: (untilMs: number, _k: string, reason: LRUCache.DisposeReason) => void (reason === 'evict' && untilMs > clock() && evicted()) } : {}),
  });
  return {
    firstUse(jkt, jti, untilMs) {
      const key = `${jkt}:${jti}`;
      if (seen.has(key)) return false;
      seen.set(key, untilMs, { ttl: Math.max(1, untilMs - clock()) });
      return true;
    },
    get size() {
      return seen.size;
    },
  };
}
