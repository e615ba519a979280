// Every grant handler of the seed system, end to end through one certbound configured by the
// repository's gateway.yaml: tokens are requested at certbound's /token route (auth: mtls) and
// used at its API routes (auth: certificate_bound_token), against a real oidc-provider.
import t from 'tap';
import { authorizationCodeFlow } from '../fixtures/authorization-server.js';
import { ACCOUNTS, forwardedThumbprint, JWT_BEARER, PAYMENT_CONSENTS, startTopology } from './fixtures/topology.js';

const top = await startTopology();
t.teardown(() => top.close());
const { clients, pki, backends } = top;
const { as, bank } = backends;

const MISMATCH = 'Bearer realm="certbound", error="invalid_token", error_description="client certificate does not match the certificate bound to the access token"';
const NO_CERTIFICATE = 'Bearer realm="certbound", error="invalid_token", error_description="client certificate required"';
const tokenRequests = () => as.requests.filter((r) => r.path.startsWith('/token'));
const accessTokenOf = (reply: { json(): Record<string, unknown> }): string => {
  const value = reply.json().access_token;
  if (typeof value !== 'string') throw new Error(`no access token: ${JSON.stringify(reply.json())}`);
  return value;
};

t.test('client_credentials + tls_client_auth: the token is bound to certificate A', async (t) => {
  const res = await top.token(clients.a, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts payments' });
  t.equal(res.status, 200, res.text);
  t.match(res.json(), { token_type: 'Bearer', scope: 'accounts payments' });
  t.equal(res.headers['cache-control'], 'no-store', 'the AS answer reaches the client unchanged');
  const token = accessTokenOf(res);
  t.equal(forwardedThumbprint(tokenRequests().at(-1)?.headers['x-client-cert']), pki.tppA.thumbprint, 'certbound forwarded the TLS certificate');
  t.same((await top.introspect(token)).cnf, { 'x5t#S256': pki.tppA.thumbprint });

  const before = bank.requests.length;
  const ok = await top.api(clients.a, ACCOUNTS, { token });
  t.equal(ok.status, 200, ok.text);
  t.match(ok.json(), { Data: { Account: [{ AccountId: '22289' }, { AccountId: '31820' }] } });
  const seen = bank.requests.at(-1);
  t.match(seen?.headers, { 'x-certbound-client-id': 'tpp-a', 'x-certbound-scope': 'accounts payments', 'x-certbound-certificate-thumbprint': pki.tppA.thumbprint });
  t.equal(seen?.headers.authorization, undefined, 'the token does not travel to the bank API');

  const withB = await top.api(clients.b, ACCOUNTS, { token });
  t.equal(withB.status, 401);
  t.equal(withB.headers['www-authenticate'], MISMATCH);
  t.same(withB.json(), { error: 'invalid_token', error_description: 'client certificate does not match the certificate bound to the access token' });

  const withoutCertificate = await top.api(clients.none, ACCOUNTS, { token });
  t.equal(withoutCertificate.status, 401);
  t.equal(withoutCertificate.headers['www-authenticate'], NO_CERTIFICATE);
  t.same(withoutCertificate.json(), { error: 'invalid_token', error_description: 'client certificate required' });

  // Same subject DN as TPP A, no CA behind it: the handshake succeeds, the certificate counts as none.
  const selfSigned = await top.api(clients.selfSigned, ACCOUNTS, { token });
  t.equal(selfSigned.status, 401);
  t.match(selfSigned.headers['www-authenticate'], /^Bearer realm="certbound", error="invalid_token", error_description="client certificate required: client certificate not verified \(/);

  const noToken = await top.api(clients.a, ACCOUNTS);
  t.equal(noToken.status, 401);
  t.equal(noToken.headers['www-authenticate'], 'Bearer realm="certbound"', 'RFC 6750 §3.1: no error code without credentials');

  const payment = await top.api(clients.a, PAYMENT_CONSENTS, { token, method: 'POST', body: JSON.stringify({ Data: { Initiation: { InstructedAmount: { Amount: '10.00', Currency: 'GBP' } } }, Risk: {} }) });
  t.equal(payment.status, 201, payment.text);
  t.match(payment.json(), { Data: { Status: 'AwaitingAuthorisation', ConsentId: /^sdp-/ } });
  t.equal(bank.requests.length, before + 2, 'only the two accepted requests reached the bank API');
});

t.test('a token without the route scope: 403 insufficient_scope', async (t) => {
  const token = accessTokenOf(await top.token(clients.a, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' }));
  const before = bank.requests.length;
  const res = await top.api(clients.a, PAYMENT_CONSENTS, { token, method: 'POST', body: '{}' });
  t.equal(res.status, 403);
  t.equal(res.headers['www-authenticate'], 'Bearer realm="certbound", error="insufficient_scope", error_description="access token lacks a required scope", scope="payments"');
  t.same(res.json(), { error: 'insufficient_scope', error_description: 'access token lacks a required scope' });
  t.equal(bank.requests.length, before);
});

t.test('authorization_code + PKCE: bound access token; refresh keeps the binding', async (t) => {
  const flow = await authorizationCodeFlow({ authorizationEndpoint: `${as.url}/auth`, clientId: 'tpp-a', scope: 'openid accounts offline_access', accountId: 'alice' });
  const redeem = { grant_type: 'authorization_code', client_id: 'tpp-a', code: flow.code, redirect_uri: flow.redirectUri, code_verifier: flow.codeVerifier };
  const res = await top.token(clients.a, redeem);
  t.equal(res.status, 200, res.text);
  const body = res.json();
  t.type(body.refresh_token, 'string');
  t.type(body.id_token, 'string');
  const token = accessTokenOf(res);
  t.match(await top.introspect(token), { active: true, sub: 'alice', client_id: 'tpp-a', cnf: { 'x5t#S256': pki.tppA.thumbprint } });

  t.equal((await top.api(clients.a, ACCOUNTS, { token })).status, 200);
  t.match(bank.requests.at(-1)?.headers, { 'x-certbound-subject': 'alice', 'x-certbound-client-id': 'tpp-a' });
  t.equal((await top.api(clients.b, ACCOUNTS, { token })).headers['www-authenticate'], MISMATCH);

  const refreshToken = String(body.refresh_token);
  const refreshed = await top.token(clients.a, { grant_type: 'refresh_token', client_id: 'tpp-a', refresh_token: refreshToken });
  t.equal(refreshed.status, 200, refreshed.text);
  const next = accessTokenOf(refreshed);
  t.not(next, token, 'a new access token');
  t.same((await top.introspect(next)).cnf, { 'x5t#S256': pki.tppA.thumbprint });
  t.equal((await top.api(clients.a, ACCOUNTS, { token: next })).status, 200);
  t.equal((await top.api(clients.b, ACCOUNTS, { token: next })).status, 401);

  // TPP B's certificate with TPP A's refresh token: tls_client_auth fails before the grant is looked at.
  const stolen = await top.token(clients.b, { grant_type: 'refresh_token', client_id: 'tpp-a', refresh_token: String(refreshed.json().refresh_token ?? refreshToken) });
  t.equal(stolen.status, 401);
  t.equal(stolen.json().error, 'invalid_client');
  t.equal(stolen.json().access_token, undefined, 'no token comes out');
  t.equal(stolen.json().refresh_token, undefined);

  // The refresh token is not an access token: certbound refuses it as a bearer token.
  const asBearer = await top.api(clients.a, ACCOUNTS, { token: refreshToken });
  t.equal(asBearer.status, 401);
  t.equal(asBearer.json().error, 'invalid_token');
});

t.test('authorization_code replayed: the server revokes what the code gave, and certbound refuses it', async (t) => {
  const flow = await authorizationCodeFlow({ authorizationEndpoint: `${as.url}/auth`, clientId: 'tpp-b', scope: 'openid accounts offline_access' });
  const redeem = { grant_type: 'authorization_code', client_id: 'tpp-b', code: flow.code, redirect_uri: flow.redirectUri, code_verifier: flow.codeVerifier };
  const first = await top.token(clients.b, redeem);
  t.equal(first.status, 200, first.text);
  const replay = await top.token(clients.b, redeem);
  t.equal(replay.status, 400);
  t.same(replay.json(), { error: 'invalid_grant', error_description: 'grant request is invalid' });
  // RFC 6749 §4.1.2: oidc-provider revokes the grant, so the first answer's tokens die too. This
  // token was never used at certbound, so no cached result keeps it alive.
  const res = await top.api(clients.b, ACCOUNTS, { token: accessTokenOf(first) });
  t.equal(res.status, 401);
  t.equal(res.headers['www-authenticate'], 'Bearer realm="certbound", error="invalid_token", error_description="the access token is not active"');
  const refresh = await top.token(clients.b, { grant_type: 'refresh_token', client_id: 'tpp-b', refresh_token: String(first.json().refresh_token) });
  t.equal(refresh.status, 400);
  t.equal(refresh.json().error, 'invalid_grant');
});

t.test('authorization_code for a private_key_jwt client: a refresh over another certificate never yields a token bound to the old one', async (t) => {
  const flow = await authorizationCodeFlow({ authorizationEndpoint: `${as.url}/auth`, clientId: 'tpp-c', scope: 'openid accounts offline_access' });
  const res = await top.token(clients.c, {
    grant_type: 'authorization_code', code: flow.code, redirect_uri: flow.redirectUri, code_verifier: flow.codeVerifier,
    client_assertion_type: JWT_BEARER, client_assertion: await top.clientAssertion(pki.tppC, 'tpp-c'),
  });
  t.equal(res.status, 200, res.text);
  const token = accessTokenOf(res);
  t.same((await top.introspect(token)).cnf, { 'x5t#S256': pki.tppC.thumbprint });
  t.equal((await top.api(clients.c, ACCOUNTS, { token })).status, 200);

  // oidc-provider binds refresh tokens of public clients only (RFC 8705 §4: a confidential
  // client's refresh token is bound to its authentication). The new access token is bound to
  // the certificate of *this* connection, so the old certificate's holder gains nothing.
  const refreshed = await top.token(clients.a, {
    grant_type: 'refresh_token', refresh_token: String(res.json().refresh_token),
    client_assertion_type: JWT_BEARER, client_assertion: await top.clientAssertion(pki.tppC, 'tpp-c'),
  });
  t.equal(refreshed.status, 200, refreshed.text);
  const next = accessTokenOf(refreshed);
  t.same((await top.introspect(next)).cnf, { 'x5t#S256': pki.tppA.thumbprint }, 'bound to the new certificate');
  t.equal((await top.api(clients.c, ACCOUNTS, { token: next })).headers['www-authenticate'], MISMATCH, 'not usable with the old certificate');
  t.equal((await top.api(clients.a, ACCOUNTS, { token: next })).status, 200);
});

t.test('private_key_jwt at the token endpoint, over mTLS: bound to the TLS certificate', async (t) => {
  const form = { grant_type: 'client_credentials', scope: 'accounts', client_assertion_type: JWT_BEARER };
  const res = await top.token(clients.c, { ...form, client_assertion: await top.clientAssertion(pki.tppC, 'tpp-c') });
  t.equal(res.status, 200, res.text);
  const token = accessTokenOf(res);
  t.match(await top.introspect(token), { client_id: 'tpp-c', cnf: { 'x5t#S256': pki.tppC.thumbprint } });
  t.equal((await top.api(clients.c, ACCOUNTS, { token })).status, 200);
  t.equal((await top.api(clients.a, ACCOUNTS, { token })).status, 401);

  // The key proves the client; the connection decides the binding.
  const overA = await top.token(clients.a, { ...form, client_assertion: await top.clientAssertion(pki.tppC, 'tpp-c') });
  t.equal(overA.status, 200, overA.text);
  t.match(await top.introspect(accessTokenOf(overA)), { client_id: 'tpp-c', cnf: { 'x5t#S256': pki.tppA.thumbprint } });
});

t.test('a token request without a client certificate is stopped by certbound', async (t) => {
  const seen = as.requests.length;
  const res = await top.token(clients.none, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' });
  t.equal(res.status, 400);
  t.same(res.json(), { error: 'invalid_request', error_description: 'transport certificate not found in the request' });
  t.equal(res.headers['www-authenticate'], undefined, 'RFC 6749 §5.2, not a Bearer challenge');
  t.equal(res.headers['cache-control'], 'no-store');

  const untrusted = await top.token(clients.selfSigned, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' });
  t.equal(untrusted.status, 400);
  t.equal(untrusted.json().error, 'invalid_request');
  t.match(untrusted.json().error_description, /^transport certificate not found in the request: client certificate not verified/);

  const revocation = await top.token(clients.none, { token: 'anything', client_id: 'tpp-a' }, { path: '/token/revocation' });
  t.equal(revocation.status, 400);
  t.equal(revocation.json().error, 'invalid_request');
  t.equal(as.requests.length, seen, 'the authorization server saw nothing');
});

t.test('a client-supplied x-client-cert is stripped: no token bound to someone else', async (t) => {
  // TPP B presents its own certificate but sends TPP A's in the forwarding header, twice, in mixed case.
  const spoof = { 'X-Client-Cert': [encodeURIComponent(pki.tppA.certPem), encodeURIComponent(pki.tppA.certPem)] };
  const asA = await top.token(clients.b, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' }, { headers: spoof });
  t.equal(asA.status, 401, asA.text);
  t.equal(asA.json().error, 'invalid_client', 'TPP B cannot authenticate as TPP A');
  t.equal(asA.json().access_token, undefined);
  t.equal(forwardedThumbprint(tokenRequests().at(-1)?.headers['x-client-cert']), pki.tppB.thumbprint, 'the AS received B, only B');

  const asB = await top.token(clients.b, { grant_type: 'client_credentials', client_id: 'tpp-b', scope: 'accounts' }, { headers: spoof });
  t.equal(asB.status, 200, asB.text);
  const token = accessTokenOf(asB);
  t.same((await top.introspect(token)).cnf, { 'x5t#S256': pki.tppB.thumbprint }, 'bound to B, not to the header');
  t.equal((await top.api(clients.a, ACCOUNTS, { token })).status, 401);

  const seen = as.requests.length;
  const anonymous = await top.token(clients.none, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' }, { headers: spoof });
  t.equal(anonymous.status, 400, 'the header does not stand in for a TLS certificate');
  t.equal(as.requests.length, seen);

  // On API routes the header is dropped too, as is the load-balancer header of client_certificate.
  const api = await top.api(clients.b, ACCOUNTS, { token, headers: { 'x-client-cert': encodeURIComponent(pki.tppA.certPem), 'x-wso2-client-certificate': encodeURIComponent(pki.tppA.certPem) } });
  t.equal(api.status, 200);
  t.equal(bank.requests.at(-1)?.headers['x-client-cert'], undefined);
  t.equal(bank.requests.at(-1)?.headers['x-wso2-client-certificate'], undefined);
});

t.test('discovery through certbound names certbound as the token endpoint', async (t) => {
  const res = await top.api(clients.none, '/.well-known/openid-configuration');
  t.equal(res.status, 200);
  const meta = res.json();
  t.equal(meta.token_endpoint, `${top.gw.url}/token`, 'built from X-Forwarded-Proto/Host');
  t.equal(meta.issuer, as.issuer);
  t.equal(meta.tls_client_certificate_bound_access_tokens, true);
});

t.test('the gateway logs no token, code, assertion or secret', async (t) => {
  const logs = top.gw.rawLogs.join('\n');
  t.ok(top.gw.logs.some((l) => l.msg === 'request' && l.route === 'token'), 'requests were logged');
  t.ok(top.secrets.size > 15, `${top.secrets.size} values checked`);
  for (const secret of top.secrets) t.notOk(logs.includes(secret), `not logged: ${secret.slice(0, 6)}…`);
  for (const [name, issued] of [['A', pki.tppA], ['B', pki.tppB], ['C', pki.tppC]] as const) {
    const line = issued.certPem.split('\n')[3] ?? '';
    t.ok(line.length > 40 && !logs.includes(line) && !logs.includes(encodeURIComponent(line)), `no part of TPP ${name}'s certificate`);
  }
});
