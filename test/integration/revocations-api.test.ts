// POST /revocations on the admin listener, without Redis: the endpoint's contract (secret,
// forms, statuses) and revocation in this process, refused without asking the server.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { startGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';

const ca = await createCa({ commonName: 'Revocations CA' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-revocations-'));
const SECRET = 'admin-secret-0123456789abcdefghijklmnop';
writeFileSync(join(dir, 'admin-secret'), `${SECRET}\n`);
writeFileSync(join(dir, 'short-secret'), 'short');

const now = Math.floor(Date.now() / 1000);
const bound = (thumbprint: string, extra: Record<string, unknown>) => ({ active: true, scope: 'accounts', exp: now + 600, cnf: { 'x5t#S256': thumbprint }, ...extra });
const tokens = new Map<string, Record<string, unknown>>([
  ['tokByToken', bound(tppA.thumbprint, { client_id: 'tpp-a', iat: now })],
  ['tokOld', bound(tppA.thumbprint, { client_id: 'tpp-old', iat: now - 100 })],
  ['tokNew', bound(tppA.thumbprint, { client_id: 'tpp-old', iat: now + 10 })],
  ['tokNoIat', bound(tppA.thumbprint, { client_id: 'tpp-old' })],
  ['tokB', bound(tppB.thumbprint, { client_id: 'tpp-b', iat: now })],
  ['tokKept', bound(tppA.thumbprint, { client_id: 'tpp-a', iat: now })],
]);
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
const doc = (admin: Record<string, unknown>) => ({
  admin,
  client_certificate: { source: 'header', header: 'x-client-cert', client_certificate_encode: true, trusted_proxies: ['127.0.0.1'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 's', cache: { max_ttl_seconds: 300 } },
  upstreams: { bank: upstream.url },
  routes: [{ name: 'accounts', path_prefix: '/acc', upstream: 'bank', auth: 'certificate_bound_token' }],
});
const gw = await startGateway(doc({ revocation_secret_file: 'admin-secret' }), { baseDir: dir });
t.teardown(async () => {
  await gw.close();
  await as.close();
  await upstream.close();
});

const api = (token: string, cert = tppA) => call(`${gw.url}/acc/x`, { headers: { authorization: `Bearer ${token}`, 'x-client-cert': encodeURIComponent(cert.certPem) } });
/** `authorization` null: none sent. */
const revoke = (body: unknown, authorization: string | null = `Bearer ${SECRET}`) =>
  call(`${gw.adminUrl}/revocations`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization !== null ? { authorization } : {}) }, body: typeof body === 'string' ? body : JSON.stringify(body) });

t.test('without the admin secret, or with a wrong one: 401, nothing revoked', async (t) => {
  t.equal((await api('tokKept')).status, 200);
  for (const authorization of [null, 'Bearer wrong', `Basic ${SECRET}`, `Bearer ${SECRET}x`, `Bearer ${SECRET.slice(0, -1)}`]) {
    const res = await revoke({ token: 'tokKept' }, authorization);
    t.equal(res.status, 401, String(authorization));
    t.equal(res.json()['error'], 'unauthorized');
    t.equal(res.headers['www-authenticate'], 'Bearer realm="certbound-admin"');
  }
  t.equal((await api('tokKept')).status, 200, 'still valid');
});

t.test('bodies that are none of the three forms: 400', async (t) => {
  for (const body of ['not json', '[]', '{}', { token: '' }, { token: 1 }, { token: 'a', extra: 1 }, { client_id: 'c' }, { client_id: 'c', issued_before: 'x' }, { certificate_thumbprint: 'short' }, { certificate_thumbprint: tppA.thumbprint, token: 'a' }]) {
    const res = await revoke(body);
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.json()['error'], 'invalid_request');
  }
  const big = await revoke({ token: 'x'.repeat(20_000) });
  t.equal(big.status, 413);
  const get = await call(`${gw.adminUrl}/revocations`, { headers: { authorization: `Bearer ${SECRET}` } });
  t.equal(get.status, 405);
  t.equal(get.headers['allow'], 'POST');
});

t.test('by token: 202, then refused from the cache, without asking the server', async (t) => {
  t.equal((await api('tokByToken')).status, 200);
  const calls = as.calls.length;
  const res = await revoke({ token: 'tokByToken' });
  t.equal(res.status, 202);
  t.same(res.json(), { status: 'accepted' });
  const refused = await api('tokByToken');
  t.equal(refused.status, 401);
  t.same(refused.json(), { error: 'invalid_token', error_description: 'the access token has been revoked' });
  t.equal(as.calls.length, calls, 'the authorization server was not asked');
  const line = gw.logs.find((l) => l['msg'] === 'revocation accepted');
  t.same({ kind: line?.['kind'], peer: line?.['peer'] }, { kind: 'token', peer: '127.0.0.1' }, 'logged: the kind and the caller');
  t.notOk(gw.rawLogs.some((l) => l.includes('tokByToken')), 'the token is never logged');
});

t.test('by client_id and issued_before: earlier tokens and tokens without iat', async (t) => {
  for (const token of ['tokOld', 'tokNew', 'tokNoIat']) t.equal((await api(token)).status, 200, token);
  t.equal((await revoke({ client_id: 'tpp-old', issued_before: now })).status, 202);
  t.equal((await api('tokOld')).status, 401, 'issued before');
  t.equal((await api('tokNoIat')).status, 401, 'no iat');
  t.equal((await api('tokNew')).status, 200, 'issued after');
});

t.test('by certificate thumbprint: every token bound to it', async (t) => {
  t.equal((await api('tokB', tppB)).status, 200);
  t.equal((await revoke({ certificate_thumbprint: tppB.thumbprint })).status, 202);
  t.equal((await api('tokB', tppB)).status, 401);
  t.equal((await api('tokKept')).status, 200, "another certificate's token still works");
  const metrics = await gw.metrics.registry.metrics();
  t.match(metrics, /certbound_revocations_total\{kind="certificate",origin="api"\} 1/);
  t.match(metrics, /certbound_auth_failures_total\{route="accounts",reason="token_revoked"\} [1-9]/);
});

t.test('without admin.revocation_secret_file the endpoint is off; a short secret is refused', async (t) => {
  const off = await startGateway(doc({}), { baseDir: dir });
  t.teardown(() => off.close());
  const res = await call(`${off.adminUrl}/revocations`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body: '{"token":"x"}' });
  t.equal(res.status, 404);
  await t.rejects(startGateway(doc({ revocation_secret_file: 'short-secret' }), { baseDir: dir }), /admin\.revocation_secret_file: .*short-secret must hold at least 32 bytes \(it has 5\)/);
});
