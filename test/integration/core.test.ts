import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { createCa, createSelfSigned } from '../fixtures/pki.js';
import { startGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream, serve } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';

const ca = await createCa({ commonName: 'Test CA' });
const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const stranger = await createSelfSigned({ commonName: 'Stranger', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-core-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

const now = Math.floor(Date.now() / 1000);
const bound = (thumbprint: string, extra: Record<string, unknown> = {}) => ({
  active: true, client_id: 'tpp-a', sub: 'user-1', scope: 'accounts payments', exp: now + 300, iss: 'https://as.example', cnf: { 'x5t#S256': thumbprint }, ...extra,
});
const tokens = new Map<string, Record<string, unknown>>([
  ['tokA', bound(tppA.thumbprint)],
  ['tokStranger', bound(stranger.thumbprint)],
  ['unbound', { active: true, client_id: 'tpp-a', scope: 'accounts', exp: now + 300 }],
  ['expired', bound(tppA.thumbprint, { exp: now - 3600 })],
  ['future', bound(tppA.thumbprint, { nbf: now + 3600 })],
  ['otherIssuer', bound(tppA.thumbprint, { iss: 'https://evil.example' })],
  ['readOnly', bound(tppA.thumbprint, { scope: 'payments' })],
]);
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
const deadPort = await serve(() => undefined);
const deadUrl = deadPort.url;
await deadPort.close();

const baseDoc = (overrides: Record<string, unknown> = {}) => ({
  listen: { tls: { cert_file: 'server.crt', key_file: 'server.key' } },
  authorization_server: {
    issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 'p@ss:word', timeout_ms: 500, retry_after_seconds: 7,
  },
  upstreams: { bank: upstream.url, dead: deadUrl, slow: { url: upstream.url, timeout_ms: 300 } },
  routes: [
    { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] },
    { name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'bank', auth: 'mtls' },
    { name: 'public', path_prefix: '/public', methods: ['GET', 'POST'], upstream: 'bank', auth: 'none' },
    { name: 'dead', path_prefix: '/dead', methods: ['GET'], upstream: 'dead', auth: 'none' },
    { name: 'slow', path_prefix: '/slowroute', methods: ['GET'], upstream: 'slow', auth: 'none' },
    { name: 'keep-auth', path_prefix: '/keep', methods: ['GET'], upstream: 'bank', auth: 'certificate_bound_token', forward_authorization: true },
  ],
  ...overrides,
});

const gw = await startGateway(baseDoc(), { baseDir: dir });
const asA = tlsClient(ca.certPem, tppA);
const asB = tlsClient(ca.certPem, tppB);
const asStranger = tlsClient(ca.certPem, stranger);
const anonymous = tlsClient(ca.certPem);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const lastSeen = () => upstream.seen[upstream.seen.length - 1];

t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), upstream.close(), asA.close(), asB.close(), asStranger.close(), anonymous.close()]);
});

t.test('token bound to A + certificate A → 200, forwarded with identity headers', async (t) => {
  const before = upstream.seen.length;
  const res = await call(`${gw.url}/ob/aisp/accounts?x=1`, {
    dispatcher: asA,
    headers: { ...bearer('tokA'), 'x-certbound-client-id': 'spoofed', 'x-certbound-certificate-thumbprint': 'spoofed', 'x-wso2-client-certificate': 'spoofed', 'x-fapi-interaction-id': '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a' },
  });
  t.equal(res.status, 200);
  t.same(res.json(), { ok: true, path: '/ob/aisp/accounts?x=1' });
  t.equal(res.headers['x-fapi-interaction-id'], '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a', 'UUID echoed');
  t.equal(res.headers['x-hop'], undefined, 'hop-by-hop response header listed in Connection removed');
  t.equal(upstream.seen.length, before + 1);
  const h = lastSeen()!.headers;
  t.equal(h.authorization, undefined, 'Authorization removed by default');
  t.equal(h['x-certbound-client-id'], 'tpp-a');
  t.equal(h['x-certbound-subject'], 'user-1');
  t.equal(h['x-certbound-scope'], 'accounts payments');
  t.equal(h['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  t.equal(h['x-wso2-client-certificate'], undefined, 'certificate header stripped');
  t.equal(h['x-forwarded-proto'], 'https');
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.match(h['x-forwarded-host'], /^127\.0\.0\.1:\d+$/);
  t.equal(h['x-fapi-interaction-id'], '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a');
  const call0 = as.calls[as.calls.length - 1]!;
  t.equal(call0.form.get('token'), 'tokA');
  t.equal(call0.form.get('token_type_hint'), 'access_token');
  t.equal(call0.authorization, `Basic ${Buffer.from('certbound:p%40ss%3Aword').toString('base64')}`);
});

t.test('an interaction id that is not a UUID is replaced: the client and the upstream see one new UUID', async (t) => {
  const res = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA, headers: { ...bearer('tokA'), 'x-fapi-interaction-id': 'not-a-uuid' } });
  t.equal(res.status, 200);
  const minted = res.headers['x-fapi-interaction-id'];
  t.match(minted, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(upstream.seen.at(-1)!.headers['x-fapi-interaction-id'], minted, 'exactly the new id, the client value not appended');
});

t.test('the same token with certificate B → 401 invalid_token, nothing forwarded', async (t) => {
  const before = upstream.seen.length;
  const res = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asB, headers: bearer('tokA') });
  t.equal(res.status, 401);
  t.match(res.headers['www-authenticate'], /^Bearer realm="certbound", error="invalid_token", error_description="client certificate does not match/);
  t.equal(res.json().error, 'invalid_token');
  t.match(res.headers['x-fapi-interaction-id'], /^[0-9a-f-]{36}$/, 'a fresh UUID when none was sent');
  t.equal(upstream.seen.length, before);
});

t.test('no certificate → 401 invalid_token, without calling the authorization server', async (t) => {
  const calls = as.calls.length;
  const res = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: anonymous, headers: bearer('tokA') });
  t.equal(res.status, 401);
  t.equal(res.json().error, 'invalid_token');
  t.equal(res.json().error_description, 'client certificate required');
  t.equal(as.calls.length, calls);
});

t.test('token failures', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['unbound', 401, 'invalid_token'],
    ['expired', 401, 'invalid_token'],
    ['future', 401, 'invalid_token'],
    ['otherIssuer', 401, 'invalid_token'],
    ['unknown-token', 401, 'invalid_token'],
    ['readOnly', 403, 'insufficient_scope'],
  ];
  const before = upstream.seen.length;
  for (const [token, status, error] of cases) {
    const res = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA, headers: bearer(token) });
    t.equal(res.status, status, token);
    t.equal(res.json().error, error, token);
  }
  const scope = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA, headers: bearer('readOnly') });
  t.match(scope.headers['www-authenticate'], /error="insufficient_scope".*scope="accounts"$/);
  t.equal(upstream.seen.length, before, 'nothing forwarded');
});

t.test('bearer extraction', async (t) => {
  const missing = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA });
  t.equal(missing.status, 401);
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="certbound"');
  const lower = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA, headers: { authorization: 'bEaReR tokA' } });
  t.equal(lower.status, 200, 'scheme is case-insensitive');
  const malformed = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asA, headers: { authorization: 'Bearer a b' } });
  t.equal(malformed.status, 400);
  t.equal(malformed.json().error, 'invalid_request');
  const query = await call(`${gw.url}/ob/aisp/accounts?access_token=tokA`, { dispatcher: asA });
  t.equal(query.status, 400);
  t.equal(query.json().error, 'invalid_request');
});

t.test('routing: 404, 405 with Allow, 400 on ambiguous paths, forwarded path normalized', async (t) => {
  t.equal((await call(`${gw.url}/nowhere`, { dispatcher: asA })).status, 404);
  const m = await call(`${gw.url}/ob/aisp/x`, { dispatcher: asA, method: 'DELETE', headers: bearer('tokA') });
  t.equal(m.status, 405);
  t.equal(m.headers.allow, 'GET, POST');
  for (const p of ['/ob/aisp%2Fx', '/ob/%5Caisp', '/ob/aisp/%zz', '/ob/aisp/%00']) {
    const res = await call(`${gw.url}${p}`, { dispatcher: asA, headers: bearer('tokA') });
    t.equal(res.status, 400, p);
    t.equal(res.json().error, 'invalid_request', p);
  }
  const dots = await call(`${gw.url}/public/../ob/aisp/./a//b`, { dispatcher: asA, headers: bearer('tokA') });
  t.equal(dots.status, 200);
  t.equal(lastSeen()!.url, '/ob/aisp/a/b', 'the path forwarded is the one matched');
  const sneaky = await call(`${gw.url}/public/%2e%2e/ob/aisp/a`, { dispatcher: anonymous });
  t.equal(sneaky.status, 401, 'encoded dot-segments cannot escape into a protected route');
});

t.test('authorization server failures → 503 with Retry-After, nothing forwarded', async (t) => {
  const down = await startGateway(baseDoc({ authorization_server: { issuer: 'https://as.example', introspection_endpoint: `${deadUrl}/introspect`, client_id: 'c', client_secret: 's', timeout_ms: 300, retry_after_seconds: 7 } }), { baseDir: dir });
  t.teardown(() => down.close());
  const before = upstream.seen.length;
  const res = await call(`${down.url}/ob/aisp/accounts`, { dispatcher: asA, headers: bearer('tokA') });
  t.equal(res.status, 503);
  t.equal(res.headers['retry-after'], '7');
  t.equal(res.json().error, 'temporarily_unavailable');
  t.equal(upstream.seen.length, before);
});

t.test('auth: mtls (token filter) requires a certificate and forwards it', async (t) => {
  const calls = upstream.seen.length;
  const none = await call(`${gw.url}/token`, { dispatcher: anonymous, method: 'POST', body: 'grant_type=client_credentials' });
  t.equal(none.status, 400);
  t.same(none.json(), { error: 'invalid_request', error_description: 'transport certificate not found in the request' });
  t.equal(upstream.seen.length, calls, 'never reaches the authorization server');
  const ok = await call(`${gw.url}/token`, {
    dispatcher: asA, method: 'POST', body: 'grant_type=client_credentials',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': encodeURIComponent(tppB.certPem), authorization: 'Basic abc' },
  });
  t.equal(ok.status, 200);
  const h = lastSeen()!.headers;
  t.equal(decodeURIComponent(String(h['x-client-cert'])).trim(), tppA.certPem.trim(), 'the TLS certificate, not the client-supplied copy');
  t.equal(h['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  t.equal(h.authorization, 'Basic abc', 'a token endpoint keeps the client credential by default');
});

t.test('auth: none forwards without checks; forward_authorization keeps the header', async (t) => {
  const res = await call(`${gw.url}/public/hello`, { dispatcher: anonymous, headers: { 'x-certbound-subject': 'spoofed' } });
  t.equal(res.status, 200);
  t.equal(lastSeen()!.headers['x-certbound-subject'], undefined);
  const keep = await call(`${gw.url}/keep`, { dispatcher: asA, headers: bearer('tokA') });
  t.equal(keep.status, 200);
  t.equal(lastSeen()!.headers.authorization, 'Bearer tokA');
});

t.test('upstream failures: refused → 502, timeout → 504', async (t) => {
  const refused = await call(`${gw.url}/dead`, { dispatcher: anonymous });
  t.equal(refused.status, 502);
  t.equal(refused.json().error, 'bad_gateway');
  const slow = await call(`${gw.url}/slowroute/slow`, { dispatcher: anonymous });
  t.equal(slow.status, 504);
});

t.test('a 5 MB POST body arrives intact', async (t) => {
  const body = randomBytes(5 * 1024 * 1024);
  const res = await call(`${gw.url}/ob/aisp/upload`, { dispatcher: asA, method: 'POST', headers: { ...bearer('tokA'), 'content-type': 'application/octet-stream' }, body });
  t.equal(res.status, 200);
  t.equal(lastSeen()!.bodyBytes, body.length);
  t.equal(lastSeen()!.bodySha256, createHash('sha256').update(body).digest('hex'));
});

t.test('a response streams before the upstream finishes', async (t) => {
  const { request } = await import('undici');
  const res = await request(`${gw.url}/public/stream`, { dispatcher: anonymous });
  t.equal(res.statusCode, 200);
  const iterator = res.body[Symbol.asyncIterator]();
  const first = await iterator.next();
  t.equal(String(first.value), 'first chunk\n', 'first chunk arrived while the upstream is still open');
  upstream.release();
  let rest = '';
  for (let n = await iterator.next(); !n.done; n = await iterator.next()) rest += String(n.value);
  t.equal(rest, 'last chunk\n');
});

t.test('client_ca_file: an unverified certificate counts as none, and the 401 says why', async (t) => {
  const strict = await startGateway(baseDoc({ listen: { tls: { cert_file: 'server.crt', key_file: 'server.key', client_ca_file: 'ca.crt' } } }), { baseDir: dir });
  t.teardown(() => strict.close());
  const res = await call(`${strict.url}/ob/aisp/accounts`, { dispatcher: asStranger, headers: bearer('tokStranger') });
  t.equal(res.status, 401);
  t.match(res.json().error_description, /^client certificate required: client certificate not verified \(/);
  const ok = await call(`${strict.url}/ob/aisp/accounts`, { dispatcher: asA, headers: bearer('tokA') });
  t.equal(ok.status, 200);
  const mtls = await call(`${strict.url}/token`, { dispatcher: asStranger, method: 'POST', body: '' });
  t.equal(mtls.status, 400);
});

t.test('without a client CA, a self-signed certificate bound to the token passes (RFC 8705 §2.2)', async (t) => {
  const res = await call(`${gw.url}/ob/aisp/accounts`, { dispatcher: asStranger, headers: bearer('tokStranger') });
  t.equal(res.status, 200);
});

t.test('TLS: FAPI cipher suites below TLS 1.3; renegotiation refused', async (t) => {
  const port = Number(new URL(gw.url).port);
  const cipher = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
      resolve(s.getCipher().standardName);
      s.end();
    });
    s.on('error', reject);
  });
  t.match(cipher, /^TLS_ECDHE_RSA_WITH_AES_(128|256)_GCM_SHA(256|384)$/);
  const refused = await new Promise<string>((resolve) => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA256' }, () => resolve('connected'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  t.not(refused, 'connected', 'a non-FAPI TLS 1.2 suite is refused');
});

t.test('header mode: honoured from trusted proxies only; repeated header → 400', async (t) => {
  const viaHeader = await startGateway(baseDoc({ listen: {}, client_certificate: { source: 'header', header: 'x-wso2-client-certificate', client_certificate_encode: true, trusted_proxies: ['127.0.0.1/32'] } }), { baseDir: dir });
  const untrusted = await startGateway(baseDoc({ listen: {}, client_certificate: { source: 'header', trusted_proxies: ['10.0.0.0/8'] } }), { baseDir: dir });
  t.teardown(async () => {
    await viaHeader.close();
    await untrusted.close();
  });
  const header = { 'x-wso2-client-certificate': encodeURIComponent(tppA.certPem) };
  const ok = await call(`${viaHeader.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), ...header } });
  t.equal(ok.status, 200);
  t.equal(lastSeen()!.headers['x-wso2-client-certificate'], undefined, 'stripped before the upstream');
  t.equal(lastSeen()!.headers['x-forwarded-proto'], 'http');
  const wrong = await call(`${viaHeader.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), 'x-wso2-client-certificate': encodeURIComponent(tppB.certPem) } });
  t.equal(wrong.status, 401);
  const repeated = await call(`${viaHeader.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), 'x-wso2-client-certificate': [header['x-wso2-client-certificate'], header['x-wso2-client-certificate']] } });
  t.equal(repeated.status, 400);
  const garbage = await call(`${viaHeader.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), 'x-wso2-client-certificate': 'not-a-certificate!' } });
  t.equal(garbage.status, 401);
  t.equal(garbage.json().error, 'invalid_token');
  const empty = await call(`${viaHeader.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), 'x-wso2-client-certificate': '' } });
  t.equal(empty.status, 401);
  t.equal(empty.json().error_description, 'client certificate required');

  const ignored = await call(`${untrusted.url}/ob/aisp/accounts`, { headers: { ...bearer('tokA'), ...header } });
  t.equal(ignored.status, 401, 'header from an untrusted peer is ignored');
  t.equal(ignored.json().error_description, 'client certificate required');
  t.ok(untrusted.logs.some((l) => l.msg === 'certificate header from an untrusted peer ignored'));
  const pub = await call(`${untrusted.url}/public/x`, { headers: { ...header, 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https' } });
  t.equal(pub.status, 200);
  t.equal(lastSeen()!.headers['x-wso2-client-certificate'], undefined, 'stripped even when ignored');
  t.equal(lastSeen()!.headers['x-forwarded-for'], '127.0.0.1', 'forged X-Forwarded-For from an untrusted peer is replaced');
  t.equal(lastSeen()!.headers['x-forwarded-proto'], 'http');
});

t.test('WebSocket upgrade passes the same checks, then is tunnelled', async (t) => {
  const upgrade = (headers: Record<string, string>, cert = tppA) =>
    new Promise<string>((resolve, reject) => {
      const port = Number(new URL(gw.url).port);
      const s = tlsConnect({ port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost', cert: cert.certPem, key: cert.keyPem }, () => {
        const lines = ['GET /ob/aisp/ws HTTP/1.1', 'host: localhost', 'connection: Upgrade', 'upgrade: websocket', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
        s.write(`${lines.join('\r\n')}\r\n\r\n`);
      });
      let data = '';
      s.on('data', (d: Buffer) => {
        data += d.toString();
        if (data.includes('\r\n\r\n') && data.startsWith('HTTP/1.1 101') && !data.includes('echo:')) s.write('ping');
        if (data.includes('echo:ping') || (data.includes('\r\n\r\n') && !data.startsWith('HTTP/1.1 101'))) {
          s.destroy();
          resolve(data);
        }
      });
      s.on('error', reject);
    });
  const ok = await upgrade(bearer('tokA'));
  t.match(ok, /^HTTP\/1\.1 101/);
  t.match(ok, /echo:ping/);
  t.equal(lastSeen()!.headers.authorization, undefined);
  t.equal(lastSeen()!.headers['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  const refused = await upgrade(bearer('tokA'), tppB);
  t.match(refused, /^HTTP\/1\.1 401 Unauthorized/);
  t.match(refused, /www-authenticate: Bearer realm="certbound", error="invalid_token"/);
});

t.test('metrics and access log', async (t) => {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  t.match(text, /certbound_requests_total\{route="accounts",method="GET",status_class="2xx",outcome="forwarded"\} \d+/);
  t.match(text, /certbound_auth_failures_total\{route="accounts",reason="certificate_mismatch"\} \d+/);
  const line = gw.logs.find((l) => l.msg === 'request' && l.route === 'accounts' && l.status === 200);
  t.ok(line);
  t.equal(line?.certificate_thumbprint, tppA.thumbprint);
  t.equal(line?.client_id, 'tpp-a');
  t.notMatch(gw.rawLogs.join('\n'), /tokA|BEGIN CERTIFICATE/, 'never a token or a certificate in the logs');
  t.match(text, /certbound_requests_total\{route="accounts",method="DELETE",status_class="4xx",outcome="rejected"\} \d+/, 'a 405 counts against the route that matched');
  const refused = gw.logs.find((l) => l.msg === 'request' && l.reason === 'certificate_mismatch');
  t.equal(refused?.certificate_thumbprint, tppB.thumbprint, 'a refused request logs the thumbprint it presented');
  t.equal(refused?.status, 401);
});
