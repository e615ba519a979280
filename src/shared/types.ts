/**
 * State shared across replicas (issue 14), behind a small interface: the Redis implementation
 * (./redis-store.ts, node-redis) is one engine; tests inject faults through it, and another
 * engine can be added. Every call is bounded by `timeout_ms` and never rejects: Redis down, slow
 * or answering garbage is a miss (`undefined`, `false`), counted and logged once per outage.
 * Nothing a request needs depends on it.
 */
export interface SharedStore {
  /** The value under `key`, or undefined (absent, or Redis failed). */
  get(key: string): Promise<Buffer | undefined>;
  /** Sets `key` for `ttlMs`; false when Redis failed. */
  set(key: string, value: Buffer, ttlMs: number): Promise<boolean>;
  /**
   * SET NX PX: true when this call created the key, false when it existed, undefined when Redis
   * failed (the caller decides what no answer means).
   */
  setIfAbsent(key: string, value: Buffer, ttlMs: number): Promise<boolean | undefined>;
  /** ZADD: `member` with `score` (an expiry in epoch ms) in the sorted set `key`; false on failure. */
  addScored(key: string, member: string, score: number): Promise<boolean>;
  /** Members of the sorted set `key` with a score above `minScore` (ZRANGE BYSCORE), or undefined on failure. */
  scoredAbove(key: string, minScore: number): Promise<string[] | undefined>;
  /** PUBLISH; false on failure. */
  publish(channel: string, message: string): Promise<boolean>;
  /**
   * Subscribes `onMessage` to `channel` on a connection of its own, kept across reconnects.
   * `onReconnect` runs every time that subscription is (re)established after the first, so a
   * replica can reload what it missed while cut off.
   */
  subscribe(channel: string, onMessage: (message: string) => void, onReconnect?: () => void): void;
  /** Connected now (for logs and metrics, never for readiness). */
  connected(): boolean;
  close(): Promise<void>;
}
