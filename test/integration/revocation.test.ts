// Revocation and PSD2 roles through the real gateway: a real TLS handshake with TPP certificates
// made by `openssl ca`, a real OCSP responder (`openssl ocsp`), real CRLs (`openssl ca -gencrl`),
// and fault injection with a small fake responder.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'undici';
import { createCa } from '../fixtures/pki.js';
import { createOpensslCa, psd2QcStatements, type Leaf } from '../fixtures/openssl-ca.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { serve, startIntrospection, startUpstream } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';
import { thumbprintOf } from '../../src/certificate/thumbprint.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const serverCa = await createCa({ commonName: 'Server CA' });
const server = await serverCa.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const qtsp = createOpensslCa('QTSP Issuing CA');
const responder = await qtsp.startResponder({ nextUpdateMinutes: 10 });
const tppA = qtsp.issue('tpp-a', { ocspUrl: responder.url, qcStatements: psd2QcStatements(['PSP_AI']), organizationIdentifier: 'PSDGB-FCA-123456' });
const tppB = qtsp.issue('tpp-b', { ocspUrl: responder.url, qcStatements: psd2QcStatements(['PSP_PI']), organizationIdentifier: 'PSDGB-FCA-654321' });
const tppC = qtsp.issue('tpp-c', { ocspUrl: responder.url, qcStatements: psd2QcStatements(['PSP_AI', 'PSP_PI']) });
const revokedEarly = qtsp.issue('tpp-revoked', { ocspUrl: responder.url, qcStatements: psd2QcStatements(['PSP_AI']) });
qtsp.revoke(revokedEarly);
const noAia = qtsp.issue('tpp-no-aia', { qcStatements: psd2QcStatements(['PSP_AI']) });

const dir = mkdtempSync(join(tmpdir(), 'certbound-revocation-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);
writeFileSync(join(dir, 'client-ca.crt'), qtsp.pem);

const now = Math.floor(Date.now() / 1000);
const boundTo = (leaf: Leaf, scope: string) => ({ active: true, client_id: leaf.name, scope, exp: now + 3600, iss: 'https://as.example', cnf: { 'x5t#S256': thumbprintOf(leaf.x509.raw) } });

const tokens = new Map<string, Record<string, unknown>>([
  ['tokA', boundTo(tppA, 'accounts')],
  ['tokB', boundTo(tppB, 'payments')],
  ['tokC', boundTo(tppC, 'accounts payments')],
  ['tokRevoked', boundTo(revokedEarly, 'accounts')],
  ['tokNoAia', boundTo(noAia, 'accounts')],
]);
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
t.teardown(async () => {
  await Promise.all([as.close(), upstream.close(), responder.close()]);
  qtsp.remove();
});

const doc = (revocation: Record<string, unknown>) => ({
  listen: { tls: { cert_file: 'server.crt', key_file: 'server.key', client_ca_file: 'client-ca.crt' } },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 's', cache: { max_ttl_seconds: 3600 } },
  client_certificate: { revocation },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'bank', auth: 'mtls' },
    { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET'], upstream: 'bank', scopes: ['accounts'], psd2_roles: ['PSP_AI'] },
    { name: 'payments', path_prefix: '/ob/pisp', methods: ['GET'], upstream: 'bank', scopes: ['payments'], psd2_roles: ['PSP_PI'] },
  ],
});
const agents = new Map<Leaf, ReturnType<typeof tlsClient>>();
const as_ = (leaf: Leaf) => {
  let agent = agents.get(leaf);
  if (!agent) agents.set(leaf, (agent = tlsClient(serverCa.certPem, { certPem: leaf.pem, keyPem: leaf.keyPem })));
  return agent;
};
t.teardown(() => Promise.all([...agents.values()].map((a) => a.close())));
const get = (gw: TestGateway, leaf: Leaf, path: string, token: string) => call(`${gw.url}${path}`, { dispatcher: as_(leaf), headers: { authorization: `Bearer ${token}` } });
const introspected = () => as.calls.length;
const forwarded = () => upstream.seen.length;
async function metric(gw: TestGateway, name: string): Promise<string[]> {
  const text = await gw.metrics.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(name));
}

t.test('hard_fail with the real OCSP responder: roles, revocation, identity headers', async (t) => {
  const gw = await startGateway(doc({ mode: 'hard_fail', crl: { enabled: false } }), { baseDir: dir });
  t.teardown(() => gw.close());

  const ok = await get(gw, tppA, '/ob/aisp/accounts', 'tokA');
  t.equal(ok.status, 200);
  const seen = upstream.seen.at(-1);
  t.equal(seen?.headers['x-certbound-organization-id'], 'PSDGB-FCA-123456');
  t.equal(seen?.headers['x-certbound-psd2-roles'], 'PSP_AI');
  const both = await get(gw, tppC, '/ob/pisp/payments', 'tokC');
  t.equal(both.status, 200);
  t.equal(upstream.seen.at(-1)?.headers['x-certbound-psd2-roles'], 'PSP_PI PSP_AI', 'in ETSI order');
  t.equal(upstream.seen.at(-1)?.headers['x-certbound-organization-id'], undefined, 'no organizationIdentifier: no header');

  const calls = introspected();
  const sent = forwarded();
  const wrongRole = await get(gw, tppB, '/ob/aisp/accounts', 'tokB');
  t.equal(wrongRole.status, 403);
  t.equal(wrongRole.text, '{"error":"insufficient_role","error_description":"client certificate lacks PSD2 role PSP_AI"}');
  t.equal(introspected(), calls, 'the role check runs before any introspection call');
  t.equal(forwarded(), sent, 'nothing forwarded');

  const revoked = await get(gw, revokedEarly, '/ob/aisp/accounts', 'tokRevoked');
  t.equal(revoked.status, 401);
  t.equal(revoked.headers['www-authenticate'], 'Bearer realm="certbound", error="invalid_token", error_description="client certificate revoked"');
  t.equal(introspected(), calls, 'a revoked certificate costs no introspection call');
  const filtered = await call(`${gw.url}/token`, { dispatcher: as_(revokedEarly), method: 'POST', body: 'grant_type=client_credentials' });
  t.equal(filtered.status, 401);
  t.equal(filtered.text, '{"error":"invalid_client","error_description":"client certificate revoked"}');
  t.equal(forwarded(), sent, 'the token endpoint never sees a revoked certificate');

  const unknownSource = await get(gw, noAia, '/ob/aisp/accounts', 'tokNoAia');
  t.equal(unknownSource.status, 503, 'no OCSP URL and no CRL: no answer, hard_fail');
  t.equal(unknownSource.headers['retry-after'], '5');
  t.equal(JSON.parse(unknownSource.text).error, 'temporarily_unavailable');

  t.match((await metric(gw, 'certbound_revocation_checks_total')).join('\n'), /source="ocsp",result="good"} [1-9]/);
  t.match((await metric(gw, 'certbound_revocation_checks_total')).join('\n'), /source="ocsp",result="revoked"} 1/);
  t.same(await metric(gw, 'certbound_revocation_unavailable_total'), ['certbound_revocation_unavailable_total{action="refused"} 1']);
});

t.test('revoked at the responder while a keep-alive connection is open: refused within max_cache_seconds; tpp-b unaffected', async (t) => {
  const MAX_CACHE_S = 1;
  const TIMEOUT_MS = 2000;
  const gw = await startGateway(doc({ mode: 'hard_fail', ocsp: { max_cache_seconds: MAX_CACHE_S, timeout_ms: TIMEOUT_MS }, crl: { enabled: false } }), { baseDir: dir });
  const victim = qtsp.issue('tpp-victim', { ocspUrl: responder.url, qcStatements: psd2QcStatements(['PSP_AI']) });
  tokens.set('tokVictim', boundTo(victim, 'accounts'));
  const client = new Client(gw.url, { connect: { ca: serverCa.certPem, cert: victim.pem, key: victim.keyPem, servername: 'localhost' } });
  let connects = 0;
  client.on('connect', () => connects++);
  t.teardown(async () => {
    await client.close();
    await gw.close();
  });
  const ask = async () => {
    const res = await client.request({ path: '/ob/aisp/accounts', method: 'GET', headers: { authorization: 'Bearer tokVictim' } });
    await res.body.text();
    return res.statusCode;
  };
  t.equal(await ask(), 200);
  qtsp.revoke(victim);
  const revokedAt = performance.now();
  // Any answer cached before the revocation came from a lookup that started before it and ended
  // within timeout_ms; it expires max_cache_seconds after that. A request sent later must be refused.
  const mustRefuseAfter = revokedAt + TIMEOUT_MS + MAX_CACHE_S * 1000 + 50;
  const statuses: { sentAt: number; status: number }[] = [];
  while (performance.now() < mustRefuseAfter + 2000) {
    const sentAt = performance.now();
    statuses.push({ sentAt, status: await ask() });
    if (sentAt > mustRefuseAfter) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const late = statuses.filter((s) => s.sentAt > mustRefuseAfter);
  t.ok(late.length > 0, 'a request was sent after the bound');
  t.same(late.map((s) => s.status), late.map(() => 401), 'refused once max_cache_seconds has passed');
  const first401 = statuses.findIndex((s) => s.status === 401);
  t.ok(first401 >= 0 && statuses.slice(first401).every((s) => s.status === 401), 'once refused, always refused');
  t.equal(connects, 1, 'all on one keep-alive connection');
  t.equal((await get(gw, tppB, '/ob/pisp/payments', 'tokB')).status, 200, 'tpp-b keeps getting 200');
});

t.test('the OCSP responder down: hard_fail → 503 with Retry-After, nothing forwarded; soft_fail → passes, warned and counted', async (t) => {
  const gone = await serve(() => undefined);
  const down = gone.url;
  await gone.close();
  const hard = await startGateway(doc({ mode: 'hard_fail', retry_after_seconds: 9, ocsp: { url: down, timeout_ms: 500 }, crl: { enabled: false } }), { baseDir: dir });
  t.teardown(() => hard.close());
  const sent = forwarded();
  const calls = introspected();
  const refused = await get(hard, tppA, '/ob/aisp/accounts', 'tokA');
  t.equal(refused.status, 503);
  t.equal(refused.headers['retry-after'], '9');
  t.equal(refused.text, '{"error":"temporarily_unavailable","error_description":"client certificate revocation status unavailable"}');
  t.equal(forwarded(), sent);
  t.equal(introspected(), calls);
  t.same(await metric(hard, 'certbound_revocation_checks_total'), ['certbound_revocation_checks_total{source="ocsp",result="error"} 1']);

  const soft = await startGateway(doc({ mode: 'soft_fail', ocsp: { url: down, timeout_ms: 500 }, crl: { enabled: false } }), { baseDir: dir });
  t.teardown(() => soft.close());
  const passed = await get(soft, tppA, '/ob/aisp/accounts', 'tokA');
  t.equal(passed.status, 200, 'soft_fail: the request passes');
  t.equal((await get(soft, tppA, '/ob/aisp/accounts', 'tokA')).status, 200);
  const warned = soft.logs.filter((l) => l.msg === 'client certificate revocation status unavailable (soft_fail)');
  // One line per lookup: the second request uses the remembered "no answer" (5 s; the unit test
  // shows it on a test clock), unless this machine took longer than that between the two.
  t.ok(warned.length >= 1 && warned.length <= 2, 'a warn line per lookup, not per request');
  t.equal(warned[0]?.level, 'warn');
  t.match(String(warned[0]?.sources), /^ocsp: unavailable/, 'names the source and why');
  t.same(await metric(soft, 'certbound_revocation_unavailable_total'), ['certbound_revocation_unavailable_total{action="allowed"} 2'], 'each request counted');
});

t.test('CRL only, from files (openssl ca -gencrl): listed → 401, others → 200; a stale CRL refuses what it lists and answers nothing else', async (t) => {
  const fresh = qtsp.crl();
  writeFileSync(join(dir, 'fresh.crl'), fresh.der);
  const gw = await startGateway(doc({ mode: 'hard_fail', ocsp: { enabled: false }, crl: { files: ['fresh.crl'], use_distribution_points: false } }), { baseDir: dir });
  t.teardown(() => gw.close());
  t.equal((await get(gw, revokedEarly, '/ob/aisp/accounts', 'tokRevoked')).status, 401);
  t.equal((await get(gw, tppA, '/ob/aisp/accounts', 'tokA')).status, 200);
  t.match((await metric(gw, 'certbound_crl_next_update_seconds')).join('\n'), /certbound_crl_next_update_seconds\{source="[^"]*fresh\.crl"\} 8[0-9]{4}/);

  const stale = qtsp.crl({ lastUpdate: new Date(Date.now() - 7200_000), nextUpdate: new Date(Date.now() - 3600_000) });
  writeFileSync(join(dir, 'stale.crl'), stale.pem);
  const old = await startGateway(doc({ mode: 'hard_fail', ocsp: { enabled: false }, crl: { files: ['stale.crl'], use_distribution_points: false } }), { baseDir: dir });
  t.teardown(() => old.close());
  t.equal((await get(old, revokedEarly, '/ob/aisp/accounts', 'tokRevoked')).status, 401, 'listed in a stale CRL: still revoked');
  const unknown = await get(old, tppA, '/ob/aisp/accounts', 'tokA');
  t.equal(unknown.status, 503, 'not listed in a stale CRL: no answer');
  t.equal(unknown.headers['retry-after'], '5');
});

t.test('certificates from a trusted proxy header are checked the same way', async (t) => {
  const gw = await startGateway(
    {
      client_certificate: { source: 'header', header: 'x-client-cert', format: 'pem', trusted_proxies: ['127.0.0.1'], verify: { ca_file: 'client-ca.crt' }, revocation: { mode: 'hard_fail', crl: { enabled: false } } },
      authorization_server: doc({}).authorization_server,
      upstreams: { bank: upstream.url },
      routes: [{ name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET'], upstream: 'bank', scopes: ['accounts'] }],
    },
    { baseDir: dir },
  );
  t.teardown(() => gw.close());
  const viaHeader = (leaf: Leaf, token: string) =>
    call(`${gw.url}/ob/aisp/accounts`, { headers: { authorization: `Bearer ${token}`, 'x-client-cert': encodeURIComponent(leaf.pem) } });
  t.equal((await viaHeader(tppA, 'tokA')).status, 200);
  const revoked = await viaHeader(revokedEarly, 'tokRevoked');
  t.equal(revoked.status, 401);
  t.equal(JSON.parse(revoked.text).error_description, 'client certificate revoked');
});

t.test('PSD2 identity headers sent by a client are stripped', async (t) => {
  const gw = await startGateway(doc({ mode: 'off' }), { baseDir: dir });
  t.teardown(() => gw.close());
  const res = await call(`${gw.url}/ob/pisp/payments`, {
    dispatcher: as_(tppB),
    headers: { authorization: 'Bearer tokB', 'x-certbound-psd2-roles': 'PSP_AS', 'x-certbound-organization-id': 'forged', 'x_certbound_psd2_roles': 'PSP_AS' },
  });
  t.equal(res.status, 200);
  const seen = upstream.seen.at(-1);
  t.equal(seen?.headers['x-certbound-psd2-roles'], 'PSP_PI');
  t.equal(seen?.headers['x-certbound-organization-id'], 'PSDGB-FCA-654321');
  t.equal(seen?.headers['x_certbound_psd2_roles'], undefined);
});
