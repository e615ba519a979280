import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { createCa } from '../fixtures/pki.js';
import { startUpstream, serve } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';
import { AUDIENCE, ISSUER, fakeServer, json, jwksServer, sign, signingKey } from '../token/fixtures/fake-as.js';
import { parseLabels, sample, scrape, startFromFile } from './fixtures/ops.js';

const ca = await createCa({ commonName: 'Metrics CA' });
const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-metrics-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

const now = Math.floor(Date.now() / 1000);
const bound = (thumbprint: string, extra: Record<string, unknown> = {}) => ({
  active: true, client_id: 'tpp-a', scope: 'accounts', exp: now + 300, iss: ISSUER, cnf: { 'x5t#S256': thumbprint }, ...extra,
});
const answers: Record<string, Record<string, unknown>> = { tokA: bound(tppA.thumbprint), readOnly: bound(tppA.thumbprint, { scope: 'payments' }) };
const as = await fakeServer((req, res) => {
  const token = new URLSearchParams(req.body).get('token') ?? '';
  if (token === 'boom') return json(res, { error: 'server_error' }, 500);
  if (token === 'slow') return setTimeout(() => json(res, { active: false }), 1000);
  return json(res, answers[token] ?? { active: false });
});
const key = await signingKey('k1');
const jwks = await jwksServer([key]);
const jwt = await sign(key, { iss: ISSUER, aud: AUDIENCE, client_id: 'tpp-a', scope: 'accounts', iat: now, exp: now + 300, cnf: { 'x5t#S256': tppA.thumbprint } });
const upstream = await startUpstream();
const dead = await serve(() => undefined);
await dead.close();

const doc = (extra: Record<string, unknown> = {}) => ({
  listen: { host: '127.0.0.1', port: 0, tls: { cert_file: 'server.crt', key_file: 'server.key', client_ca_file: 'ca.crt' } },
  admin: { host: '127.0.0.1', port: 0 },
  token_validation: 'auto',
  authorization_server: {
    issuer: ISSUER, introspection_endpoint: `${as.url}/introspect`, client_id: 'certbound', client_secret: 'metrics-secret',
    timeout_ms: 300, jwks_uri: `${jwks.url}/jwks`, audience: AUDIENCE,
  },
  upstreams: { bank: upstream.url, dead: dead.url, slow: { url: upstream.url, timeout_ms: 300 } },
  routes: [
    { name: 'accounts', path_prefix: '/accounts', methods: ['GET'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] },
    { name: 'public', path_prefix: '/public', upstream: 'bank', auth: 'none' },
    { name: 'dead', path_prefix: '/dead', upstream: 'dead', auth: 'none' },
    { name: 'slow', path_prefix: '/slow', upstream: 'slow', auth: 'none' },
  ],
  reload: { watch: false },
  ...extra,
});
const configPath = join(dir, 'gateway.yaml');
writeFileSync(configPath, stringify(doc()));

const gw = await startFromFile(configPath, { defaultMetrics: true });
const asA = tlsClient(ca.certPem, tppA);
const asB = tlsClient(ca.certPem, tppB);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), jwks.close(), upstream.close(), asA.close(), asB.close()]);
});

const randomPaths = Array.from({ length: 20 }, () => `/zz${randomBytes(6).toString('hex')}`);

t.before(async () => {
  // Every outcome once, so that every family has samples.
  const expect = async (path: string, status: number, opts: Parameters<typeof call>[1] = {}) => {
    const res = await call(`${gw.url}${path}`, { dispatcher: asA, ...opts });
    if (res.status !== status) throw new Error(`${path}: expected ${status}, got ${res.status} ${res.text}`);
  };
  await expect('/accounts/a', 200, { headers: bearer('tokA') }); // introspection active, cache miss
  await expect('/accounts/a', 200, { headers: bearer('tokA') }); // cache hit
  await expect('/accounts/a', 200, { headers: bearer(jwt) }); // JWT against the JWKS
  await expect('/accounts/a', 401, { headers: bearer('nope') }); // inactive
  await expect('/accounts/a', 403, { headers: bearer('readOnly') });
  await expect('/accounts/a', 503, { headers: bearer('boom') }); // introspection error
  await expect('/accounts/a', 503, { headers: bearer('slow') }); // introspection timeout
  await expect('/accounts/a', 401, { dispatcher: asB, headers: bearer('tokA') }); // certificate mismatch
  await expect('/accounts/a', 401);
  await expect('/accounts/a', 405, { method: 'POST', headers: bearer('tokA') });
  await expect('/public/x', 200);
  await expect('/dead', 502);
  await expect('/slow/slow', 504);
  for (const [i, path] of randomPaths.entries()) {
    const method = (['GET', 'PROPFIND', 'PURGE', 'MKCOL', 'SEARCH'] as const)[i % 5];
    await call(`${gw.url}${path}?q=${path}`, { dispatcher: asA, method: method as 'GET' });
  }
  t.equal(await gw.runtime.reload(), true, 'reload succeeds');
  writeFileSync(configPath, stringify(doc({ surprise: true })));
  t.equal(await gw.runtime.reload(), false, 'reload with an unknown key fails');
  writeFileSync(configPath, stringify(doc()));
  await expect('/accounts/a', 200, { headers: bearer('tokA') }); // still cached: the reload kept the validator
});

t.test('promtool check metrics passes on a live scrape', async (t) => {
  const text = await scrape(gw.adminUrl);
  t.match(text, /^# HELP /m);
  t.match(text, /process_cpu_seconds_total/, 'default Node metrics');
  let out = '';
  try {
    out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    t.fail(`promtool: ${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  t.equal(out.trim(), '', 'no lint problems');
});

t.test('every certbound family is present, with its labels and samples', async (t) => {
  const text = await scrape(gw.adminUrl);
  const families: Record<string, { type: string; labels: string[] }> = {
    certbound_requests_total: { type: 'counter', labels: ['route', 'method', 'status_class', 'outcome'] },
    certbound_request_duration_seconds: { type: 'histogram', labels: ['route'] },
    certbound_auth_failures_total: { type: 'counter', labels: ['route', 'reason'] },
    certbound_introspection_requests_total: { type: 'counter', labels: ['result'] },
    certbound_introspection_duration_seconds: { type: 'histogram', labels: ['result'] },
    certbound_token_cache_hits_total: { type: 'counter', labels: [] },
    certbound_token_cache_misses_total: { type: 'counter', labels: [] },
    certbound_token_cache_entries: { type: 'gauge', labels: [] },
    certbound_jwks_fetches_total: { type: 'counter', labels: ['result'] },
    certbound_upstream_duration_seconds: { type: 'histogram', labels: ['upstream'] },
    certbound_upstream_errors_total: { type: 'counter', labels: ['upstream', 'kind'] },
    certbound_config_reloads_total: { type: 'counter', labels: ['result'] },
    certbound_certificate_expiry_timestamp_seconds: { type: 'gauge', labels: ['certificate'] },
    certbound_open_connections: { type: 'gauge', labels: [] },
    certbound_uncaught_errors_total: { type: 'counter', labels: [] },
  };
  // Declared even before their first sample (hostile.test.ts makes them count).
  for (const name of ['certbound_connections_refused_total', 'certbound_client_errors_total']) {
    t.match(text, new RegExp(`^# TYPE ${name} counter$`, 'm'), `${name} is a counter`);
  }
  for (const [name, { type, labels }] of Object.entries(families)) {
    t.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`);
    const series = name.endsWith('_seconds') && type === 'histogram' ? `${name}_count` : name;
    const lines = text.split('\n').filter((l) => l.startsWith(`${series}{`) || l.startsWith(`${series} `));
    t.ok(lines.length > 0, `${name} has samples`);
    for (const line of lines) {
      const names = Object.keys(parseLabels(/\{(.*)\}/.exec(line)?.[1] ?? '')).sort();
      t.same(names, [...labels].sort(), `${name} labels`);
    }
  }
  const v = (name: string, labels: Record<string, string> = {}) => sample(text, name, labels);
  t.ok(v('certbound_requests_total', { route: 'accounts', method: 'GET', status_class: '2xx', outcome: 'forwarded' })! >= 3);
  t.equal(v('certbound_requests_total', { route: 'dead', status_class: '5xx', outcome: 'error' }), 1);
  t.equal(v('certbound_requests_total', { route: 'none', status_class: '4xx', outcome: 'rejected' }), 20, 'unmatched paths (20) count under route="none"');
  t.equal(v('certbound_requests_total', { route: 'accounts', method: 'POST', status_class: '4xx', outcome: 'rejected' }), 1, 'the 405 counts against the route whose path matched');
  for (const reason of ['inactive', 'insufficient_scope', 'certificate_mismatch', 'missing_token', 'as_unavailable']) {
    t.ok(v('certbound_auth_failures_total', { route: 'accounts', reason })! >= 1, `auth failure ${reason}`);
  }
  for (const result of ['active', 'inactive', 'error', 'timeout']) {
    t.ok(v('certbound_introspection_requests_total', { result })! >= 1, `introspection ${result}`);
    t.ok(v('certbound_introspection_duration_seconds_count', { result })! >= 1, `introspection duration ${result}`);
  }
  t.ok(v('certbound_token_cache_hits_total')! >= 1);
  t.ok(v('certbound_token_cache_misses_total')! >= 1);
  t.equal(v('certbound_token_cache_entries'), 3, 'the gauge follows the cache: tokA, the JWT and readOnly, kept across a reload that left token validation alone');
  t.ok(v('certbound_jwks_fetches_total', { result: 'success' })! >= 1);
  t.ok(v('certbound_upstream_duration_seconds_count', { upstream: 'bank' })! >= 3);
  t.equal(v('certbound_upstream_errors_total', { upstream: 'dead', kind: 'refused' }), 1);
  t.equal(v('certbound_upstream_errors_total', { upstream: 'slow', kind: 'timeout' }), 1);
  t.equal(v('certbound_config_reloads_total', { result: 'success' }), 1);
  t.equal(v('certbound_config_reloads_total', { result: 'failure' }), 1);
  t.equal(v('certbound_certificate_expiry_timestamp_seconds', { certificate: 'serving' }), Date.parse(new X509Certificate(server.certPem).validTo) / 1000);
  t.equal(v('certbound_certificate_expiry_timestamp_seconds', { certificate: 'client_ca' }), Date.parse(new X509Certificate(ca.certPem).validTo) / 1000);
});

t.test('label values are bounded: no path, query or unknown method reaches the scrape', async (t) => {
  const text = await scrape(gw.adminUrl);
  for (const path of randomPaths) t.notOk(text.includes(path.slice(1)), `${path} not in the scrape`);
  const methods = new Set<string>();
  for (const line of text.split('\n')) if (line.startsWith('certbound_')) {
    const labels = parseLabels(/\{(.*)\}/.exec(line)?.[1] ?? '');
    if (labels.method) methods.add(labels.method);
    if (labels.route) t.ok(['accounts', 'public', 'dead', 'slow', 'none'].includes(labels.route), `route label ${labels.route} comes from the config`);
  }
  t.same([...methods].sort(), ['GET', 'OTHER', 'POST'], 'methods outside the known set are OTHER');
});

t.test('/healthz and /readyz; only GET and HEAD', async (t) => {
  t.equal((await call(`${gw.adminUrl}/healthz`)).status, 200);
  const ready = await call(`${gw.adminUrl}/readyz`);
  t.equal(ready.status, 200);
  t.equal(ready.text, 'ready\n');
  t.equal((await call(`${gw.adminUrl}/metrics`, { method: 'POST' })).status, 405);
  t.equal((await call(`${gw.adminUrl}/nothing`)).status, 404);
});
