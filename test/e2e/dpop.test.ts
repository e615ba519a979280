// DPoP (RFC 9449) end to end: a real authorization server (oidc-provider) issues DPoP-bound
// tokens through certbound's token route (auth: mtls), and certbound enforces them on its three
// kinds of token route, with introspection and with JWT access tokens. Every proof is made by
// panva's `dpop` package, an implementation independent of certbound's verifier.
//
//   TPP ─TLS→ certbound ─/token (mtls: certificate + DPoP header forwarded)→ oidc-provider
//   TPP ─TLS→ certbound ─/dpop (dpop_bound_token)          ┐
//                        /either (sender_constrained_token) ├→ upstream (records what it got)
//                        /mtls (certificate_bound_token)    ┘
import t, { type Test } from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, generateProof, type KeyPair } from 'dpop';
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import type { Agent } from 'undici';
import {
  BANK_API_RESOURCE,
  CERTBOUND_CLIENT_ID,
  CERTBOUND_CLIENT_SECRET,
  DPOP_CLIENT_IDS,
  dpopClients,
  startAuthorizationServer,
  tppClients,
} from '../fixtures/authorization-server.js';
import { writeDemoPki } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { call, tlsClient, type Reply } from '../helpers/client.js';
import { startUpstream } from '../helpers/servers.js';
import { forwardedThumbprint } from './fixtures/topology.js';

t.setTimeout(180_000);

/** The origin clients are told to call: every resource proof's htu is this plus the path, whatever address the test connects to. */
const PUBLIC_URL = 'https://api.bank.example';
const ALGS = 'algs="ES256 PS256 EdDSA"';
const DPOP_ONLY = '/dpop/accounts';
const EITHER = '/either/accounts';
const MTLS_ONLY = '/mtls/accounts';

const dir = mkdtempSync(join(tmpdir(), 'certbound-dpop-'));
const pki = await writeDemoPki(dir);
const as = await startAuthorizationServer({ clients: [...tppClients(pki), ...dpopClients(pki)], trustedCaPem: pki.ca.certPem });
const upstream = await startUpstream();
const agents = { a: tlsClient(pki.ca.certPem, pki.tppA), b: tlsClient(pki.ca.certPem, pki.tppB), none: tlsClient(pki.ca.certPem) };

type Validation = 'introspection' | 'jwt';

function gatewayDocument(validation: Validation, dpop: Record<string, unknown> = {}): Record<string, unknown> {
  const route = (name: string, auth: string) => ({ name, path_prefix: `/${name}`, methods: ['GET'], upstream: 'bank', auth, scopes: ['accounts'] });
  return {
    listen: { public_url: PUBLIC_URL, tls: { cert_file: pki.files['server.crt'], key_file: pki.files['server.key'], client_ca_file: pki.files['ca.crt'] } },
    token_validation: validation,
    authorization_server: validation === 'introspection'
      ? { issuer: as.issuer, introspection_endpoint: `${as.url}/token/introspection`, client_id: CERTBOUND_CLIENT_ID, client_secret: CERTBOUND_CLIENT_SECRET, require_token_type: true }
      : { issuer: as.issuer, jwks_uri: `${as.url}/jwks`, audience: BANK_API_RESOURCE },
    upstreams: { as: as.url, bank: upstream.url },
    routes: [
      { name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'as', auth: 'mtls', forward_authorization: true, forward_certificate_header: 'x-client-cert' },
      route('dpop', 'dpop_bound_token'),
      route('either', 'sender_constrained_token'),
      route('mtls', 'certificate_bound_token'),
    ],
    dpop,
  };
}

const started: TestGateway[] = [];
const gateway = async (validation: Validation, dpop?: Record<string, unknown>): Promise<TestGateway> => {
  const gw = await startGateway(gatewayDocument(validation, dpop));
  started.push(gw);
  return gw;
};
t.teardown(async () => {
  await Promise.allSettled(started.map((gw) => gw.close()));
  await Promise.allSettled([as.close(), upstream.close(), ...Object.values(agents).map((a) => a.close())]);
  rmSync(dir, { recursive: true, force: true });
});

const [keyA, keyB, keyOther] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256'), generateKeyPair('ES256')]);
/** RFC 7638, by jose: independent of both certbound and the `dpop` package. */
const jktOf = async (key: KeyPair): Promise<string> => calculateJwkThumbprint(await exportJWK(key.publicKey));
const [jktA, jktB] = await Promise.all([jktOf(keyA), jktOf(keyB)]);

const FORM = 'application/x-www-form-urlencoded';
const accessTokenOf = (reply: Reply): string => {
  const value = reply.json().access_token;
  if (typeof value !== 'string') throw new Error(`no access token: ${reply.status} ${reply.text}`);
  return value;
};

/** POST {gw}/token with a client_credentials form and, given a key, a DPoP proof for certbound's /token URL (the htu the AS expects behind certbound); `proof` sends that one instead. */
async function requestToken(gw: TestGateway, agent: Agent, form: Record<string, string>, key?: KeyPair, proof?: string): Promise<{ reply: Reply; proof: string | undefined }> {
  const dpop = proof ?? (key ? await generateProof(key, `${gw.url}/token`, 'POST') : undefined);
  const reply = await call(`${gw.url}/token`, {
    dispatcher: agent,
    method: 'POST',
    headers: { 'content-type': FORM, ...(dpop !== undefined ? { dpop } : {}) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'accounts payments', ...form }).toString(),
  });
  return { reply, proof: dpop };
}

const resourceFor = (validation: Validation): Record<string, string> => (validation === 'jwt' ? { resource: BANK_API_RESOURCE } : {});

/** A DPoP-bound token of `clientId` for `key`, obtained over `agent`'s certificate. */
async function dpopToken(gw: TestGateway, validation: Validation, agent: Agent, clientId: string, key: KeyPair): Promise<string> {
  const { reply } = await requestToken(gw, agent, { client_id: clientId, ...resourceFor(validation) }, key);
  if (reply.status !== 200) throw new Error(`DPoP token for ${clientId}: ${reply.status} ${reply.text}`);
  return accessTokenOf(reply);
}

/** An mTLS-bound token of TPP A (cnf.x5t#S256), obtained over its certificate. */
async function mtlsToken(gw: TestGateway, validation: Validation): Promise<string> {
  const { reply } = await requestToken(gw, agents.a, { client_id: 'tpp-a', scope: 'accounts', ...resourceFor(validation) });
  if (reply.status !== 200) throw new Error(`mTLS token: ${reply.status} ${reply.text}`);
  return accessTokenOf(reply);
}

/** A resource proof as a client makes it: htu from the public URL, the token's ath. */
const proofFor = (key: KeyPair, path: string, token: string, nonce?: string): Promise<string> => generateProof(key, `${PUBLIC_URL}${path}`, 'GET', nonce, token);

interface ApiRequest {
  readonly agent?: Agent;
  readonly scheme: 'DPoP' | 'Bearer';
  readonly token: string;
  readonly proof?: string;
  readonly interactionId?: string;
}

function api(gw: TestGateway, path: string, req: ApiRequest): Promise<Reply> {
  return call(`${gw.url}${path}`, {
    dispatcher: req.agent ?? agents.none,
    headers: {
      authorization: `${req.scheme} ${req.token}`,
      ...(req.proof !== undefined ? { dpop: req.proof } : {}),
      ...(req.interactionId !== undefined ? { 'x-fapi-interaction-id': req.interactionId } : {}),
    },
  });
}

const dpopChallenge = (error: string, description: string): string =>
  `DPoP realm="certbound", error="${error}", error_description="${description}", ${ALGS}`;
const bearerChallenge = (description: string): string => `Bearer realm="certbound", error="invalid_token", error_description="${description}"`;

const KEY_MISMATCH = 'DPoP proof key does not match the key bound to the access token';
const DOWNGRADE = 'DPoP-bound access token presented as a bearer token';

/** A refusal certbound answered itself: status, body, challenge(s), and nothing reached the upstream. */
async function refused(t: Test, send: () => Promise<Reply>, status: number, error: string, description: string, challenge: string | string[]): Promise<Reply> {
  const before = upstream.seen.length;
  const res = await send();
  t.equal(res.status, status, res.text);
  t.same(res.json(), { error, error_description: description });
  t.same(res.headers['www-authenticate'], challenge, 'WWW-Authenticate');
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(upstream.seen.length, before, 'the upstream saw nothing');
  return res;
}

/** The request the upstream received last, for a 200 just answered. */
const lastSeen = () => {
  const seen = upstream.seen.at(-1);
  if (seen === undefined) throw new Error('the upstream saw nothing');
  return seen;
};

const [gwIntrospection, gwJwt, gwNonce] = await Promise.all([
  gateway('introspection'),
  gateway('jwt'),
  gateway('introspection', { nonce: 'required', nonce_secret: randomBytes(32).toString('base64url') }),
]);

t.test('the token endpoint: certbound forwards the DPoP header untouched, oidc-provider binds the token to its key', async (t) => {
  const { reply, proof } = await requestToken(gwIntrospection, agents.a, { client_id: DPOP_CLIENT_IDS.a }, keyA);
  t.equal(reply.status, 200, reply.text);
  t.match(reply.json(), { token_type: 'DPoP', scope: 'accounts payments' });
  const received = as.requests.at(-1);
  t.equal(received?.path, '/token');
  t.equal(received?.headers.dpop, proof, 'the AS received the proof as the client sent it');
  t.equal(forwardedThumbprint(received?.headers['x-client-cert']), pki.tppA.thumbprint, 'and the TLS certificate, for tls_client_auth');
  const token = accessTokenOf(reply);
  const introspection = await introspect(token);
  t.match(introspection, { active: true, client_id: DPOP_CLIENT_IDS.a, token_type: 'DPoP' });
  t.same(introspection.cnf, { jkt: jktA }, 'bound to the proof key only, not to the certificate');

  // The AS checks the proof itself: its htu must be certbound's /token as the AS sees it
  // (X-Forwarded-Proto/Host), not the API's public URL.
  const elsewhere = await generateProof(keyA, `${PUBLIC_URL}/token`, 'POST');
  const wrongHtu = await requestToken(gwIntrospection, agents.a, { client_id: DPOP_CLIENT_IDS.a }, undefined, elsewhere);
  t.equal(wrongHtu.reply.status, 400, wrongHtu.reply.text);
  t.match(wrongHtu.reply.json(), { error: 'invalid_dpop_proof' });
  t.equal(as.requests.at(-1)?.headers.dpop, elsewhere);

  const withoutProof = await requestToken(gwIntrospection, agents.a, { client_id: DPOP_CLIENT_IDS.a });
  t.equal(withoutProof.reply.status, 400, withoutProof.reply.text);
  // dpop_bound_access_tokens: the client must send a proof (oidc-provider hides the reason).
  t.same(withoutProof.reply.json(), { error: 'invalid_grant', error_description: 'grant request is invalid' });
  t.equal(as.requests.at(-1)?.headers.dpop, undefined, 'certbound adds no DPoP header of its own');
});

async function introspect(token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${as.url}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${CERTBOUND_CLIENT_ID}:${CERTBOUND_CLIENT_SECRET}`).toString('base64')}`, 'content-type': FORM },
    body: new URLSearchParams({ token }),
  });
  if (res.status !== 200) throw new Error(`introspection: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

for (const [validation, gw] of [['introspection', gwIntrospection], ['jwt', gwJwt]] as const) {
  t.test(`token_validation: ${validation}`, async (t) => {
    const [tokenA, tokenB, tokenMtls] = await Promise.all([
      dpopToken(gw, validation, agents.a, DPOP_CLIENT_IDS.a, keyA),
      dpopToken(gw, validation, agents.b, DPOP_CLIENT_IDS.b, keyB),
      mtlsToken(gw, validation),
    ]);
    const secrets = [tokenA, tokenB, tokenMtls];
    const proofs: string[] = [];
    const proof = async (key: KeyPair, path: string, token: string): Promise<string> => {
      const value = await proofFor(key, path, token);
      proofs.push(value);
      return value;
    };

    t.test('the tokens are what the test thinks they are', async (t) => {
      if (validation === 'jwt') {
        t.match(decodeJwt(tokenA), { aud: BANK_API_RESOURCE, client_id: DPOP_CLIENT_IDS.a, cnf: { jkt: jktA } });
        t.same(decodeJwt(tokenA).cnf, { jkt: jktA });
        t.same(decodeJwt(tokenB).cnf, { jkt: jktB });
        t.same(decodeJwt(tokenMtls).cnf, { 'x5t#S256': pki.tppA.thumbprint });
      } else {
        t.match(await introspect(tokenA), { active: true, token_type: 'DPoP', cnf: { jkt: jktA } });
        t.match(await introspect(tokenB), { active: true, token_type: 'DPoP', cnf: { jkt: jktB } });
        t.match(await introspect(tokenMtls), { active: true, token_type: 'Bearer', cnf: { 'x5t#S256': pki.tppA.thumbprint } });
      }
    });

    const interactionId = randomUUID();
    t.test('dpop_bound_token route', async (t) => {
      const first = await proof(keyA, DPOP_ONLY, tokenA);
      const ok = await api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenA, proof: first, interactionId });
      t.equal(ok.status, 200, ok.text);
      t.same(ok.json(), { ok: true, path: DPOP_ONLY });
      const seen = lastSeen();
      t.equal(seen.url, DPOP_ONLY);
      t.equal(seen.headers['x-certbound-dpop-jkt'], jktA, "the upstream learns the proof key's thumbprint");
      t.equal(seen.headers['x-certbound-client-id'], DPOP_CLIENT_IDS.a);
      t.equal(seen.headers['x-certbound-scope'], 'accounts payments');
      t.equal(seen.headers.authorization, undefined, 'the token does not travel upstream');
      t.equal(seen.headers.dpop, undefined, 'nor does the proof');
      t.equal(seen.headers['x-certbound-certificate-thumbprint'], undefined, 'no certificate was presented');

      // Over TPP A's certificate too: the token is bound to no certificate, the proof decides.
      const overTls = await api(gw, DPOP_ONLY, { agent: agents.a, scheme: 'DPoP', token: tokenA, proof: await proof(keyA, DPOP_ONLY, tokenA) });
      t.equal(overTls.status, 200, overTls.text);
      t.equal(lastSeen().headers['x-certbound-dpop-jkt'], jktA);

      await refused(t, async () => api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenA, proof: await proof(keyOther, DPOP_ONLY, tokenA) }),
        401, 'invalid_token', KEY_MISMATCH, dpopChallenge('invalid_token', KEY_MISMATCH));

      const bearerOnly = 'this route accepts only DPoP-bound access tokens (Authorization: DPoP)';
      await refused(t, () => api(gw, DPOP_ONLY, { scheme: 'Bearer', token: tokenA }),
        401, 'invalid_token', bearerOnly, dpopChallenge('invalid_token', bearerOnly));

      await refused(t, () => api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenA, proof: first }),
        401, 'invalid_dpop_proof', 'DPoP proof has been used before', dpopChallenge('invalid_dpop_proof', 'DPoP proof has been used before'));

      // A proof made for another token (ath) and a token bound to a certificate, not a key.
      const athMismatch = 'DPoP proof ath does not match the access token';
      await refused(t, async () => api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenA, proof: await proof(keyA, DPOP_ONLY, tokenB) }),
        401, 'invalid_token', athMismatch, dpopChallenge('invalid_token', athMismatch));
      await refused(t, async () => api(gw, DPOP_ONLY, { agent: agents.a, scheme: 'DPoP', token: tokenMtls, proof: await proof(keyA, DPOP_ONLY, tokenMtls) }),
        401, 'invalid_token', 'access token is not DPoP-bound', dpopChallenge('invalid_token', 'access token is not DPoP-bound'));

      // A proof for another URL of the same origin: the htu names the path.
      await refused(t, async () => api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenA, proof: await proof(keyA, EITHER, tokenA) }),
        401, 'invalid_dpop_proof', 'DPoP proof htu does not match the request URI', dpopChallenge('invalid_dpop_proof', 'DPoP proof htu does not match the request URI'));
    });

    t.test('sender_constrained_token route: either binding, each with its own scheme', async (t) => {
      const byKey = await api(gw, EITHER, { scheme: 'DPoP', token: tokenA, proof: await proof(keyA, EITHER, tokenA) });
      t.equal(byKey.status, 200, byKey.text);
      t.equal(lastSeen().headers['x-certbound-dpop-jkt'], jktA);
      t.equal(lastSeen().headers['x-certbound-certificate-thumbprint'], undefined);
      t.equal(lastSeen().headers.dpop, undefined);

      const byCertificate = await api(gw, EITHER, { agent: agents.a, scheme: 'Bearer', token: tokenMtls });
      t.equal(byCertificate.status, 200, byCertificate.text);
      t.equal(lastSeen().headers['x-certbound-certificate-thumbprint'], pki.tppA.thumbprint);
      t.equal(lastSeen().headers['x-certbound-dpop-jkt'], undefined);
      t.equal(lastSeen().headers.authorization, undefined);

      // RFC 9449 §7.2: the DPoP token as a bearer token, over a certificate, is a downgrade. The
      // Bearer challenge (the scheme used) carries the error; the DPoP one is offered too.
      await refused(t, () => api(gw, EITHER, { agent: agents.a, scheme: 'Bearer', token: tokenA }),
        401, 'invalid_token', DOWNGRADE, [bearerChallenge(DOWNGRADE), `DPoP realm="certbound", ${ALGS}`]);

      await refused(t, async () => api(gw, EITHER, { scheme: 'DPoP', token: tokenA, proof: await proof(keyOther, EITHER, tokenA) }),
        401, 'invalid_token', KEY_MISMATCH, ['Bearer realm="certbound"', dpopChallenge('invalid_token', KEY_MISMATCH)]);
    });

    t.test('certificate_bound_token route: a DPoP token as a bearer token is refused (downgrade)', async (t) => {
      await refused(t, () => api(gw, MTLS_ONLY, { agent: agents.a, scheme: 'Bearer', token: tokenA }),
        401, 'invalid_token', DOWNGRADE, bearerChallenge(DOWNGRADE));
      const ok = await api(gw, MTLS_ONLY, { agent: agents.a, scheme: 'Bearer', token: tokenMtls });
      t.equal(ok.status, 200, ok.text);
      t.equal(lastSeen().headers['x-certbound-certificate-thumbprint'], pki.tppA.thumbprint);
    });

    t.test("client 1's key with client 2's token", async (t) => {
      await refused(t, async () => api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenB, proof: await proof(keyA, DPOP_ONLY, tokenB) }),
        401, 'invalid_token', KEY_MISMATCH, dpopChallenge('invalid_token', KEY_MISMATCH));
      await refused(t, async () => api(gw, EITHER, { agent: agents.a, scheme: 'DPoP', token: tokenB, proof: await proof(keyA, EITHER, tokenB) }),
        401, 'invalid_token', KEY_MISMATCH, ['Bearer realm="certbound"', dpopChallenge('invalid_token', KEY_MISMATCH)]);
      const own = await api(gw, DPOP_ONLY, { scheme: 'DPoP', token: tokenB, proof: await proof(keyB, DPOP_ONLY, tokenB) });
      t.equal(own.status, 200, own.text);
      t.equal(lastSeen().headers['x-certbound-dpop-jkt'], jktB);
      t.equal(lastSeen().headers['x-certbound-client-id'], DPOP_CLIENT_IDS.b);
    });

    t.test('the access log names the proof key, and holds no token or proof', async (t) => {
      const line = gw.logs.find((l) => l.msg === 'request' && l.interaction_id === interactionId);
      t.match(line, { route: 'dpop', status: 200, outcome: 'forwarded', client_id: DPOP_CLIENT_IDS.a, dpop_jkt: jktA });
      t.equal(line?.certificate_thumbprint, undefined);
      const logs = gw.rawLogs.join('\n');
      t.ok(proofs.length >= 10, `${proofs.length} proofs`);
      for (const secret of [...secrets, ...proofs]) t.notOk(logs.includes(secret), `not logged: ${secret.slice(0, 12)}…`);
    });
  });
}

// RFC 9449 §7.1: a proof by another key makes the request invalid_token, whatever the token's
// scopes: the binding is checked before the scopes (src/authorize.ts keyBound), as on the
// certificate path, so a thief learns nothing about which scope a stolen token lacks.
t.test('another key with a token lacking the route scope: still 401 invalid_token', async (t) => {
  const { reply } = await requestToken(gwIntrospection, agents.a, { client_id: DPOP_CLIENT_IDS.a, scope: 'payments' }, keyA);
  const token = accessTokenOf(reply);
  await refused(t, async () => api(gwIntrospection, DPOP_ONLY, { scheme: 'DPoP', token, proof: await proofFor(keyOther, DPOP_ONLY, token) }),
    401, 'invalid_token', KEY_MISMATCH, dpopChallenge('invalid_token', KEY_MISMATCH));
});

t.test('dpop.nonce: required: use_dpop_nonce with a DPoP-Nonce, then the retry with it passes', async (t) => {
  const token = await dpopToken(gwNonce, 'introspection', agents.a, DPOP_CLIENT_IDS.a, keyA);
  const required = 'a DPoP nonce is required';
  const first = await refused(t, async () => api(gwNonce, DPOP_ONLY, { scheme: 'DPoP', token, proof: await proofFor(keyA, DPOP_ONLY, token) }),
    401, 'use_dpop_nonce', required, dpopChallenge('use_dpop_nonce', required));
  const nonce = first.headers['dpop-nonce'];
  if (typeof nonce !== 'string' || nonce === '') throw new Error(`no DPoP-Nonce header: ${JSON.stringify(first.headers)}`);
  t.pass('a DPoP-Nonce header came with the refusal');

  const invalid = 'the DPoP nonce is invalid or expired';
  const madeUp = await refused(t, async () => api(gwNonce, DPOP_ONLY, { scheme: 'DPoP', token, proof: await proofFor(keyA, DPOP_ONLY, token, `${nonce}x`) }),
    401, 'use_dpop_nonce', invalid, dpopChallenge('use_dpop_nonce', invalid));
  t.type(madeUp.headers['dpop-nonce'], 'string', 'a nonce to use instead');

  const retry = await api(gwNonce, DPOP_ONLY, { scheme: 'DPoP', token, proof: await proofFor(keyA, DPOP_ONLY, token, nonce) });
  t.equal(retry.status, 200, retry.text);
  t.equal(lastSeen().headers['x-certbound-dpop-jkt'], jktA);
  t.equal(lastSeen().headers.dpop, undefined);
});
