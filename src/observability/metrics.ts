import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './series.js';

/** What a revocation checker shows the metrics at scrape time. */
export interface RevocationView {
  cacheEntries(): number;
  crlSources(): readonly { readonly source: string; readonly nextUpdate?: number }[];
}

/**
 * Every metric certbound exports, declared once. Label values are bounded: route and upstream
 * names from the config, reason codes, status classes. Never a raw path or client input.
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters fail `promtool check metrics`; each is the sum of its unsuffixed sibling.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  const revocationViews = new Set<RevocationView>();
  const latency = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    registry,
    // Updated on every request: series resolved once per route (record.ts), plain arithmetic (series.ts).
    requests: new HotCounter(
      'certbound_requests_total',
      'Requests handled, by route, method, status class and outcome (forwarded, rejected, error, client_closed).',
      ['route', 'method', 'status_class', 'outcome'],
      registers,
    ),
    requestDuration: new HotHistogram('certbound_request_duration_seconds', 'Time from request start to response end, by route.', ['route'], latency, registers),
    authFailures: new HotCounter(
      'certbound_auth_failures_total',
      'Requests refused by authentication or authorization checks, by route and reason code.',
      ['route', 'reason'],
      registers,
    ),
    introspections: new Counter({
      name: 'certbound_introspection_requests_total',
      help: 'Token introspection calls to the authorization server, by result (active, inactive, error, timeout, overloaded).',
      labelNames: ['result'] as const,
      registers,
    }),
    introspectionDuration: new Histogram({
      name: 'certbound_introspection_duration_seconds',
      help: 'Duration of token introspection calls, by result.',
      labelNames: ['result'] as const,
      buckets: latency,
      registers,
    }),
    cacheHits: new Counter({ name: 'certbound_token_cache_hits_total', help: 'Token validations answered from the cache.', registers }),
    cacheMisses: new Counter({ name: 'certbound_token_cache_misses_total', help: 'Token validations that missed the cache.', registers }),
    cacheEntries: new Gauge({ name: 'certbound_token_cache_entries', help: 'Entries in the token cache (expired ones count until evicted or read).', registers }),
    jwksFetches: new Counter({
      name: 'certbound_jwks_fetches_total',
      help: 'JWKS fetches from the authorization server, by result (success, error).',
      labelNames: ['result'] as const,
      registers,
    }),
    revocationChecks: new Counter({
      name: 'certbound_revocation_checks_total',
      help: 'Client certificate revocation lookups, by source (ocsp, crl) and result (good, revoked, unknown, error).',
      labelNames: ['source', 'result'] as const,
      registers,
    }),
    revocationDuration: new Histogram({
      name: 'certbound_revocation_check_duration_seconds',
      help: 'Duration of OCSP exchanges and of CRL downloads and file reads, by source.',
      labelNames: ['source'] as const,
      buckets: latency,
      registers,
    }),
    revocationUnavailable: new Counter({
      name: 'certbound_revocation_unavailable_total',
      help: 'Requests whose certificate status no source could give, by action: allowed (soft_fail) or refused (hard_fail, 503).',
      labelNames: ['action'] as const,
      registers,
    }),
    crlLoads: new Counter({
      name: 'certbound_crl_loads_total',
      help: 'CRL downloads and file reads, by result (success, error).',
      labelNames: ['result'] as const,
      registers,
    }),
    revocationCacheEntries: new Gauge({
      name: 'certbound_revocation_cache_entries',
      help: 'Client certificates whose revocation status is cached.',
      registers,
      collect() {
        let entries = 0;
        for (const view of revocationViews) entries += view.cacheEntries();
        this.set(entries);
      },
    }),
    crlNextUpdate: new Gauge({
      name: 'certbound_crl_next_update_seconds',
      help: "Seconds until each loaded CRL's nextUpdate (negative: past it, stale), by source (URL or file).",
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const view of revocationViews) {
          for (const s of view.crlSources()) if (s.nextUpdate !== undefined) this.set({ source: s.source }, Math.round((s.nextUpdate - now) / 1000));
        }
      },
    }),
    /** What the running revocation checkers show the two gauges above (one per gateway; two while a reload overlaps). */
    revocationViews,
    sharedCacheLookups: new Counter({
      name: 'certbound_shared_cache_lookups_total',
      help: 'Second-level (Redis) token cache lookups after a local miss, by result (hit, miss, invalid: a value that did not open for its token or was out of date).',
      labelNames: ['result'] as const,
      registers,
    }),
    sharedLockWaits: new Counter({
      name: 'certbound_shared_lock_waits_total',
      help: "Waits for another replica's introspection of the same token, by result (notified: its answer arrived; timeout: this replica asked the server itself).",
      labelNames: ['result'] as const,
      registers,
    }),
    sharedStateErrors: new Counter({
      name: 'certbound_shared_state_errors_total',
      help: 'Failed or timed-out calls to the shared store (Redis), by operation: each is a miss, never a failed request.',
      labelNames: ['op'] as const,
      registers,
    }),
    revocations: new Counter({
      name: 'certbound_revocations_total',
      help: 'Revocations applied by this replica, by kind (token, client, certificate) and origin (api: POST /revocations here; peer: published by another replica; loaded: from the shared list at start or reconnect).',
      labelNames: ['kind', 'origin'] as const,
      registers,
    }),
    revocationLag: new Histogram({
      name: 'certbound_revocation_propagation_seconds',
      help: "Time from a revocation's acceptance on one replica to its application on this one (pub/sub lag).",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    dpopReplayEvictions: new Counter({
      name: 'certbound_dpop_replay_evictions_total',
      help: 'DPoP proofs forgotten before their iat window ended because dpop.replay_cache_entries was full: a replay of one of them would pass.',
      registers,
    }),
    upstreamDuration: new HotHistogram('certbound_upstream_duration_seconds', 'Time to the upstream response headers, by upstream.', ['upstream'], latency, registers),
    upstreamErrors: new Counter({
      name: 'certbound_upstream_errors_total',
      help: 'Failed upstream calls, by upstream and kind (refused, reset, timeout, overloaded).',
      labelNames: ['upstream', 'kind'] as const,
      registers,
    }),
    connectionsOpen: new Gauge({ name: 'certbound_open_connections', help: 'Open client connections on the traffic listener (TCP, before TLS).', registers }),
    connectionsRefused: new Counter({
      name: 'certbound_connections_refused_total',
      help: 'Client connections closed at once on arrival, by reason (max_connections).',
      labelNames: ['reason'] as const,
      registers,
    }),
    clientErrors: new Counter({
      name: 'certbound_client_errors_total',
      help: 'Client connections or requests cut for a limit or timeout, by kind (request_timeout, tls_handshake_timeout, header_overflow, parse_error, too_many_headers, body_stalled, read_stalled, pipeline_overflow).',
      labelNames: ['kind'] as const,
      registers,
    }),
    uncaughtErrors: new Counter({
      name: 'certbound_uncaught_errors_total',
      help: 'Errors that reached the process-level guard (a bug): logged, and the process kept serving.',
      registers,
    }),
    reloads: new Counter({
      name: 'certbound_config_reloads_total',
      help: 'Configuration reloads, by result (success, failure).',
      labelNames: ['result'] as const,
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'certbound_certificate_expiry_timestamp_seconds',
      help: 'Expiry time of the serving certificate and of the earliest-expiring client CA certificate.',
      labelNames: ['certificate'] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
