// dpop:, listen.public_url, routes[].public_url and the two new route kinds: the defaults, and
// what validate refuses, with key paths.
import t from 'tap';
import { ConfigError, buildConfig } from '../../src/config/load.js';

const doc = (extra: Record<string, unknown> = {}, route: Record<string, unknown> = {}) => ({
  listen: { public_url: 'https://api.bank.example' },
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: 'https://as.example/introspect', client_id: 'c', client_secret: 's' },
  upstreams: { u: 'http://127.0.0.1:1' },
  routes: [{ name: 'pay', path_prefix: '/pay', upstream: 'u', auth: 'dpop_bound_token', ...route }],
  ...extra,
});
const problems = (d: unknown): string[] => {
  try {
    buildConfig(d, { env: {} });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
};

t.test('every dpop key has the default the contract names; a dpop: section is optional', async (t) => {
  const c = buildConfig(doc(), { env: {} });
  const { nonceSecret, ...rest } = c.dpop;
  t.same(rest, { algorithms: ['ES256', 'PS256', 'EdDSA'], iatLeewaySeconds: 60, nonce: 'off', nonceLifetimeSeconds: 300, replayCacheEntries: 100000 });
  t.equal(nonceSecret.length, 32, 'a generated 32-byte secret');
  t.same(buildConfig(doc(), { env: {} }).dpop.nonceSecret, nonceSecret, 'the same for every load in this process: a reload keeps accepting its nonces');
  t.equal(c.routes[0]?.publicOrigin, 'https://api.bank.example');
  t.equal(c.identityHeaders.dpopJkt, 'x-certbound-dpop-jkt');
});

t.test('the nonce secret comes from the environment, trailing whitespace trimmed', async (t) => {
  const c = buildConfig(doc({ dpop: { nonce: 'required', nonce_secret: '${SECRET}' } }), { env: { SECRET: `${'s'.repeat(32)}\n` } });
  t.same(c.dpop.nonceSecret, Buffer.from('s'.repeat(32)));
  t.same(problems(doc({ dpop: { nonce_secret: 'short' } })), ['dpop.nonce_secret: must hold at least 32 bytes (it has 5)']);
});

t.test('none and symmetric algorithms are refused, unknown ones named', async (t) => {
  t.same(problems(doc({ dpop: { algorithms: ['ES256', 'none', 'HS256', 'XY1'] } })), [
    'dpop.algorithms[1]: "none" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[2]: "HS256" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[3]: "XY1" is not a supported JWS algorithm (supported: ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512, EdDSA, Ed25519)',
  ]);
  t.match(problems(doc({ dpop: { algorithms: [] } })).join('\n'), /dpop\.algorithms/);
  t.match(problems(doc({ dpop: { algorithms: ['ES256', 'ES256'] } })).join('\n'), /dpop\.algorithms: must not list "ES256" twice/);
});

t.test('a DPoP route needs a public URL, an https origin only', async (t) => {
  const noListen = { ...doc(), listen: {} };
  t.same(problems(noListen), ['routes[0].public_url: is required with auth: dpop_bound_token when listen.public_url is not set (a DPoP proof\'s htu is checked against it, never against Host)']);
  const sender = { ...doc({}, { auth: 'sender_constrained_token' }), listen: {} };
  t.match(problems(sender).join('\n'), /routes\[0\]\.public_url: is required with auth: sender_constrained_token/);
  const own = buildConfig({ ...doc({}, { public_url: 'https://Own.Example:443' }), listen: {} }, { env: {} });
  t.equal(own.routes[0]?.publicOrigin, 'https://own.example', "the route's own, normalized");
  for (const bad of ['http://api.bank.example', 'https://api.bank.example/v1', 'https://api.bank.example?x=1', 'https://user@api.bank.example', 'api.bank.example']) {
    t.equal(problems(doc({ listen: { public_url: bad } })).length, 1, bad);
    t.match(problems(doc({ listen: { public_url: bad } }))[0], /^listen\.public_url: "[^"]*" is not an origin/, bad);
  }
  t.same(problems(doc({}, { public_url: 'https://x.example/path' })), ['routes[0].public_url: "https://x.example/path" is not an origin (https://host[:port], no path, query or credentials)']);
  t.equal(buildConfig({ ...doc({}, { auth: 'mtls' }), listen: {} }, { env: {} }).routes[0]?.publicOrigin, undefined, 'other kinds need none');
});

t.test('the new route kinds need an authorization server, take scopes, and refuse psd2_roles', async (t) => {
  const { authorization_server: _as, ...withoutAs } = doc();
  t.same(problems(withoutAs), ['authorization_server: is required by routes with auth: dpop_bound_token']);
  t.same(buildConfig(doc({}, { scopes: ['accounts'] }), { env: {} }).routes[0]?.scopes, ['accounts']);
  t.same(problems(doc({}, { psd2_roles: ['PSP_AI'] })), [
    'routes[0].psd2_roles: needs a client certificate on every request: only with auth: certificate_bound_token or mtls, not dpop_bound_token',
  ]);
});
