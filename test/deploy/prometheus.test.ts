// Checks the Prometheus rules (promtool), keeps the PrometheusRule CRD in sync
// with the plain rules file, and verifies that every metric referenced by the
// rules and the Grafana dashboard is one certbound actually exports.
import t from 'tap';
import { run as runIn, type RunResult } from './fixtures/run.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES = 'deploy/prometheus/rules.yml';
const RULES_TESTS = 'deploy/prometheus/rules.test.yml';
const CRD = 'deploy/kubernetes/components/monitoring/prometheusrule.yaml';
const DASHBOARD = 'deploy/grafana/certbound-dashboard.json';

// ---------------------------------------------------------------------------
// The metric catalogue certbound exports (label value sets where bounded and
// known; null = any value).
// ---------------------------------------------------------------------------
type MetricType = 'counter' | 'gauge' | 'histogram';
interface MetricSpec {
  type: MetricType;
  labels: Record<string, readonly string[] | null>;
}

const AUTH_REASONS = [
  'missing_token',
  'malformed_token',
  'invalid_token',
  'inactive',
  'expired',
  'unbound_token',
  'certificate_missing',
  'certificate_mismatch',
  'certificate_untrusted',
  'certificate_expired',
  'certificate_malformed',
  'insufficient_scope',
  'as_unavailable',
  'certificate_revoked',
  'insufficient_role',
  'revocation_unavailable',
  'token_revoked',
] as const;
const INTROSPECTION_RESULTS = ['active', 'inactive', 'error', 'timeout', 'overloaded'] as const;

const CATALOG: Record<string, MetricSpec> = {
  certbound_requests_total: {
    type: 'counter',
    labels: { route: null, method: null, status_class: null, outcome: ['forwarded', 'rejected', 'error'] },
  },
  certbound_request_duration_seconds: { type: 'histogram', labels: { route: null } },
  certbound_auth_failures_total: { type: 'counter', labels: { route: null, reason: AUTH_REASONS } },
  certbound_introspection_requests_total: { type: 'counter', labels: { result: INTROSPECTION_RESULTS } },
  certbound_introspection_duration_seconds: { type: 'histogram', labels: { result: INTROSPECTION_RESULTS } },
  certbound_token_cache_hits_total: { type: 'counter', labels: {} },
  certbound_token_cache_misses_total: { type: 'counter', labels: {} },
  certbound_token_cache_entries: { type: 'gauge', labels: {} },
  certbound_upstream_duration_seconds: { type: 'histogram', labels: { upstream: null } },
  certbound_upstream_errors_total: { type: 'counter', labels: { upstream: null, kind: ['refused', 'reset', 'timeout', 'overloaded'] } },
  certbound_open_connections: { type: 'gauge', labels: {} },
  certbound_connections_refused_total: { type: 'counter', labels: { reason: ['max_connections'] } },
  certbound_client_errors_total: {
    type: 'counter',
    labels: { kind: ['request_timeout', 'tls_handshake_timeout', 'header_overflow', 'parse_error', 'too_many_headers', 'body_stalled', 'read_stalled', 'pipeline_overflow'] },
  },
  certbound_uncaught_errors_total: { type: 'counter', labels: {} },
  certbound_config_reloads_total: { type: 'counter', labels: { result: ['success', 'failure'] } },
  certbound_certificate_expiry_timestamp_seconds: { type: 'gauge', labels: { certificate: ['serving', 'client_ca'] } },
  certbound_jwks_fetches_total: { type: 'counter', labels: { result: null } },
  certbound_revocation_checks_total: { type: 'counter', labels: { source: ['ocsp', 'crl'], result: ['good', 'revoked', 'unknown', 'error'] } },
  certbound_revocation_check_duration_seconds: { type: 'histogram', labels: { source: ['ocsp', 'crl'] } },
  certbound_revocation_unavailable_total: { type: 'counter', labels: { action: ['allowed', 'refused'] } },
  certbound_revocation_cache_entries: { type: 'gauge', labels: {} },
  certbound_crl_loads_total: { type: 'counter', labels: { result: ['success', 'error'] } },
  certbound_dpop_replay_evictions_total: { type: 'counter', labels: {} },
  certbound_crl_next_update_seconds: { type: 'gauge', labels: { source: null } },
  certbound_shared_cache_lookups_total: { type: 'counter', labels: { result: ['hit', 'miss', 'invalid'] } },
  certbound_shared_lock_waits_total: { type: 'counter', labels: { result: ['notified', 'timeout'] } },
  certbound_shared_state_errors_total: { type: 'counter', labels: { op: ['get', 'set', 'set_nx', 'zadd', 'zrange', 'publish', 'subscribe'] } },
  certbound_revocations_total: { type: 'counter', labels: { kind: ['token', 'client', 'certificate'], origin: ['api', 'peer', 'loaded'] } },
  certbound_revocation_propagation_seconds: { type: 'histogram', labels: {} },
};

/** Labels added by Prometheus / the Prometheus Operator / our ServiceMonitor. */
const TARGET_LABELS = new Set(['job', 'namespace', 'pod', 'instance', 'service', 'endpoint', 'container', 'ready']);

/** Series name -> [family, spec] (histograms expand to _bucket/_sum/_count). */
const SERIES = new Map<string, { family: string; spec: MetricSpec; bucket: boolean }>();
for (const [family, spec] of Object.entries(CATALOG)) {
  if (spec.type === 'histogram') {
    SERIES.set(`${family}_bucket`, { family, spec, bucket: true });
    SERIES.set(`${family}_sum`, { family, spec, bucket: false });
    SERIES.set(`${family}_count`, { family, spec, bucket: false });
  } else {
    SERIES.set(family, { family, spec, bucket: false });
  }
}

function isKnownMetric(name: string): boolean {
  return SERIES.has(name) || name === 'up' || /^(process|nodejs)_[a-z0-9_]+$/.test(name);
}

// ---------------------------------------------------------------------------
// A small PromQL scanner: enough to find metric names, label matchers and
// grouping labels in the expressions we ship (not a full parser).
// ---------------------------------------------------------------------------
const KEYWORDS = new Set([
  'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan',
]);

interface Matcher {
  label: string;
  op: string;
  value: string;
}
interface Selector {
  metric: string;
  matchers: Matcher[];
}
interface Scan {
  metrics: string[];
  selectors: Selector[];
  groupingLabels: string[];
}

/** Replace Grafana template variables so expressions become plain PromQL. */
function deGrafana(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, '.*');
}

function scanPromQL(input: string): Scan {
  const expr = deGrafana(input);
  const selectors: Selector[] = [];
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const metric = m[1] ?? '';
    if (KEYWORDS.has(metric)) continue;
    const matchers: Matcher[] = [];
    for (const mm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      matchers.push({ label: mm[1] ?? '', op: mm[2] ?? '', value: mm[3] ?? '' });
    }
    selectors.push({ metric, matchers });
  }
  const groupingLabels: string[] = [];
  let stripped = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '');
  stripped = stripped.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_all, _kw: string, labels: string) => {
    groupingLabels.push(...labels.split(',').map((l) => l.trim()).filter((l) => l.length > 0));
    return ' ';
  });
  const metrics: string[] = [];
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const idx = m.index;
    const prev = idx > 0 ? stripped[idx - 1] : '';
    if (prev !== undefined && /[0-9.]/.test(prev)) continue; // e.g. "1e3", "5m"
    const rest = stripped.slice(idx + word.length);
    if (/^\s*\(/.test(rest)) continue; // function or aggregation
    if (KEYWORDS.has(word.toLowerCase())) continue;
    metrics.push(word);
  }
  return { metrics, selectors, groupingLabels };
}

function checkExpression(t: Tap, where: string, expr: string): string[] {
  const scan = scanPromQL(expr);
  t.ok(scan.metrics.length > 0, `${where}: references at least one metric`);
  for (const metric of scan.metrics) {
    t.ok(isKnownMetric(metric), `${where}: ${metric} is an exported metric`);
  }
  const knownLabels = new Set(TARGET_LABELS);
  for (const metric of scan.metrics) {
    const s = SERIES.get(metric);
    if (s === undefined) continue;
    for (const l of Object.keys(s.spec.labels)) knownLabels.add(l);
    if (s.bucket) knownLabels.add('le');
  }
  for (const sel of scan.selectors) {
    const s = SERIES.get(sel.metric);
    if (s === undefined) continue;
    for (const m of sel.matchers) {
      const allowed = TARGET_LABELS.has(m.label) || m.label in s.spec.labels || (s.bucket && m.label === 'le');
      t.ok(allowed, `${where}: ${sel.metric} has a label "${m.label}"`);
      const values = s.spec.labels[m.label];
      if (values === undefined || values === null || (m.op !== '=' && m.op !== '=~')) continue;
      if (!/^[a-z0-9_]+(\|[a-z0-9_]+)*$/.test(m.value)) continue; // not a plain alternation
      for (const v of m.value.split('|')) {
        t.ok(values.includes(v), `${where}: ${sel.metric}{${m.label}} can be "${v}"`);
      }
    }
  }
  for (const l of scan.groupingLabels) {
    t.ok(knownLabels.has(l), `${where}: grouping label "${l}" exists on the metrics used`);
  }
  return scan.metrics;
}

/** The assertions the helpers need (structurally satisfied by tap's Test). */
interface Tap {
  ok(value: unknown, message: string): boolean;
  fail(message: string): boolean;
  equal(found: unknown, wanted: unknown, message: string, extra: { diagnostic: boolean; stdout: string; stderr: string }): boolean;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------
type Obj = Record<string, unknown>;
function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function obj(v: unknown, what: string): Obj {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping`);
  return v;
}
function objs(v: unknown, what: string): Obj[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list`);
  return v.map((x, i) => obj(x, `${what}[${i}]`));
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what}: expected a string`);
  return v;
}

const run = (cmd: string, args: string[]): Promise<RunResult> => runIn(ROOT, cmd, args);

/** Runs promtool; a missing promtool is a failure, never a skip (CI installs it). */
async function promtool(t: Tap, args: string[], what: string): Promise<RunResult> {
  const res = await run('promtool', args);
  if (res.spawnError !== undefined) {
    t.fail(`promtool is not runnable (${res.spawnError}); install it (Debian: apt-get install prometheus)`);
    return res;
  }
  t.equal(res.code, 0, `${what} exits 0`, { diagnostic: res.code !== 0, stdout: res.stdout, stderr: res.stderr });
  return res;
}

async function loadRules(): Promise<Obj[]> {
  const plain = obj(parse(await readFile(join(ROOT, RULES), 'utf8')), RULES);
  return objs(plain['groups'], `${RULES} groups`);
}

interface RuleRef {
  group: string;
  name: string;
  expr: string;
}
function allRules(groups: Obj[]): RuleRef[] {
  return groups.flatMap((g) =>
    objs(g['rules'], 'rules').map((r) => ({
      group: str(g['name'], 'group name'),
      name: str(r['alert'] ?? r['record'], 'rule name'),
      expr: str(r['expr'], 'expr'),
    })),
  );
}

interface DashboardExpr {
  where: string;
  expr: string;
}
function dashboardExprs(dashboard: Obj): DashboardExpr[] {
  const out: DashboardExpr[] = [];
  const visit = (panels: unknown): void => {
    if (!Array.isArray(panels)) return;
    for (const p of panels) {
      if (!isObj(p)) continue;
      const targets = p['targets'];
      if (Array.isArray(targets)) {
        for (const target of targets) {
          if (isObj(target) && typeof target['expr'] === 'string') {
            out.push({ where: `panel "${String(p['title'])}" ${String(target['refId'])}`, expr: target['expr'] });
          }
        }
      }
      visit(p['panels']);
    }
  };
  visit(dashboard['panels']);
  return out;
}

/** label_values(metric{...}, label) queries used by template variables. */
function templateQueries(dashboard: Obj): DashboardExpr[] {
  const out: DashboardExpr[] = [];
  const list = at(dashboard, ['templating', 'list']);
  if (!Array.isArray(list)) return out;
  for (const v of list) {
    if (!isObj(v) || v['type'] !== 'query') continue;
    const q = isObj(v['query']) ? v['query']['query'] : v['query'];
    if (typeof q !== 'string') continue;
    const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(q.trim());
    out.push({ where: `variable $${String(v['name'])}`, expr: m?.[1] ?? q });
  }
  return out;
}

function at(v: unknown, path: string[]): unknown {
  let cur = v;
  for (const k of path) {
    if (!isObj(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------
t.test('promtool check rules', async (t) => {
  const res = await promtool(t, ['check', 'rules', RULES], `promtool check rules ${RULES}`);
  t.match(res.stdout + res.stderr, /SUCCESS/, 'promtool reports success');
});

t.test('promtool test rules (alert unit tests)', async (t) => {
  await promtool(t, ['test', 'rules', RULES_TESTS], `promtool test rules ${RULES_TESTS}`);
});

t.test('PrometheusRule CRD carries exactly the groups of the plain rules file', async (t) => {
  const groups = await loadRules();
  const crd = obj(parse(await readFile(join(ROOT, CRD), 'utf8')), CRD);
  t.equal(crd['apiVersion'], 'monitoring.coreos.com/v1');
  t.equal(crd['kind'], 'PrometheusRule');
  t.strictSame(at(crd, ['spec', 'groups']), groups, `${CRD} spec.groups deep-equals ${RULES} groups`);
});

t.test('the rules cover the required alerts', async (t) => {
  const rules = allRules(await loadRules());
  const byName = new Map(rules.map((r) => [r.name, r.expr]));
  t.equal(byName.size, rules.length, 'rule names are unique');
  const required: Record<string, RegExp[]> = {
    CertboundAuthFailureRatioHigh: [/certbound_auth_failures_total/, /certbound_requests_total/, /> 0\.10?\b/],
    CertboundIntrospectionErrors: [/certbound_introspection_requests_total\{[^}]*result=~"error\|timeout"/],
    CertboundIntrospectionLatencyHigh: [/histogram_quantile\(0\.99/, /certbound_introspection_duration_seconds_bucket/, /> 0\.5\b/],
    CertboundCertificateExpiringSoon: [/certbound_certificate_expiry_timestamp_seconds/, /- time\(\)/, /< 14 \* 86400/],
    CertboundConfigReloadFailed: [/increase\(certbound_config_reloads_total\{[^}]*result="failure"/, /> 0\b/],
    CertboundUpstreamErrors: [/certbound_upstream_errors_total/],
    CertboundPodNotReady: [/\bup\{/],
    CertboundUncaughtErrors: [/increase\(certbound_uncaught_errors_total\{/, /> 0\b/],
    CertboundConnectionsRefused: [/certbound_connections_refused_total/, /> 0\b/],
  };
  for (const [name, patterns] of Object.entries(required)) {
    const expr = byName.get(name);
    t.ok(expr, `alert ${name} exists`);
    for (const p of patterns) t.match(expr ?? '', p, `${name} matches ${String(p)}`);
  }
  for (const g of await loadRules()) {
    for (const r of objs(g['rules'], 'rules')) {
      if (r['alert'] === undefined) continue;
      t.match(String(at(r, ['labels', 'severity'])), /^(warning|critical)$/, `${String(r['alert'])} has a severity`);
      t.type(at(r, ['annotations', 'summary']), 'string', `${String(r['alert'])} has a summary`);
      t.type(at(r, ['annotations', 'description']), 'string', `${String(r['alert'])} has a description`);
    }
  }
});

t.test('rules reference only exported metrics and labels', async (t) => {
  for (const r of allRules(await loadRules())) checkExpression(t, `rule ${r.name}`, r.expr);
});

t.test('Grafana dashboard', async (t) => {
  const text = await readFile(join(ROOT, DASHBOARD), 'utf8');
  let parsed: unknown;
  t.doesNotThrow(() => {
    parsed = JSON.parse(text);
  }, 'dashboard JSON parses');
  const dashboard = obj(parsed, DASHBOARD);
  const schemaVersion = dashboard['schemaVersion'];
  t.ok(typeof schemaVersion === 'number' && schemaVersion >= 36 && schemaVersion <= 41, `schemaVersion ~39 (${String(schemaVersion)})`);
  t.ok(
    objs(dashboard['__inputs'], '__inputs').some((i) => i['name'] === 'DS_PROMETHEUS' && i['pluginId'] === 'prometheus'),
    'declares the DS_PROMETHEUS datasource input',
  );
  t.equal(dashboard['id'], null, 'importable (id null)');

  // Panels: unique ids, Prometheus datasource via the input, no overlaps.
  const panels = objs(dashboard['panels'], 'panels');
  const ids = panels.map((p) => p['id']);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of panels.filter((x) => x['type'] !== 'row')) {
    t.equal(at(p, ['datasource', 'uid']), '${DS_PROMETHEUS}', `panel "${String(p['title'])}" uses \${DS_PROMETHEUS}`);
  }
  const cells = new Set<string>();
  let overlap = false;
  for (const p of panels) {
    const g = obj(p['gridPos'], 'gridPos');
    const [x, y, w, h] = [g['x'], g['y'], g['w'], g['h']].map(Number) as [number, number, number, number];
    t.ok(x + w <= 24, `panel "${String(p['title'])}" fits the 24-column grid`);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        const key = `${i},${j}`;
        if (cells.has(key)) overlap = true;
        cells.add(key);
      }
    }
  }
  t.notOk(overlap, 'panels do not overlap');

  const exprs = [...dashboardExprs(dashboard), ...templateQueries(dashboard)];
  t.ok(exprs.length >= 15, `dashboard has queries (${exprs.length})`);
  const used = new Set<string>();
  for (const e of exprs) for (const m of checkExpression(t, e.where, e.expr)) used.add(m);

  // Every certbound metric family shows up somewhere on the dashboard.
  const families = new Set([...used].map((m) => SERIES.get(m)?.family).filter((f): f is string => f !== undefined));
  for (const family of Object.keys(CATALOG)) t.ok(families.has(family), `dashboard shows ${family}`);

  const titles = panels.map((p) => String(p['title']).toLowerCase()).join('\n');
  for (const topic of ['request rate', 'latency', 'auth failures', 'introspection', 'cache hit', 'cache entries', 'upstream', 'expir', 'reload']) {
    t.match(titles, topic, `a panel about ${topic}`);
  }
});

t.test('dashboard PromQL is valid (checked by promtool as recording rules)', async (t) => {
  const dashboard = obj(JSON.parse(await readFile(join(ROOT, DASHBOARD), 'utf8')), DASHBOARD);
  const exprs = dashboardExprs(dashboard);
  const dir = await mkdtemp(join(tmpdir(), 'certbound-dashboard-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'dashboard-rules.yml');
  const doc = {
    groups: [
      {
        name: 'dashboard',
        rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: deGrafana(e.expr) })),
      },
    ],
  };
  await writeFile(file, stringify(doc));
  const res = await promtool(t, ['check', 'rules', file], 'promtool check rules (dashboard queries)');
  t.match(res.stdout + res.stderr, new RegExp(`SUCCESS: ${exprs.length} rules found`), 'every dashboard query parses');
});
