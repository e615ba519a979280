// Route and upstream series as /metrics shows them: what one RequestRecord counts, where, and
// that the series a compiled gateway holds keep counting across reloads and resetMetrics().
import t from 'tap';
import { createMetrics } from '../../src/observability/metrics.js';
import { NO_ROUTE, createRecorder, createRouteSeries, createUpstreamSeries, type RequestRecord } from '../../src/observability/record.js';
import { parseLabels, sample } from '../ops/fixtures/ops.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const request = (more: Partial<RequestRecord> = {}): RequestRecord => ({
  interactionId: '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a', route: 'accounts', method: 'GET', path: '/accounts/1', upstream: 'bank',
  status: 200, reason: undefined, outcome: 'forwarded', latencySeconds: 0.5, upstreamSeconds: 0.125, responseBytes: 10,
  clientId: 'tpp-a', thumbprint: undefined, peer: '127.0.0.1', ...more,
});

/** The exposition's samples of one metric, as "labels value" lines, sorted. */
async function samples(metrics: ReturnType<typeof createMetrics>, name: string): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .map((line) => {
      const value = line.slice(line.lastIndexOf(' ') + 1);
      const labels = parseLabels(line.slice(line.indexOf('{') + 1, line.lastIndexOf('}')));
      return `${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')} ${value}`;
    })
    .sort();
}

t.test('requests count by method, status class and outcome; unknown methods as OTHER; client_closed as its own outcome', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const route = createRouteSeries(metrics, 'accounts', METHODS);
  const counted: Array<Partial<RequestRecord>> = [
    {}, {}, { method: 'HEAD' }, { method: 'POST', status: 201 },
    { status: 401, reason: 'inactive', outcome: 'rejected' },
    { status: 404, reason: 'no_route', outcome: 'rejected' },
    { status: 503, reason: 'upstream_overloaded', outcome: 'error' },
    { status: 500, reason: 'internal', outcome: 'error' },
    { status: 499, reason: 'client_closed', outcome: 'client_closed' },
    { status: 499, reason: 'client_closed', outcome: 'client_closed', method: 'POST' },
    { method: 'BREW', status: 405, reason: 'method_not_allowed', outcome: 'rejected' },
    { method: 'get', status: 405, reason: 'method_not_allowed', outcome: 'rejected' },
    { method: 'OTHER', status: 405, reason: 'method_not_allowed', outcome: 'rejected' },
    { method: 'PROPFIND', status: 101 },
  ];
  for (const more of counted) route.count(request(more));
  t.same(await samples(metrics, 'certbound_requests_total'), [
    'route=accounts,method=GET,status_class=2xx,outcome=forwarded 2',
    'route=accounts,method=GET,status_class=4xx,outcome=client_closed 1',
    'route=accounts,method=GET,status_class=4xx,outcome=rejected 2',
    'route=accounts,method=GET,status_class=5xx,outcome=error 2',
    'route=accounts,method=HEAD,status_class=2xx,outcome=forwarded 1',
    'route=accounts,method=OTHER,status_class=1xx,outcome=forwarded 1',
    'route=accounts,method=OTHER,status_class=4xx,outcome=rejected 3',
    'route=accounts,method=POST,status_class=2xx,outcome=forwarded 1',
    'route=accounts,method=POST,status_class=4xx,outcome=client_closed 1',
  ].sort(), 'only the combinations seen appear; a method outside the list is never a label');
  t.equal(sample(await metrics.registry.metrics(), 'certbound_request_duration_seconds_count', { route: 'accounts' }), counted.length, 'every request timed');
  t.equal(sample(await metrics.registry.metrics(), 'certbound_request_duration_seconds_sum', { route: 'accounts' }), counted.length * 0.5, 'in seconds');
});

t.test('auth failures: only for reasons that are authentication or authorization refusals', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const route = createRouteSeries(metrics, 'accounts', METHODS);
  for (const reason of ['inactive', 'inactive', 'certificate_mismatch', 'insufficient_scope', 'as_unavailable'] as const) {
    route.count(request({ status: 401, reason, outcome: 'rejected' }));
  }
  for (const reason of ['no_route', 'bad_path', 'method_not_allowed', 'upstream_timeout', 'internal', 'client_closed'] as const) {
    route.count(request({ status: 400, reason, outcome: 'rejected' }));
    t.equal(route.authFailures(reason), undefined, `${reason} is not an auth failure`);
  }
  t.same(await samples(metrics, 'certbound_auth_failures_total'), [
    'route=accounts,reason=as_unavailable 1',
    'route=accounts,reason=certificate_mismatch 1',
    'route=accounts,reason=inactive 2',
    'route=accounts,reason=insufficient_scope 1',
  ]);
});

t.test('a reload compiles new series for the same route: they count on from where the old ones were', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const before = createRouteSeries(metrics, 'accounts', METHODS);
  before.count(request());
  before.count(request({ status: 401, reason: 'expired', outcome: 'rejected' }));
  const after = createRouteSeries(metrics, 'accounts', METHODS);
  after.count(request());
  after.count(request({ status: 401, reason: 'expired', outcome: 'rejected' }));
  before.count(request()); // a request the old gateway still finishes
  const text = await metrics.registry.metrics();
  t.equal(sample(text, 'certbound_requests_total', { route: 'accounts', status_class: '2xx' }), 3);
  t.equal(sample(text, 'certbound_requests_total', { route: 'accounts', status_class: '4xx' }), 2);
  t.equal(sample(text, 'certbound_auth_failures_total', { route: 'accounts', reason: 'expired' }), 2);
  t.equal(sample(text, 'certbound_request_duration_seconds_count', { route: 'accounts' }), 5);
});

t.test('series survive resetMetrics(): zeroed, still exported, counting on', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const route = createRouteSeries(metrics, 'accounts', METHODS);
  const upstream = createUpstreamSeries(metrics, 'bank');
  const record = createRecorder(() => undefined);
  record(request({ status: 401, reason: 'inactive', outcome: 'rejected', upstreamSeconds: undefined }), route, upstream);
  record(request(), route, upstream);
  metrics.registry.resetMetrics();
  let text = await metrics.registry.metrics();
  t.equal(sample(text, 'certbound_requests_total', { route: 'accounts', status_class: '2xx' }), 0, 'still there, at zero');
  t.equal(sample(text, 'certbound_auth_failures_total', { route: 'accounts', reason: 'inactive' }), 0);
  t.equal(sample(text, 'certbound_upstream_duration_seconds_count', { upstream: 'bank' }), 0);
  record(request(), route, upstream);
  text = await metrics.registry.metrics();
  t.equal(sample(text, 'certbound_requests_total', { route: 'accounts', status_class: '2xx' }), 1);
  t.equal(sample(text, 'certbound_request_duration_seconds_count', { route: 'accounts' }), 1);
  t.equal(sample(text, 'certbound_upstream_duration_seconds_count', { upstream: 'bank' }), 1);
});

t.test('requests that matched no route count as route="none"', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const unmatched = createRouteSeries(metrics, NO_ROUTE, METHODS);
  t.equal(unmatched.route, 'none');
  unmatched.count(request({ route: undefined, upstream: undefined, path: undefined, status: 400, reason: 'bad_path', outcome: 'rejected' }));
  unmatched.count(request({ route: undefined, upstream: undefined, status: 404, reason: 'no_route', outcome: 'rejected', method: 'TRACE' }));
  t.same(await samples(metrics, 'certbound_requests_total'), [
    'route=none,method=GET,status_class=4xx,outcome=rejected 1',
    'route=none,method=OTHER,status_class=4xx,outcome=rejected 1',
  ]);
});

t.test('a series appears at its first update, as prom-client does; a status outside 0–999 stays in range', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const route = createRouteSeries(metrics, 'accounts', [...METHODS, 'GET']);
  createUpstreamSeries(metrics, 'bank');
  const text = await metrics.registry.metrics();
  for (const name of ['certbound_requests_total', 'certbound_request_duration_seconds_count', 'certbound_upstream_duration_seconds_count', 'certbound_auth_failures_total']) {
    t.notMatch(text, new RegExp(`^${name}\\{`, 'm'), `no ${name} series before a request`);
  }
  route.count(request({ status: 999 }));
  route.count(request({ status: 1200 }));
  route.count(request({ status: Number.NaN }));
  t.same(await samples(metrics, 'certbound_requests_total'), [
    'route=accounts,method=GET,status_class=0xx,outcome=forwarded 2',
    'route=accounts,method=GET,status_class=9xx,outcome=forwarded 1',
  ]);
});

t.test('the recorder: route series, upstream duration when the upstream answered, then the access line', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const route = createRouteSeries(metrics, 'accounts', METHODS);
  const upstream = createUpstreamSeries(metrics, 'bank');
  t.equal(upstream.upstream, 'bank');
  const lines: RequestRecord[] = [];
  const record = createRecorder((r) => void lines.push(r));
  const answered = request({ upstreamSeconds: 0.25 });
  const refused = request({ upstream: undefined, upstreamSeconds: undefined, status: 401, reason: 'missing_token', outcome: 'rejected' });
  const unreachable = request({ upstreamSeconds: undefined, status: 502, reason: 'upstream_unavailable', outcome: 'error' });
  record(answered, route, upstream);
  record(refused, route, undefined);
  record(unreachable, route, upstream);
  t.equal(lines[0], answered, 'the access writer gets the record itself');
  t.same(lines, [answered, refused, unreachable]);
  const text = await metrics.registry.metrics();
  t.equal(sample(text, 'certbound_upstream_duration_seconds_count', { upstream: 'bank' }), 1, 'only the answer is timed');
  t.equal(sample(text, 'certbound_upstream_duration_seconds_sum', { upstream: 'bank' }), 0.25);
  t.equal(sample(text, 'certbound_request_duration_seconds_count', { route: 'accounts' }), 3);
  t.equal(sample(text, 'certbound_auth_failures_total', { route: 'accounts', reason: 'missing_token' }), 1);
});
