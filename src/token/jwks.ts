import { createRemoteJWKSet, customFetch, type FetchImplementation, type JWTVerifyGetKey } from 'jose';
import type { Dispatcher } from 'undici';
import type { Metrics } from '../observability/metrics.js';
import { unavailable } from './claims.js';
import { send } from './http.js';

/** From `jwks_cooldown_seconds` and `jwks_max_age_seconds` (their defaults live in the config loader). */
export interface KeySetTuning {
  /** After a fetch, an unknown `kid` (or a retry while the keys never loaded) waits this long before another. */
  readonly cooldownMs: number;
  /** Keys are fetched again when older than this. */
  readonly cacheMaxAgeMs: number;
}

export interface KeySet {
  readonly getKey: JWTVerifyGetKey;
  /** True once the key set has loaded. No side effect. */
  ready(): boolean;
  /** Starts loading the keys, and retries once per cooldown (at least 100 ms apart) until they load. Idempotent. */
  start(): void;
  /** Stops the retries. */
  close(): void;
}

/** Raised by the fetch below, so a failure to load keys is told apart from a token matching no key. */
class KeySetUnavailable extends Error {
  override readonly name = 'KeySetUnavailable';
}

/**
 * The authorization server's JWKS through jose's remote key set (timeout, cooldown, refetch on an
 * unknown `kid`), fetched over our undici dispatcher. Creating it fetches nothing (`certbound validate`
 * compiles the gateway without touching the network); the serving gateway calls `start`.
 */
export function createKeySet(opts: {
  jwksUri: string;
  dispatcher: Dispatcher;
  timeoutMs: number;
  retryAfterSeconds: number;
  metrics?: Metrics;
  tuning: KeySetTuning;
}): KeySet {
  const { cooldownMs, cacheMaxAgeMs } = opts.tuning;
  const fetchKeySet: FetchImplementation = async (url, init) => {
    try {
      const res = await send(opts.dispatcher, url, { method: 'GET', headers: Object.fromEntries(init.headers), signal: init.signal });
      if (res.status !== 200) throw new KeySetUnavailable(`JWKS answered ${res.status}`);
      const json: unknown = JSON.parse(res.body.toString('utf8'));
      if (typeof json !== 'object' || json === null || !Array.isArray((json as { keys?: unknown }).keys)) {
        throw new KeySetUnavailable('JWKS is not a JSON Web Key Set');
      }
      opts.metrics?.jwksFetches.inc({ result: 'success' });
      return Response.json(json);
    } catch (err) {
      opts.metrics?.jwksFetches.inc({ result: 'error' });
      throw err instanceof KeySetUnavailable ? err : new KeySetUnavailable('JWKS fetch failed', { cause: err });
    }
  };
  const remote = createRemoteJWKSet(new URL(opts.jwksUri), {
    timeoutDuration: opts.timeoutMs,
    cooldownDuration: cooldownMs,
    cacheMaxAge: cacheMaxAgeMs,
    [customFetch]: fetchKeySet,
  });

  let started = false;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const attempt = (): void => {
    retry = undefined;
    if (stopped || remote.jwks() !== undefined) return;
    void remote
      .reload()
      .catch(() => undefined)
      .then(() => {
        if (!stopped && remote.jwks() === undefined) retry = setTimeout(attempt, Math.max(cooldownMs, 100)).unref();
      });
  };

  return {
    getKey: async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        // A token matching no key is jose's to report (invalid_token); keys we could not load are not the token's fault.
        if (err instanceof KeySetUnavailable) throw unavailable(opts.retryAfterSeconds);
        throw err;
      }
    },
    ready: () => remote.jwks() !== undefined,
    start: () => {
      if (started) return;
      started = true;
      attempt();
    },
    close: () => {
      stopped = true;
      clearTimeout(retry);
    },
  };
}
