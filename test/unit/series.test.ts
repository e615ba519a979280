import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../../src/observability/series.js';

/** The exposition lines of a registry, sorted (series order is not part of the format). */
const lines = async (registry: Registry) => (await registry.metrics()).split('\n').filter(Boolean).sort();

t.test('a hot counter and histogram expose exactly what prom-client exposes for the same updates', async (t) => {
  const hot = new Registry();
  const reference = new Registry();
  const buckets = [0.001, 0.01, 0.1, 1];
  const counter = new HotCounter('x_requests_total', 'Requests.', ['route', 'outcome'], [hot]);
  const histogram = new HotHistogram('x_duration_seconds', 'Duration.', ['route'], buckets, [hot]);
  const refCounter = new Counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['route', 'outcome'], registers: [reference] });
  const refHistogram = new Histogram({ name: 'x_duration_seconds', help: 'Duration.', labelNames: ['route'], buckets, registers: [reference] });

  t.same(await lines(hot), await lines(reference), 'nothing observed yet');
  const ok = counter.labels('accounts', 'forwarded');
  const again = counter.labels('accounts', 'forwarded');
  const rejected = counter.labels('accounts', 'rejected');
  const accounts = histogram.labels('accounts');
  const payments = histogram.labels('pay"ments\\');
  for (let i = 0; i < 5; i++) ok.inc();
  again.inc();
  rejected.inc();
  refCounter.inc({ route: 'accounts', outcome: 'forwarded' }, 6);
  refCounter.inc({ route: 'accounts', outcome: 'rejected' });
  // On a bound, just above, far above every bound, zero.
  for (const v of [0.001, 0.0011, 0.5, 7, 0]) {
    accounts.observe(v);
    refHistogram.observe({ route: 'accounts' }, v);
  }
  payments.observe(0.02);
  refHistogram.observe({ route: 'pay"ments\\' }, 0.02);
  t.same(await lines(hot), await lines(reference));
  t.ok((await hot.metrics()).includes('x_duration_seconds_bucket{le="0.001",route="accounts"} 2'), 'a value on a bound counts in that bucket');
  t.ok((await hot.metrics()).includes('x_requests_total{route="accounts",outcome="forwarded"} 6'), 'one series for the same labels');

});

t.test('resetMetrics zeroes the series callers kept; they stay exported and count on', async (t) => {
  const registry = new Registry();
  const counter = new HotCounter('x_requests_total', 'Requests.', ['route'], [registry]);
  const histogram = new HotHistogram('x_duration_seconds', 'Duration.', ['route'], [0.1, 1], [registry]);
  const kept = counter.labels('accounts');
  const duration = histogram.labels('accounts');
  kept.inc();
  kept.inc();
  duration.observe(0.05);
  duration.observe(5);
  t.match(await registry.metrics(), /x_requests_total\{route="accounts"\} 2\n/);

  registry.resetMetrics();
  t.same(await lines(registry), [
    '# HELP x_duration_seconds Duration.', '# HELP x_requests_total Requests.',
    '# TYPE x_duration_seconds histogram', '# TYPE x_requests_total counter',
    'x_duration_seconds_bucket{le="+Inf",route="accounts"} 0', 'x_duration_seconds_bucket{le="0.1",route="accounts"} 0', 'x_duration_seconds_bucket{le="1",route="accounts"} 0',
    'x_duration_seconds_count{route="accounts"} 0', 'x_duration_seconds_sum{route="accounts"} 0',
    'x_requests_total{route="accounts"} 0',
  ], 'exported at zero');

  kept.inc();
  duration.observe(0.5);
  const text = await registry.metrics();
  t.match(text, /x_requests_total\{route="accounts"\} 1\n/, 'the kept counter counts on, visibly');
  t.match(text, /x_duration_seconds_bucket\{le="0.1",route="accounts"\} 0\n/);
  t.match(text, /x_duration_seconds_bucket\{le="1",route="accounts"\} 1\n/);
  t.match(text, /x_duration_seconds_sum\{route="accounts"\} 0.5\n/);
  t.match(text, /x_duration_seconds_count\{route="accounts"\} 1\n/, 'the kept histogram too');
  counter.labels('accounts').inc();
  t.match(await registry.metrics(), /x_requests_total\{route="accounts"\} 2\n/, 'resolving the labels again: the same series');
});

