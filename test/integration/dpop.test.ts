// DPoP (RFC 9449) through the real gateway: TLS with client certificates, a table-driven
// introspection endpoint, a recording upstream. The FAPI 2.0 conformance suite's resource-server
// cases, each with its exact status, error code and challenge, and what reaches the upstream.
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call, tlsClient, type Reply } from '../helpers/client.js';
import { proof, proofKey, signProof, ath } from '../dpop/fixtures.js';

const ca = await createCa({ commonName: 'DPoP Test CA' });
const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-dpop-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

const key1 = proofKey('ES256');
const key2 = proofKey('ES256');
const rsaKey = proofKey('PS256');
const edKey = proofKey('EdDSA');
const rs256Key = proofKey('RS256');
const now = Math.floor(Date.now() / 1000);
const active = (extra: Record<string, unknown>) => ({ active: true, scope: 'accounts payments', exp: now + 600, iss: 'https://as.example', ...extra });
const tokens = new Map<string, Record<string, unknown>>([
  ['tok1', active({ client_id: 'client-1', token_type: 'DPoP', cnf: { jkt: key1.jkt } })],
  ['tok2', active({ client_id: 'client-2', token_type: 'DPoP', cnf: { jkt: key2.jkt } })],
  ['tokRsa', active({ client_id: 'client-3', token_type: 'DPoP', cnf: { jkt: rsaKey.jkt } })],
  ['tokEd', active({ client_id: 'client-4', token_type: 'DPoP', cnf: { jkt: edKey.jkt } })],
  ['tokCert', active({ client_id: 'client-a', token_type: 'Bearer', cnf: { 'x5t#S256': tppA.thumbprint } })],
  ['tokBoth', active({ client_id: 'client-1', cnf: { jkt: key1.jkt, 'x5t#S256': tppA.thumbprint } })],
  ['tokPayments', active({ client_id: 'client-1', scope: 'payments', cnf: { jkt: key1.jkt } })],
  ['tokPlain', active({ client_id: 'client-1' })],
]);
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
const ORIGIN = 'https://api.bank.example';

const doc = (extra: Record<string, unknown> = {}) => ({
  listen: { tls: { cert_file: 'server.crt', key_file: 'server.key', client_ca_file: 'ca.crt' }, public_url: ORIGIN },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 's', timeout_ms: 2000 },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'payments', path_prefix: '/pay', upstream: 'bank', auth: 'dpop_bound_token', scopes: ['accounts'], methods: ['GET', 'POST'] },
    { name: 'accounts', path_prefix: '/acc', upstream: 'bank', auth: 'sender_constrained_token', scopes: ['accounts'] },
    { name: 'certificate', path_prefix: '/cert', upstream: 'bank', auth: 'certificate_bound_token' },
    { name: 'token', path_prefix: '/token', upstream: 'bank', auth: 'mtls', methods: ['POST'] },
    { name: 'own-origin', path_prefix: '/own', upstream: 'bank', auth: 'dpop_bound_token', public_url: 'https://Other.Example:8443' },
    { name: 'keep', path_prefix: '/keep', upstream: 'bank', auth: 'dpop_bound_token', forward_authorization: true },
  ],
  ...extra,
});
const gw = await startGateway(doc(), { baseDir: dir });
const withA = tlsClient(ca.certPem, tppA);
const withB = tlsClient(ca.certPem, tppB);
const bare = tlsClient(ca.certPem);
t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), upstream.close(), withA.close(), withB.close(), bare.close()]);
});

const ALGS = 'algs="ES256 PS256 EdDSA"';
const dpopHeaders = (token: string, proofs: string | string[]) => ({ authorization: `DPoP ${token}`, dpop: proofs });

/** Sends one request and notes whether it reached the upstream and the authorization server. */
async function send(gateway: TestGateway, path: string, headers: Record<string, string | string[]>, opts: { method?: 'GET' | 'POST'; client?: typeof bare } = {}) {
  const seen = upstream.seen.length;
  const introspected = as.calls.length;
  const res = await call(`${gateway.url}${path}`, { dispatcher: opts.client ?? bare, method: opts.method ?? 'GET', headers });
  return { res, forwarded: upstream.seen.length > seen, introspected: as.calls.length > introspected };
}

const challengeOf = (res: Reply): string[] => {
  const value = res.headers['www-authenticate'];
  return value === undefined ? [] : typeof value === 'string' ? [value] : value;
};

function refused(t: Test, res: Reply, forwarded: boolean, error: string) {
  t.equal(res.status, 401, 'status 401');
  t.equal(res.json()['error'], error, `error ${error}`);
  t.equal(forwarded, false, 'nothing forwarded');
  const dpop = challengeOf(res).find((c) => c.startsWith('DPoP '));
  t.ok(dpop, 'DPoP challenge');
  t.match(dpop, new RegExp(`^DPoP realm="certbound", error="${error}", error_description="[^"]+", ${ALGS}$`), 'challenge names the error and the algorithms');
}

t.test('a DPoP-bound token with a proof from its key → 200, forwarded with the jkt and without the credentials', async (t) => {
  const p = proof(key1, 'GET', `${ORIGIN}/pay/accounts`, 'tok1');
  const { res, forwarded } = await send(gw, '/pay/accounts?page=2', { ...dpopHeaders('tok1', p), 'x-certbound-dpop-jkt': 'spoofed' });
  t.equal(res.status, 200);
  t.ok(forwarded);
  const h = upstream.seen.at(-1)?.headers ?? {};
  t.equal(h['x-certbound-dpop-jkt'], key1.jkt, 'the proof key thumbprint, not the client copy');
  t.equal(h['x-certbound-client-id'], 'client-1');
  t.equal(h.authorization, undefined, 'Authorization removed');
  t.equal(h.dpop, undefined, 'DPoP removed');
  t.equal(upstream.seen.at(-1)?.url, '/pay/accounts?page=2');
  const line = gw.logs.filter((l) => l['msg'] === 'request').at(-1);
  t.equal(line?.['dpop_jkt'], key1.jkt, 'the access line carries the jkt');
  t.notOk(gw.rawLogs.some((l) => l.includes(p) || l.includes('tok1') || l.includes(p.split('.')[1] as string)), 'no proof or token in any log line');
});

t.test('PS256 and EdDSA proofs verify; RS256 is not configured', async (t) => {
  for (const [key, token] of [[rsaKey, 'tokRsa'], [edKey, 'tokEd']] as const) {
    const { res } = await send(gw, '/pay/x', dpopHeaders(token, proof(key, 'GET', `${ORIGIN}/pay/x`, token)));
    t.equal(res.status, 200, key.alg);
  }
  const { res, forwarded } = await send(gw, '/pay/x', dpopHeaders('tok1', proof(rs256Key, 'GET', `${ORIGIN}/pay/x`, 'tok1')));
  refused(t, res, forwarded, 'invalid_dpop_proof');
});

t.test('FAPI 2.0 negative cases: each refused with its exact code, before any introspection for proof defects', async (t) => {
  const htu = `${ORIGIN}/pay/x`;
  const good = (changes: Parameters<typeof proof>[4] = {}) => proof(key1, 'GET', htu, 'tok1', changes);
  const cases: Array<[string, Record<string, string | string[]>, string, boolean]> = [
    ['multiple DPoP headers', dpopHeaders('tok1', [good(), good()]), 'invalid_dpop_proof', false],
    ['a malformed JWT', dpopHeaders('tok1', 'not-a-jwt'), 'invalid_dpop_proof', false],
    ['no proof', { authorization: 'DPoP tok1' }, 'invalid_dpop_proof', false],
    ...(['typ', 'alg', 'jwk'] as const).map((m): [string, Record<string, string | string[]>, string, boolean] => [`${m} missing`, dpopHeaders('tok1', good({ header: { [m]: undefined } })), 'invalid_dpop_proof', false]),
    ...(['jti', 'htm', 'htu', 'iat', 'ath'] as const).map((m): [string, Record<string, string | string[]>, string, boolean] => [`${m} missing`, dpopHeaders('tok1', good({ payload: { [m]: undefined } })), 'invalid_dpop_proof', false]),
    ['a wrong typ', dpopHeaders('tok1', good({ header: { typ: 'JWT' } })), 'invalid_dpop_proof', false],
    ['a disallowed alg', dpopHeaders('tok1', good({ header: { alg: 'ES384' } })), 'invalid_dpop_proof', false],
    ['alg none', dpopHeaders('tok1', `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk: key1.jwk })).toString('base64url')}.${Buffer.from(JSON.stringify({ jti: 'n', htm: 'GET', htu, iat: now, ath: ath('tok1') })).toString('base64url')}.`), 'invalid_dpop_proof', false],
    ['a bad signature', dpopHeaders('tok1', good({ signWith: key2.privateKey })), 'invalid_dpop_proof', false],
    ['a private jwk', dpopHeaders('tok1', good({ header: { jwk: { ...key1.jwk, d: (key1.privateKey.export({ format: 'jwk' }) as { d: string }).d } } })), 'invalid_dpop_proof', false],
    ['a wrong htm', dpopHeaders('tok1', good({ payload: { htm: 'POST' } })), 'invalid_dpop_proof', false],
    ['a wrong htu', dpopHeaders('tok1', good({ payload: { htu: `${ORIGIN}/pay/y` } })), 'invalid_dpop_proof', false],
    ['htu naming the Host the request used, not the public URL', dpopHeaders('tok1', good({ payload: { htu: `${gw.url}/pay/x` } })), 'invalid_dpop_proof', false],
    ['iat an hour ahead', dpopHeaders('tok1', good({ nowSeconds: Math.floor(Date.now() / 1000) + 3600 })), 'invalid_dpop_proof', false],
    ['iat an hour behind', dpopHeaders('tok1', good({ nowSeconds: Math.floor(Date.now() / 1000) - 3600 })), 'invalid_dpop_proof', false],
    ['a wrong ath', dpopHeaders('tok1', good({ payload: { ath: ath('tok2') } })), 'invalid_token', false],
    ["another client's key", dpopHeaders('tok1', proof(key2, 'GET', htu, 'tok1')), 'invalid_token', true],
    ["client 1's key with client 2's token", dpopHeaders('tok2', proof(key1, 'GET', htu, 'tok2')), 'invalid_token', true],
    ['a token that is not DPoP-bound', dpopHeaders('tokCert', proof(key1, 'GET', htu, 'tokCert')), 'invalid_token', true],
    ['an inactive token', dpopHeaders('unknown', proof(key1, 'GET', htu, 'unknown')), 'invalid_token', true],
  ];
  for (const [name, headers, error, introspects] of cases) {
    await t.test(name, async (t) => {
      const { res, forwarded, introspected } = await send(gw, '/pay/x', headers);
      refused(t, res, forwarded, error);
      if (!introspects) t.equal(introspected, false, 'no introspection call');
    });
  }
});

t.test('the Bearer downgrade of a DPoP-bound token is refused on every route kind', async (t) => {
  const bearer = { authorization: 'Bearer tok1' };
  const pay = await send(gw, '/pay/x', bearer, { client: withA });
  refused(t, pay.res, pay.forwarded, 'invalid_token');
  t.equal(gw.logs.filter((l) => l['msg'] === 'request').at(-1)?.['reason'], 'dpop_required');
  for (const path of ['/acc/x', '/cert/x']) {
    const { res, forwarded } = await send(gw, path, bearer, { client: withA });
    t.equal(res.status, 401, path);
    t.equal(res.json()['error'], 'invalid_token', path);
    t.equal(forwarded, false);
    t.equal(gw.logs.filter((l) => l['msg'] === 'request').at(-1)?.['reason'], 'dpop_downgrade', path);
    t.match(challengeOf(res)[0], /^Bearer realm="certbound", error="invalid_token", error_description="DPoP-bound access token presented as a bearer token"/);
  }
});

t.test('FAPI 2.0 positive cases: accepted', async (t) => {
  const cases: Array<[string, string, Parameters<typeof proof>[4]?]> = [
    ['htu with a query', `${ORIGIN}/pay/x?a=1`],
    ['htu with a fragment', `${ORIGIN}/pay/x#frag`],
    ['extra claims', `${ORIGIN}/pay/x`, { payload: { extra: 'claim', nested: { a: 1 } }, header: { kid: 'k1' } }],
    ['the scheme in capitals', 'HTTPS://api.bank.example/pay/x'],
    ['the host in another case', 'https://API.Bank.Example/pay/x'],
    ['the default port written out', 'https://api.bank.example:443/pay/x'],
    ['percent-encoding of an unreserved character', `${ORIGIN}/pay/%78`],
    ['iat 10 s ahead', `${ORIGIN}/pay/x`, { nowSeconds: Math.floor(Date.now() / 1000) + 10 }],
    ['iat 10 s behind', `${ORIGIN}/pay/x`, { nowSeconds: Math.floor(Date.now() / 1000) - 10 }],
  ];
  for (const [name, htu, changes] of cases) {
    const { res, forwarded } = await send(gw, '/pay/x', dpopHeaders('tok1', proof(key1, 'GET', htu, 'tok1', changes)));
    t.equal(res.status, 200, name);
    t.ok(forwarded, name);
  }
  const capitals = await send(gw, '/pay/x', { Authorization: 'dpop tok1', DPOP: proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1') });
  t.equal(capitals.res.status, 200, 'the DPOP header name and the scheme in any case');
  const post = await send(gw, '/pay/x', dpopHeaders('tok1', proof(key1, 'POST', `${ORIGIN}/pay/x`, 'tok1')), { method: 'POST' });
  t.equal(post.res.status, 200, 'htm POST');
  const dots = await send(gw, '/pay/a/../x', dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1')));
  t.equal(dots.res.status, 200, 'htu against the normalized request path');
});

t.test('a replayed proof is refused', async (t) => {
  const p = proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1');
  t.equal((await send(gw, '/pay/x', dpopHeaders('tok1', p))).res.status, 200);
  const again = await send(gw, '/pay/x', dpopHeaders('tok1', p));
  refused(t, again.res, again.forwarded, 'invalid_dpop_proof');
  t.equal(gw.logs.filter((l) => l['msg'] === 'request').at(-1)?.['reason'], 'dpop_replay');
  const metrics = await gw.metrics.registry.metrics();
  t.match(metrics, /certbound_auth_failures_total\{route="payments",reason="dpop_replay"\} [1-9]/, 'counted as an auth failure, by reason');
  t.match(metrics, /certbound_auth_failures_total\{route="payments",reason="invalid_dpop_proof"\} [1-9]/);
  // The same jti under another key is another proof.
  const jti = 'shared-jti';
  t.equal((await send(gw, '/pay/x', dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1', { payload: { jti } })))).res.status, 200);
  t.equal((await send(gw, '/pay/x', dpopHeaders('tok2', proof(key2, 'GET', `${ORIGIN}/pay/x`, 'tok2', { payload: { jti } })))).res.status, 200);
});

t.test('a route with its own public_url checks htu against that origin', async (t) => {
  t.equal((await send(gw, '/own/x', dpopHeaders('tok1', proof(key1, 'GET', 'https://other.example:8443/own/x', 'tok1')))).res.status, 200);
  const wrong = await send(gw, '/own/x', dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/own/x`, 'tok1')));
  refused(t, wrong.res, wrong.forwarded, 'invalid_dpop_proof');
});

t.test('forward_authorization keeps Authorization and DPoP', async (t) => {
  const p = proof(key1, 'GET', `${ORIGIN}/keep/x`, 'tok1');
  t.equal((await send(gw, '/keep/x', dpopHeaders('tok1', p))).res.status, 200);
  const h = upstream.seen.at(-1)?.headers ?? {};
  t.equal(h.authorization, 'DPoP tok1');
  t.equal(h.dpop, p);
});

t.test('sender_constrained_token: a certificate-bound token with its certificate, or a DPoP-bound token with its proof', async (t) => {
  t.equal((await send(gw, '/acc/x', { authorization: 'Bearer tokCert' }, { client: withA })).res.status, 200, 'mTLS-bound');
  const h = upstream.seen.at(-1)?.headers ?? {};
  t.equal(h['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  t.equal(h['x-certbound-dpop-jkt'], undefined);
  t.equal((await send(gw, '/acc/x', dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/acc/x`, 'tok1')))).res.status, 200, 'DPoP-bound, no certificate');

  const mismatch = await send(gw, '/acc/x', { authorization: 'Bearer tokCert' }, { client: withB });
  t.equal(mismatch.res.status, 401);
  t.same(challengeOf(mismatch.res), [
    'Bearer realm="certbound", error="invalid_token", error_description="client certificate does not match the certificate bound to the access token"',
    `DPoP realm="certbound", ${ALGS}`,
  ], 'both challenges; the error in the Bearer one');
  const badProof = await send(gw, '/acc/x', dpopHeaders('tok1', 'x.y.z'));
  t.same(challengeOf(badProof.res), [
    'Bearer realm="certbound"',
    `DPoP realm="certbound", error="invalid_dpop_proof", error_description="DPoP proof is not a compact JWS", ${ALGS}`,
  ], 'both challenges; the error in the DPoP one');
  const inactive = await send(gw, '/acc/x', dpopHeaders('nope', proof(key1, 'GET', `${ORIGIN}/acc/x`, 'nope')));
  t.match(challengeOf(inactive.res)[1], /^DPoP realm="certbound", error="invalid_token"/, 'a token problem under DPoP goes in the DPoP challenge');
  const none = await send(gw, '/acc/x', {});
  t.same(challengeOf(none.res), ['Bearer realm="certbound"', `DPoP realm="certbound", ${ALGS}`], 'no credentials: both challenges, no error');
  t.equal(none.res.json()['error'], 'unauthorized');
});

t.test('a token bound to both a key and a certificate needs both', async (t) => {
  const p = () => proof(key1, 'GET', `${ORIGIN}/acc/x`, 'tokBoth');
  t.equal((await send(gw, '/acc/x', dpopHeaders('tokBoth', p()), { client: withA })).res.status, 200);
  const h = upstream.seen.at(-1)?.headers ?? {};
  t.equal(h['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  t.equal(h['x-certbound-dpop-jkt'], key1.jkt);
  const other = await send(gw, '/acc/x', dpopHeaders('tokBoth', p()), { client: withB });
  t.equal(other.res.status, 401);
  t.equal(other.res.json()['error'], 'invalid_token');
  const none = await send(gw, '/acc/x', dpopHeaders('tokBoth', p()));
  t.equal(none.res.status, 401);
});

t.test('scopes are checked on DPoP routes: 403 with the scope in the DPoP challenge', async (t) => {
  const { res, forwarded } = await send(gw, '/pay/x', dpopHeaders('tokPayments', proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tokPayments')));
  t.equal(res.status, 403);
  t.equal(forwarded, false);
  t.equal(challengeOf(res)[0], `DPoP realm="certbound", error="insufficient_scope", error_description="access token lacks a required scope", scope="accounts", ${ALGS}`);
});

t.test('a DPoP route without credentials: the DPoP challenge, no error code', async (t) => {
  const { res } = await send(gw, '/pay/x', {});
  t.equal(res.status, 401);
  t.same(challengeOf(res), [`DPoP realm="certbound", ${ALGS}`]);
});

t.test('the token endpoint (auth: mtls) forwards the DPoP header untouched', async (t) => {
  const p = proof(key1, 'POST', `${ORIGIN}/token`, 'unused');
  const { res } = await send(gw, '/token', { dpop: p, authorization: 'Basic Y2xpZW50OnNlY3JldA==' }, { client: withA, method: 'POST' });
  t.equal(res.status, 200);
  const h = upstream.seen.at(-1)?.headers ?? {};
  t.equal(h.dpop, p);
  t.equal(h.authorization, 'Basic Y2xpZW50OnNlY3JldA==');
  t.equal(h['x-certbound-dpop-jkt'], undefined);
});

t.test('nonce: required, across two replicas sharing the secret', async (t) => {
  let offsetMs = 0;
  const clock = () => Date.now() + offsetMs;
  const nonceDoc = doc({ dpop: { nonce: 'required', nonce_lifetime_seconds: 300, nonce_secret: 'n'.repeat(40) } });
  const one = await startGateway(nonceDoc, { baseDir: dir, clock });
  const two = await startGateway(nonceDoc, { baseDir: dir, clock });
  t.teardown(async () => {
    await one.close();
    await two.close();
  });
  const at = () => ({ nowSeconds: Math.floor(clock() / 1000) });
  const first = await send(one, '/pay/x', dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1', at())));
  refused(t, first.res, first.forwarded, 'use_dpop_nonce');
  const nonce = first.res.headers['dpop-nonce'];
  t.type(nonce, 'string', 'a DPoP-Nonce header');
  t.match(challengeOf(first.res)[0], /error_description="a DPoP nonce is required"/);
  const withNonce = (n: unknown) => dpopHeaders('tok1', proof(key1, 'GET', `${ORIGIN}/pay/x`, 'tok1', { ...at(), payload: { nonce: n } }));
  const ok = await send(two, '/pay/x', withNonce(nonce));
  t.equal(ok.res.status, 200, "the other replica accepts the first one's nonce");
  t.equal(ok.res.headers['dpop-nonce'], undefined, 'a young nonce is not replaced');
  const forged = await send(one, '/pay/x', withNonce('123.AAAAAAAAAAAAAAAAAAAAAA'));
  refused(t, forged.res, forged.forwarded, 'use_dpop_nonce');
  t.match(challengeOf(forged.res)[0], /error_description="the DPoP nonce is invalid or expired"/);

  offsetMs = 200_000;
  const old = await send(one, '/pay/x', withNonce(nonce));
  t.equal(old.res.status, 200, 'still valid past half its life');
  const fresh = old.res.headers['dpop-nonce'];
  t.type(fresh, 'string', 'a fresh nonce rides on the successful response');
  t.not(fresh, nonce);
  offsetMs = 400_000;
  const expired = await send(one, '/pay/x', withNonce(nonce));
  refused(t, expired.res, expired.forwarded, 'use_dpop_nonce');
  t.equal((await send(two, '/pay/x', withNonce(fresh))).res.status, 200, 'the fresh one works on the other replica');
  const stranger = await startGateway(doc({ dpop: { nonce: 'required', nonce_secret: 'm'.repeat(40) } }), { baseDir: dir, clock });
  t.teardown(() => stranger.close());
  t.equal((await send(stranger, '/pay/x', withNonce(fresh))).res.status, 401, 'a replica with another secret refuses it');
});

t.test('an RSA key beyond 8192 bits is refused before any verification', async (t) => {
  const n = Buffer.concat([Buffer.from([0xc0]), Buffer.alloc(1100, 0x5a)]).toString('base64url');
  const p = signProof(rsaKey, { typ: 'dpop+jwt', alg: 'PS256', jwk: { kty: 'RSA', e: 'AQAB', n } }, { jti: 'big', htm: 'GET', htu: `${ORIGIN}/pay/x`, iat: Math.floor(Date.now() / 1000), ath: ath('tokRsa') });
  const { res, forwarded } = await send(gw, '/pay/x', dpopHeaders('tokRsa', p));
  refused(t, res, forwarded, 'invalid_dpop_proof');
  t.match(res.json()['error_description'], 'DPoP proof RSA key must have 2048 to 8192 bits');
});

t.test('signed by hand: alg in the header that the key does not fit', async (t) => {
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: rsaKey.jwk };
  const p = signProof(rsaKey, header, { jti: 'x', htm: 'GET', htu: `${ORIGIN}/pay/x`, iat: Math.floor(Date.now() / 1000), ath: ath('tokRsa') });
  const { res, forwarded } = await send(gw, '/pay/x', dpopHeaders('tokRsa', p));
  refused(t, res, forwarded, 'invalid_dpop_proof');
});
