import t, { type Test } from 'tap';
import { generateKeyPair, SignJWT, base64url } from 'jose';
import type { AuthorizationServerConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { createTokenValidator } from '../../src/token/index.js';
import { isJwtOf } from '../../src/token/jwt.js';
import { AUDIENCE, config, fakeServer, ISSUER, json, jwksServer, manualClock, metrics, sign, signingKey, valueOf, type SigningKey } from './fixtures/fake-as.js';

type Tap = Test;
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof GatewayError ? e.code : String(e)));
const tick = () => new Promise((r) => setTimeout(r, 10));

/** Polls until `check` holds; returns as soon as it does, so the long limit costs nothing when things work. */
async function until(check: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await tick();
  }
}

/** A started validator, as the serving gateway has it. `patch` bypasses the config step (defence-in-depth tests). */
async function setup(t: Tap, keys: SigningKey[], overrides: Parameters<typeof config>[0] = {}, mode: 'jwt' | 'auto' = 'jwt', patch: Partial<AuthorizationServerConfig> = {}) {
  const jwks = await jwksServer(keys);
  t.teardown(jwks.close);
  const clock = manualClock(Date.now());
  const m = metrics();
  const v = createTokenValidator({ ...config({ jwksUri: `${jwks.url}/jwks`, audience: AUDIENCE, ...overrides }, mode), ...patch }, {
    clock: clock.now,
    metrics: m,
    jwks: { cooldownMs: 0 },
  });
  t.teardown(() => v.close());
  t.equal(v.ready(), false, 'not ready before start');
  t.equal(jwks.fetches(), 0, 'creating the validator fetches nothing, and ready() is only a question');
  v.start();
  return { v, jwks, clock, m };
}

function claims(clockMs: number, extra: Record<string, unknown> = {}) {
  const now = Math.floor(clockMs / 1000);
  return { iss: ISSUER, aud: AUDIENCE, sub: 'alice', client_id: 'tpp-a', scope: 'accounts payments', iat: now, exp: now + 300, jti: 'j1', cnf: { 'x5t#S256': 'thumb' }, ...extra };
}

t.test('a valid RFC 9068 token: claims, prefetch, ready, cache', async (t) => {
  const key = await signingKey('k1');
  const { v, jwks, clock, m } = await setup(t, [key]);
  await until(() => v.ready());
  t.equal(await valueOf(m, 'jwksFetches', { result: 'success' }), 1, 'prefetched once started');
  const token = await sign(key, claims(clock.now()));
  const c = await v.validate(token);
  t.equal(c.clientId, 'tpp-a');
  t.equal(c.subject, 'alice');
  t.same([...c.scopes].sort(), ['accounts', 'payments']);
  t.equal(c.x5tS256, 'thumb');
  t.equal(c.iss, ISSUER);
  await v.validate(token);
  t.equal(await valueOf(m, 'cacheHits'), 1, 'a repeated token is a cache hit, no signature check');
  t.equal(jwks.fetches(), 1);
  t.ok(await v.validate(await sign(key, claims(clock.now()), { typ: 'application/at+jwt' })), 'application/at+jwt is accepted');
});

t.test('claims and header checks', async (t) => {
  const key = await signingKey('k1');
  const rsa = await signingKey('rsa', 'RS256');
  const { v, clock } = await setup(t, [key, rsa]);
  const now = clock.now();
  const s = Math.floor(now / 1000);
  const cases: Array<[string, Promise<string>, string]> = [
    ['typ JWT', sign(key, claims(now), { typ: 'JWT' }), 'invalid_token'],
    ['no typ', new SignJWT(claims(now)).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.privateKey), 'invalid_token'],
    ['other issuer', sign(key, claims(now, { iss: 'https://evil.example' })), 'invalid_token'],
    ['other audience', sign(key, claims(now, { aud: 'https://other.example' })), 'invalid_token'],
    ['expired', sign(key, claims(now, { exp: s - 31 })), 'expired'],
    ['nbf in the future', sign(key, claims(now, { nbf: s + 60 })), 'not_yet_valid'],
    ['iat in the future', sign(key, claims(now, { iat: s + 60 })), 'not_yet_valid'],
    ['no exp', sign(key, { ...claims(now), exp: undefined }), 'invalid_token'],
    ['malformed scope', sign(key, claims(now, { scope: 42 })), 'invalid_token'],
    ['RS256 not allowed', sign(rsa, claims(now)), 'invalid_token'],
    ['unknown kid', sign({ ...key, kid: 'nope' }, claims(now)), 'invalid_token'],
    ['not a JWT', Promise.resolve('opaque-token'), 'invalid_token'],
    ['bad signature', sign(key, claims(now)).then((jwt) => `${jwt.slice(0, -4)}AAAA`), 'invalid_token'],
  ];
  for (const [name, token, code] of cases) {
    t.equal(await codeOf(v.validate(await token)), code, name);
  }
  t.equal(await codeOf(v.validate(await sign(key, claims(now, { exp: s - 29, nbf: s + 29 })))), 'ok', 'within the skew');
});

t.test('HS256 and none are refused even when listed', async (t) => {
  const key = await signingKey('k1');
  const secret = new Uint8Array(32).fill(7);
  t.throws(() => config({ jwksUri: 'http://127.0.0.1:1/jwks', audience: AUDIENCE, allowedAlgorithms: ['ES256', 'HS256', 'none'] }, 'jwt'), /"HS256" is not allowed/, 'refused by the config step');
  const { v, clock } = await setup(t, [key], {}, 'jwt', { allowedAlgorithms: ['ES256', 'HS256', 'none'] });
  const hs = await new SignJWT(claims(clock.now())).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' }).sign(secret);
  t.equal(await codeOf(v.validate(hs)), 'invalid_token', 'HS256: no symmetric key in the JWKS');
  const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt' }));
  const none = `${header}.${base64url.encode(JSON.stringify(claims(clock.now())))}.`;
  t.equal(await codeOf(v.validate(none)), 'invalid_token', 'alg none');
});

t.test('RS256 accepted when allowed', async (t) => {
  const rsa = await signingKey('rsa', 'RS256');
  const { v, clock } = await setup(t, [rsa], { allowedAlgorithms: ['RS256'] });
  t.equal(await codeOf(v.validate(await sign(rsa, claims(clock.now())))), 'ok');
});

t.test('key rotation: an unknown kid triggers one refetch', async (t) => {
  const old = await signingKey('old');
  const next = await signingKey('new');
  const { v, jwks, clock } = await setup(t, [old]);
  await until(() => v.ready());
  t.equal(await codeOf(v.validate(await sign(old, claims(clock.now())))), 'ok');
  jwks.setKeys([next]);
  t.equal(await codeOf(v.validate(await sign(next, claims(clock.now(), { jti: 'j2' })))), 'ok', 'new key verifies after a refetch');
  t.equal(jwks.fetches(), 2);
  t.equal(await codeOf(v.validate(await sign(old, claims(clock.now(), { jti: 'j3' })))), 'invalid_token', 'the retired key no longer verifies');
});

t.test('a cooldown bounds refetches for unknown kids', async (t) => {
  const key = await signingKey('k1');
  const jwks = await jwksServer([key]);
  t.teardown(jwks.close);
  const v = createTokenValidator(config({ jwksUri: jwks.url, audience: AUDIENCE }, 'jwt'), {});
  t.teardown(() => v.close());
  v.start();
  await until(() => v.ready());
  for (let i = 0; i < 5; i++) {
    t.equal(await codeOf(v.validate(await sign({ ...key, kid: `forged-${i}` }, claims(Date.now())))), 'invalid_token');
  }
  t.equal(jwks.fetches(), 1, 'default 30 s cooldown: no refetch storm');
});

t.test('jwks_cooldown_seconds and jwks_max_age_seconds come from the configuration', async (t) => {
  const key = await signingKey('k1');
  const jwks = await jwksServer([key]);
  t.teardown(jwks.close);
  const v = createTokenValidator(config({ jwksUri: jwks.url, audience: AUDIENCE, jwksCooldownSeconds: 0, jwksMaxAgeSeconds: 1 }, 'jwt'), {});
  t.teardown(() => v.close());
  v.start();
  await until(() => v.ready());
  let lastRefetchFrom = 0;
  for (let i = 0; i < 3; i++) {
    const forged = await sign({ ...key, kid: `forged-${i}` }, claims(Date.now()));
    lastRefetchFrom = performance.now();
    t.equal(await codeOf(v.validate(forged)), 'invalid_token');
  }
  t.equal(jwks.fetches(), 4, 'cooldown 0: every unknown kid refetches');
  // The last refetch ended after `lastRefetchFrom`; the next validation checks the keys' age before
  // `checkedBy`. Only when that is well inside the 1 s max age must the keys still be fresh.
  const fresh1 = await sign(key, claims(Date.now(), { jti: 'fresh-1' }));
  t.equal(await codeOf(v.validate(fresh1)), 'ok');
  const checkedBy = performance.now();
  const fetched = jwks.fetches();
  if (checkedBy - lastRefetchFrom < 900) {
    t.equal(fetched, 4, `keys younger than the max age are used as they are (${Math.round(checkedBy - lastRefetchFrom)} ms old)`);
  } else {
    t.comment(`${Math.round(checkedBy - lastRefetchFrom)} ms between the refetch and the check: the keys may have aged out, not checked this run`);
  }
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(await codeOf(v.validate(await sign(key, claims(Date.now(), { jti: 'fresh-2' })))), 'ok');
  t.equal(jwks.fetches(), fetched + 1, 'keys older than jwks_max_age_seconds are fetched again');
});

t.test('JWKS unavailable: as_unavailable, not ready, retried in the background once per cooldown', async (t) => {
  const key = await signingKey('k1');
  let mode: 'down' | 'garbage' | 'notjwks' | 'up' = 'down';
  const server = await fakeServer((_req, res) => {
    if (mode === 'down') return json(res, { error: 'x' }, 503);
    if (mode === 'garbage') return json(res, '<html>');
    if (mode === 'notjwks') return json(res, { keys: 'none' });
    return json(res, { keys: [key.jwk] });
  });
  t.teardown(server.close);
  const clock = manualClock(Date.now());
  const m = metrics();
  const v = createTokenValidator(config({ jwksUri: server.url, audience: AUDIENCE, retryAfterSeconds: 9 }, 'jwt'), { clock: clock.now, metrics: m, jwks: { cooldownMs: 1000 } });
  t.teardown(() => v.close());
  v.start();
  await until(() => server.seen.length === 1);
  await tick();
  t.equal(v.ready(), false);
  for (let i = 0; i < 5; i++) v.ready();
  t.equal(server.seen.length, 1, 'ready() fetches nothing');
  const token = await sign(key, claims(clock.now()));
  const err = await v.validate(token).catch((e: unknown) => e);
  t.equal((err as GatewayError).code, 'as_unavailable');
  t.equal((err as GatewayError).details.retryAfter, 9);
  mode = 'garbage';
  t.equal(await codeOf(v.validate(token)), 'as_unavailable');
  mode = 'notjwks';
  t.equal(await codeOf(v.validate(token)), 'as_unavailable');
  t.equal(await valueOf(m, 'jwksFetches', { result: 'error' }), 4);
  mode = 'up';
  // The retry timer (the cooldown, 1 s here) loads the keys without any request or probe.
  await until(() => v.ready());
  t.equal(await valueOf(m, 'jwksFetches', { result: 'success' }), 1);
  t.equal(await codeOf(v.validate(token)), 'ok');
});

t.test('JWKS timeout: as_unavailable', async (t) => {
  const server = await fakeServer(() => undefined);
  t.teardown(server.close);
  const key = await signingKey('k1');
  const v = createTokenValidator(config({ jwksUri: server.url, audience: AUDIENCE, timeoutMs: 100 }, 'jwt'), {});
  t.teardown(() => v.close());
  t.equal(await codeOf(v.validate(await sign(key, claims(Date.now())))), 'as_unavailable');
});

t.test('auto mode: our JWTs locally, everything else introspected', async (t) => {
  const key = await signingKey('k1');
  const introspection = await fakeServer((_req, res) => json(res, { active: true, scope: 'accounts' }));
  t.teardown(introspection.close);
  const { v, clock, jwks } = await setup(t, [key], { introspectionEndpoint: introspection.url }, 'auto');
  t.equal(await codeOf(v.validate(await sign(key, claims(clock.now())))), 'ok');
  t.equal(introspection.seen.length, 0, 'JWT of our issuer: verified locally');
  t.equal(await codeOf(v.validate('opaque')), 'ok');
  const foreign = await sign(key, claims(clock.now(), { iss: 'https://other.example' }));
  t.equal(await codeOf(v.validate(foreign)), 'ok');
  t.equal(introspection.seen.length, 2, 'opaque and foreign-issuer tokens are introspected');
  t.ok(jwks.fetches() >= 1);
});

t.test('isJwtOf', async (t) => {
  const key = await signingKey('k1');
  t.equal(isJwtOf(await sign(key, { iss: ISSUER }), ISSUER), true);
  t.equal(isJwtOf('a.b.c', ISSUER), false, 'undecodable');
  t.equal(isJwtOf('a.b', ISSUER), false);
  t.equal(isJwtOf('a.b.c.d.e', ISSUER), false, 'JWE');
});

t.test('configuration errors', async (t) => {
  t.throws(() => createTokenValidator(config({ audience: AUDIENCE }, 'jwt')), /jwks_uri/);
  t.throws(() => createTokenValidator(config({ jwksUri: 'http://127.0.0.1:1/jwks' }, 'jwt')), /audience/);
  void generateKeyPair;
});
