import type { ErrorCode } from '../errors.js';
import type { Metrics } from './metrics.js';
import type { CounterSeries, HistogramSeries } from './series.js';

/** How a request ended, as the pipeline decided it (the `outcome` label and access-line member). */
export type Outcome = 'forwarded' | 'rejected' | 'error' | 'client_closed';

/** Why a request was not forwarded as asked: an error code, a bug, or the client leaving first. */
export type Reason = ErrorCode | 'internal' | 'client_closed';

/**
 * One request that ended, as the pipeline saw it: the only input of its metrics and its access
 * line. Plain values that certbound built or bounded; never a token, a query string or a whole
 * certificate.
 */
export interface RequestRecord {
  /** A validated or minted UUID. */
  readonly interactionId: string;
  /** Route name; undefined when no route matched. */
  readonly route: string | undefined;
  /** As the client sent it (may be anything). */
  readonly method: string;
  /** Normalized path, never the query string; undefined when the target did not parse. */
  readonly path: string | undefined;
  /** Upstream name, when the request was sent upstream. */
  readonly upstream: string | undefined;
  /** Sent to the client; 499 when the client closed before its answer (like nginx). */
  readonly status: number;
  readonly reason: Reason | undefined;
  readonly outcome: Outcome;
  readonly latencySeconds: number;
  /** Time to the upstream's response headers, when it answered. */
  readonly upstreamSeconds: number | undefined;
  /** Bytes of the response body sent to the client. */
  readonly responseBytes: number;
  readonly clientId: string | undefined;
  readonly thumbprint: string | undefined;
  /** The thumbprint of the DPoP key the request proved possession of. */
  readonly jkt?: string | undefined;
  /** The TCP peer's address. */
  readonly peer: string | undefined;
}

/** The `route` label and access-line value of a request that matched no route. */
export const NO_ROUTE = 'none';

/** The `method` label of a method outside the configured list. */
const OTHER_METHOD = 'OTHER';

const OUTCOMES: readonly Outcome[] = ['forwarded', 'rejected', 'error', 'client_closed'];
const OUTCOME_INDEX: Readonly<Record<Outcome, number>> = { forwarded: 0, rejected: 1, error: 2, client_closed: 3 };
/** Status classes 0xx–9xx: whatever an upstream sends, the key stays in range. */
const STATUS_CLASSES = 10;

/** Reasons that count in `certbound_auth_failures_total`: refusals by authentication or authorization checks. */
const AUTH_FAILURE_REASONS: ReadonlySet<Reason> = new Set<ErrorCode>([
  'missing_token', 'malformed_token', 'token_in_query', 'invalid_token', 'inactive', 'expired', 'not_yet_valid', 'unbound_token',
  'insufficient_scope', 'certificate_missing', 'certificate_mismatch', 'certificate_untrusted', 'certificate_expired',
  'certificate_malformed', 'certificate_header_repeated', 'certificate_header_untrusted', 'transport_certificate_missing', 'as_unavailable',
  'certificate_revoked', 'insufficient_role', 'revocation_unavailable',
  'token_revoked', 'invalid_dpop_proof', 'dpop_replay', 'use_dpop_nonce', 'dpop_required', 'dpop_downgrade', 'dpop_unbound_token', 'dpop_key_mismatch', 'dpop_ath_mismatch',
]);

/** The per-request series of one route (or of NO_ROUTE), resolved when its gateway is compiled. */
export interface RouteSeries {
  /** The `route` label value. */
  readonly route: string;
  /** `certbound_requests_total` for (method, status class of `status`, outcome); a method outside the list counts as OTHER. */
  requests(method: string, status: number, outcome: Outcome): CounterSeries;
  /** `certbound_request_duration_seconds`. */
  readonly duration: HistogramSeries;
  /** `certbound_auth_failures_total` for a reason that is an auth failure; undefined for any other reason. */
  authFailures(reason: Reason): CounterSeries | undefined;
  /** All three for one request that ended. */
  count(record: RequestRecord): void;
}

/**
 * The series of one route. Call once per route per compiled gateway: a reload's new call resolves
 * the same series (same labels, same state), so counts go on across reloads. A series appears in
 * /metrics at its first update, as with prom-client. `methods` are the methods the config knows
 * (its schema's list); anything else counts as OTHER, so client input never becomes a label.
 */
export function createRouteSeries(metrics: Metrics, routeName: string, methods: readonly string[]): RouteSeries {
  const methodLabels = [...new Set(methods), OTHER_METHOD];
  const other = methodLabels.length - 1;
  // (method, status class, outcome) → a small integer; series resolved at first use.
  const requests: (CounterSeries | undefined)[] = new Array<CounterSeries | undefined>(methodLabels.length * STATUS_CLASSES * OUTCOMES.length).fill(undefined);
  const authFailures = new Map<Reason, CounterSeries>();
  let duration: HistogramSeries | undefined;
  const series: RouteSeries = {
    route: routeName,
    requests(method, status, outcome) {
      let m = methodLabels.indexOf(method);
      if (m === -1) m = other;
      let statusClass = Math.floor(status / 100);
      if (!(statusClass >= 0 && statusClass < STATUS_CLASSES)) statusClass = 0;
      const key = (m * STATUS_CLASSES + statusClass) * OUTCOMES.length + OUTCOME_INDEX[outcome];
      let counter = requests[key];
      if (counter === undefined) {
        counter = metrics.requests.labels(routeName, methodLabels[m] as string, `${statusClass}xx`, outcome);
        requests[key] = counter;
      }
      return counter;
    },
    duration: { observe: (seconds) => (duration ??= metrics.requestDuration.labels(routeName)).observe(seconds) },
    authFailures(reason) {
      let counter = authFailures.get(reason);
      if (counter === undefined && AUTH_FAILURE_REASONS.has(reason)) {
        counter = metrics.authFailures.labels(routeName, reason);
        authFailures.set(reason, counter);
      }
      return counter;
    },
    count(record) {
      series.requests(record.method, record.status, record.outcome).inc();
      series.duration.observe(record.latencySeconds);
      if (record.reason !== undefined) series.authFailures(record.reason)?.inc();
    },
  };
  return series;
}

/** The per-request series of one upstream, resolved when its gateway is compiled (same across reloads). */
export interface UpstreamSeries {
  /** The `upstream` label value. */
  readonly upstream: string;
  /** `certbound_upstream_duration_seconds`: time to the response headers. */
  readonly duration: HistogramSeries;
}

export function createUpstreamSeries(metrics: Metrics, upstreamName: string): UpstreamSeries {
  let duration: HistogramSeries | undefined;
  return {
    upstream: upstreamName,
    duration: { observe: (seconds) => (duration ??= metrics.upstreamDuration.labels(upstreamName)).observe(seconds) },
  };
}

/** Counts one request that ended and writes its access line. */
export type Recorder = (record: RequestRecord, route: RouteSeries, upstream: UpstreamSeries | undefined) => void;

/**
 * The one consumer of a RequestRecord: the route's series (NO_ROUTE's when none matched), the
 * upstream's duration when it answered, the access line (createLogging's `access`).
 */
export function createRecorder(access: (record: RequestRecord) => void): Recorder {
  return (record, route, upstream) => {
    route.count(record);
    if (upstream !== undefined && record.upstreamSeconds !== undefined) upstream.duration.observe(record.upstreamSeconds);
    access(record);
  };
}
