import type { Config } from '../config/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { createRedisStore } from '../shared/redis-store.js';
import { createRevocationHub, type RevocationHub } from '../shared/revocation-hub.js';
import type { RevocationList } from '../shared/revocations.js';
import { createSealer, type Sealer } from '../shared/seal.js';
import type { SharedStore } from '../shared/types.js';
import { createFillBus, type FillBus } from '../shared/fills.js';

/**
 * The process's shared state (issue 14), made once at start and kept across reloads: the Redis
 * store when shared_state.redis_url is set, its sealer, and the revocation hub (which works
 * without Redis too, for this process alone).
 */
export interface SharedState {
  readonly hub: RevocationHub;
  /** What every gateway this process compiles is given. */
  readonly deps: { readonly revocations: RevocationList; readonly shared?: { readonly store: SharedStore; readonly sealer: Sealer; readonly fills: FillBus } };
  /**
   * Waits a bounded time for the first connection, then loads the shared revocation list, so a
   * replica that starts while Redis is reachable refuses what was revoked before it started.
   */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** At most this long for the first connection at start; readiness never waits on Redis beyond it. */
const CONNECT_WAIT_MS = 2000;

export function createSharedState(config: Config, deps: { readonly metrics: Metrics; readonly log: Logger; readonly clock: () => number }): SharedState {
  const { metrics, log, clock } = deps;
  const settings = config.sharedState;
  const store = settings
    ? createRedisStore({
          url: settings.url,
          keyPrefix: settings.keyPrefix,
          timeoutMs: settings.timeoutMs,
          ...(settings.ca ? { ca: settings.ca.contents } : {}),
          log,
          errors: (op: string) => metrics.sharedStateErrors.inc({ op }),
        })
    : undefined;
  const shared = settings && store ? { store, sealer: createSealer(settings.secret), fills: createFillBus(store) } : undefined;
  const hub = createRevocationHub({ clock, metrics, log, ...(shared ? { shared } : {}) });
  return {
    hub,
    deps: { revocations: hub.list, ...(shared ? { shared } : {}) },
    async start() {
      if (shared) {
        const deadline = Date.now() + CONNECT_WAIT_MS;
        while (!shared.store.connected() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await hub.start();
    },
    async close() {
      hub.close();
      await shared?.store.close();
    },
  };
}
