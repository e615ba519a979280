import t, { type Test } from 'tap';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { createCa } from '../fixtures/pki.js';
import { GatewayError } from '../../src/errors.js';
import { createTokenValidator } from '../../src/token/index.js';
import { config, fakeServer, json, metrics, valueOf, type FakeServer, ISSUER, CLIENT_ID } from './fixtures/fake-as.js';

const now = Math.floor(Date.now() / 1000);
const ACTIVE = { active: true, scope: 'accounts payments', client_id: 'tpp-a', sub: 'alice', exp: now + 300, iss: ISSUER, cnf: { 'x5t#S256': 'abc' } };

async function introspectionServer(t: Tap, answer: (body: URLSearchParams) => unknown, status = 200): Promise<FakeServer> {
  const server = await fakeServer((req, res) => json(res, answer(new URLSearchParams(req.body)) as object, status));
  t.teardown(server.close);
  return server;
}
type Tap = Test;

function validatorFor(t: Tap, server: FakeServer, overrides: Parameters<typeof config>[0] = {}, deps: Parameters<typeof createTokenValidator>[1] = {}) {
  const v = createTokenValidator(config({ introspectionEndpoint: `${server.url}/introspect`, cache: { maxEntries: 0, maxTtlSeconds: 60, negativeTtlSeconds: 0 }, ...overrides }, 'introspection'), deps);
  t.teardown(() => v.close());
  return v;
}

async function rejects(t: Tap, p: Promise<unknown>, code: string, extra: Record<string, unknown> = {}) {
  const err = await p.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof GatewayError, `rejects with a GatewayError (${code})`);
  if (err instanceof GatewayError) {
    t.equal(err.code, code);
    t.notMatch(err.message, /tok-secret/, 'the token is never in the message');
    for (const [k, v] of Object.entries(extra)) t.same((err.details as Record<string, unknown>)[k], v);
  }
  return err;
}

t.test('active token: request shape and claims', async (t) => {
  const server = await introspectionServer(t, () => ACTIVE);
  const m = metrics();
  const v = validatorFor(t, server, {}, { metrics: m });
  t.equal(v.ready(), true, 'no JWKS needed');
  const claims = await v.validate('tok-secret');
  t.same([...claims.scopes], ['accounts', 'payments']);
  t.equal(claims.clientId, 'tpp-a');
  t.equal(claims.subject, 'alice');
  t.equal(claims.x5tS256, 'abc');
  t.equal(claims.exp, now + 300);
  t.equal(claims.iss, ISSUER);
  const [req] = server.seen;
  t.equal(req?.method, 'POST');
  t.equal(req?.headers['content-type'], 'application/x-www-form-urlencoded');
  t.equal(req?.headers['accept'], 'application/json');
  const form = new URLSearchParams(req?.body);
  t.equal(form.get('token'), 'tok-secret');
  t.equal(form.get('token_type_hint'), 'access_token');
  t.equal(req?.headers.authorization, `Basic ${Buffer.from('certbound:secret').toString('base64')}`);
  t.equal(await valueOf(m, 'introspections', { result: 'active' }), 1);
});

t.test('answers are mapped to codes', async (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['inactive', { active: false }, 'inactive'],
    ['expired', { ...ACTIVE, exp: now - 31 }, 'expired'],
    ['nbf in the future', { ...ACTIVE, nbf: now + 120 }, 'not_yet_valid'],
    ['iat in the future', { ...ACTIVE, iat: now + 120 }, 'not_yet_valid'],
    ['other issuer', { ...ACTIVE, iss: 'https://evil.example' }, 'invalid_token'],
    ['refresh token type', { ...ACTIVE, token_type: 'refresh_token' }, 'invalid_token'],
    ['other audience', { ...ACTIVE, aud: ['https://other.example'] }, 'invalid_token'],
    ['other audience (string)', { ...ACTIVE, aud: 'https://other.example' }, 'invalid_token'],
    ['no active', {}, 'as_unavailable'],
    ['active not boolean', { active: 'true' }, 'as_unavailable'],
    ['array body', [1], 'as_unavailable'],
    ['malformed exp', { ...ACTIVE, exp: 'tomorrow' }, 'as_unavailable'],
    ['malformed cnf', { ...ACTIVE, cnf: 'x' }, 'as_unavailable'],
    ['malformed thumbprint', { ...ACTIVE, cnf: { 'x5t#S256': 1 } }, 'as_unavailable'],
    ['malformed scope', { ...ACTIVE, scope: ['a'] }, 'as_unavailable'],
  ];
  let answer: unknown;
  const server = await introspectionServer(t, () => answer);
  const v = validatorFor(t, server, { audience: 'https://api.bank.example' });
  for (const [name, body, code] of cases) {
    answer = body;
    t.comment(name);
    await rejects(t, v.validate('tok-secret'), code);
  }
  answer = { ...ACTIVE, nbf: now + 10, token_type: 'Bearer', aud: 'https://api.bank.example' };
  t.ok(await v.validate('tok-secret'), 'within the skew, bearer, our audience');
  answer = { active: true };
  const minimal = await v.validate('tok-secret');
  t.same([...minimal.scopes], [], 'a token with no scope has none');
  t.equal(minimal.exp, undefined);

  const strict = validatorFor(t, server, { requireTokenType: true, cache: { maxEntries: 0, maxTtlSeconds: 60, negativeTtlSeconds: 0 } });
  answer = { ...ACTIVE };
  await rejects(t, strict.validate('tok-refresh'), 'invalid_token');
  answer = { ...ACTIVE, token_type: 'bearer' };
  t.ok(await strict.validate('tok-access'), 'require_token_type: Bearer in any case passes');
});

t.test('AS failures are as_unavailable with retryAfter', async (t) => {
  const m = metrics();
  const warnings: Array<Record<string, unknown>> = [];
  const logger = { warn: (d: Record<string, unknown>) => void warnings.push(d) };
  let mode = '500';
  const server = await fakeServer((_req, res) => {
    switch (mode) {
      case '500': return json(res, { error: 'boom' }, 500);
      case '401': return json(res, { error: 'invalid_client' }, 401);
      case 'garbage': return json(res, '{"active": tru', 200);
      case 'oversize': {
        const body = JSON.stringify({ active: true, pad: 'x'.repeat(70 * 1024) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        return res.end(body);
      }
      case 'oversize-chunked': {
        res.writeHead(200, { 'content-type': 'application/json' });
        for (let i = 0; i < 70; i++) res.write(' '.repeat(1024));
        return res.end('{"active":true}');
      }
      default: return undefined; // hung: accept, never answer
    }
  });
  t.teardown(server.close);
  const TIMEOUT_MS = 300;
  const v = validatorFor(t, server, { retryAfterSeconds: 7, timeoutMs: TIMEOUT_MS }, { metrics: m, logger });
  for (const m of ['500', '401', 'garbage', 'oversize', 'oversize-chunked']) {
    mode = m;
    t.comment(m);
    await rejects(t, v.validate('tok-secret'), 'as_unavailable', { retryAfter: 7 });
  }
  t.equal(await valueOf(m, 'introspections', { result: 'error' }), 5);
  t.ok(warnings.some((w) => String(w['reason']).includes('401')), 'a 401 from the AS is logged');
  t.notOk(JSON.stringify(warnings).includes('tok-secret'), 'the token is never logged');

  mode = 'hung';
  const started = performance.now();
  await rejects(t, v.validate('tok-secret'), 'as_unavailable', { retryAfter: 7 });
  const elapsed = performance.now() - started;
  t.equal(await valueOf(m, 'introspections', { result: 'timeout' }), 1, 'counted as a timeout, not as an error');
  t.equal(await valueOf(m, 'introspections', { result: 'error' }), 5);
  // Not before timeoutMs (less the 1 ms step of Node's timer clock); the bug it guards against, no
  // timeout at all, would hang until the file's timeout, so the upper bound only has to be finite.
  t.ok(elapsed >= TIMEOUT_MS - 1 && elapsed < 10_000, `a hung AS fails after timeoutMs (${TIMEOUT_MS} ms): ${Math.round(elapsed)} ms`);
});

t.test('slow AS: headers arrive, the body never completes', async (t) => {
  const server = await fakeServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"active":');
  });
  t.teardown(server.close);
  const m = metrics();
  const v = validatorFor(t, server, { timeoutMs: 200 }, { metrics: m });
  const started = performance.now();
  await rejects(t, v.validate('tok-secret'), 'as_unavailable');
  const elapsed = performance.now() - started;
  t.equal(await valueOf(m, 'introspections', { result: 'timeout' }), 1, 'the timeout covers the body too');
  t.equal(await valueOf(m, 'introspections', { result: 'error' }), 0);
  t.ok(elapsed >= 200 - 1 && elapsed < 10_000, `failed after timeoutMs (200 ms), not when the body would have ended (never): ${Math.round(elapsed)} ms`);
});

t.test('connection refused', async (t) => {
  const server = await fakeServer(() => undefined);
  await server.close();
  const v = validatorFor(t, server);
  await rejects(t, v.validate('tok-secret'), 'as_unavailable');
});

t.test('overload: beyond maxConcurrentRequests, fail fast', async (t) => {
  const m = metrics();
  const server = await fakeServer((_req, res) => void setTimeout(() => json(res, ACTIVE), 100));
  t.teardown(server.close);
  const v = validatorFor(t, server, { maxConcurrentRequests: 1 }, { metrics: m });
  const results = await Promise.allSettled([v.validate('tok-secret-1'), v.validate('tok-secret-2')]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const failed = results.find((r) => r.status === 'rejected');
  t.equal((failed?.reason as GatewayError).code, 'as_unavailable');
  t.equal(server.seen.length, 1, 'the second call never reached the AS');
  t.equal(await valueOf(m, 'introspections', { result: 'overloaded' }), 1);
  t.ok(await v.validate('tok-secret-3'), 'the slot is free again');
});

t.test('client_secret_basic form-encodes id and secret (RFC 6749 §2.3.1)', async (t) => {
  const server = await introspectionServer(t, () => ACTIVE);
  const v = validatorFor(t, server, { clientId: 'cert bound:1', clientSecret: 'p@ss w:rd+/%é~' });
  await v.validate('tok-secret');
  const header = server.seen[0]?.headers.authorization ?? '';
  const decoded = Buffer.from(header.replace(/^Basic /, ''), 'base64').toString();
  t.equal(decoded, 'cert+bound%3A1:p%40ss+w%3Ard%2B%2F%25%C3%A9%7E');
  const [id = '', secret = ''] = decoded.split(':');
  const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
  t.equal(formDecode(id), 'cert bound:1');
  t.equal(formDecode(secret), 'p@ss w:rd+/%é~');
});

t.test('client_secret_post', async (t) => {
  const server = await introspectionServer(t, () => ACTIVE);
  const v = validatorFor(t, server, { clientAuthMethod: 'client_secret_post' });
  await v.validate('tok-secret');
  const form = new URLSearchParams(server.seen[0]?.body);
  t.equal(form.get('client_id'), CLIENT_ID);
  t.equal(form.get('client_secret'), 'secret');
  t.equal(server.seen[0]?.headers.authorization, undefined);
});

t.test('private_key_jwt: a fresh, short-lived assertion per call', async (t) => {
  const keys = [
    { type: 'rsa', opts: { modulusLength: 2048 }, alg: 'PS256' },
    { type: 'ec', opts: { namedCurve: 'P-256' }, alg: 'ES256' },
    { type: 'ed25519', opts: {}, alg: 'EdDSA' },
  ] as const;
  for (const k of keys) {
    const { privateKey } = generateKeyPairSync(k.type as 'ec', k.opts as { namedCurve: string });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const server = await introspectionServer(t, () => ACTIVE);
    const v = validatorFor(t, server, {
      clientAuthMethod: 'private_key_jwt',
      privateKey: { path: 'key.pem', contents: Buffer.from(pem) },
      assertionAudience: 'https://as.example/token',
    });
    await v.validate('tok-secret');
    await v.validate('tok-secret');
    const forms = server.seen.map((r) => new URLSearchParams(r.body));
    const [first, second] = forms;
    t.equal(first?.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    t.equal(first?.get('client_id'), CLIENT_ID);
    const assertion = first?.get('client_assertion') ?? '';
    t.equal(decodeProtectedHeader(assertion).alg, k.alg, `${k.type} → ${k.alg}`);
    const { payload } = await jwtVerify(assertion, createPublicKey(privateKey), { issuer: CLIENT_ID, subject: CLIENT_ID, audience: 'https://as.example/token' });
    t.ok(payload.jti);
    t.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= 60, 'exp ≤ 60 s after iat');
    t.not(payload.jti, (await jwtVerify(second?.get('client_assertion') ?? '', createPublicKey(privateKey))).payload.jti, 'unique jti');
  }
});

t.test('private_key_jwt: configured algorithm and unsupported keys', async (t) => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const server = await introspectionServer(t, () => ACTIVE);
  const v = validatorFor(t, server, { clientAuthMethod: 'private_key_jwt', privateKey: { path: 'k', contents: Buffer.from(pem) }, signingAlgorithm: 'RS256' });
  await v.validate('tok-secret');
  t.equal(decodeProtectedHeader(new URLSearchParams(server.seen[0]?.body).get('client_assertion') ?? '').alg, 'RS256');

  for (const [type, opts] of [['ec', { namedCurve: 'secp256k1' }], ['x25519', {}], ['ec', { namedCurve: 'P-384' }], ['ec', { namedCurve: 'P-521' }]] as const) {
    const key = generateKeyPairSync(type as 'ec', opts as { namedCurve: string }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const build = () => createTokenValidator(config({ introspectionEndpoint: server.url, clientAuthMethod: 'private_key_jwt', privateKey: { path: 'k', contents: Buffer.from(key) } }, 'introspection'), {});
    if (type === 'ec' && (opts as { namedCurve: string }).namedCurve !== 'secp256k1') {
      const v2 = build();
      await v2.close();
      t.pass(`${(opts as { namedCurve: string }).namedCurve} is supported`);
    } else {
      t.throws(build, /unsupported/, `${type} ${JSON.stringify(opts)} is refused at creation`);
    }
  }
});

t.test('missing credentials are configuration errors', async (t) => {
  const base = { introspectionEndpoint: 'http://127.0.0.1:1/introspect' };
  t.throws(() => createTokenValidator(config({ ...base, clientSecret: undefined }, 'introspection')), /client_secret/);
  t.throws(() => createTokenValidator(config({ ...base, clientAuthMethod: 'client_secret_post', clientSecret: undefined }, 'introspection')), /client_secret/);
  t.throws(() => createTokenValidator(config({ ...base, clientId: undefined }, 'introspection')), /client_id/);
  t.throws(() => createTokenValidator(config({ ...base, clientAuthMethod: 'private_key_jwt' }, 'introspection')), /private_key_file/);
  t.throws(() => createTokenValidator(config({ ...base, clientAuthMethod: 'tls_client_auth' }, 'introspection')), /client_cert_file/);
  t.throws(() => createTokenValidator(config({}, 'introspection')), /introspection_endpoint/);
});

t.test('tls_client_auth: the client certificate goes in the handshake, ca is trusted', async (t) => {
  const ca = await createCa({ commonName: 'Test CA' });
  const serverCert = await ca.issue({ commonName: '127.0.0.1', kind: 'server', ipAddresses: ['127.0.0.1'] });
  const client = await ca.issue({ commonName: 'certbound', kind: 'client' });
  const server = await fakeServer(
    (_req, res) => json(res, ACTIVE),
    { cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
  );
  server.seen.length = 0;
  t.teardown(server.close);
  const file = (pem: string) => ({ path: 'x.pem', contents: Buffer.from(pem) });
  const v = validatorFor(t, server, {
    clientAuthMethod: 'tls_client_auth',
    clientSecret: undefined,
    clientCert: file(client.certPem),
    clientKey: file(client.keyPem),
    ca: file(ca.certPem),
  });
  await v.validate('tok-secret');
  const form = new URLSearchParams(server.seen[0]?.body);
  t.equal(form.get('client_id'), CLIENT_ID);
  t.equal(server.seen[0]?.headers.authorization, undefined);

  // Without the CA, the server's certificate is not trusted: as_unavailable.
  const untrusting = validatorFor(t, server, { clientAuthMethod: 'tls_client_auth', clientCert: file(client.certPem), clientKey: file(client.keyPem) });
  await rejects(t, untrusting.validate('tok-secret'), 'as_unavailable');
  // With the CA but without a client certificate, the handshake fails: as_unavailable.
  const anonymous = validatorFor(t, server, { ca: file(ca.certPem) });
  await rejects(t, anonymous.validate('tok-secret'), 'as_unavailable');
});
