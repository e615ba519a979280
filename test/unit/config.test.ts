import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, buildConfig, interpolate, isCidr, loadConfig } from '../../src/config/load.js';

const minimal = () => ({
  authorization_server: {
    issuer: 'https://as.example',
    introspection_endpoint: 'https://as.example/introspect',
    client_id: 'certbound',
    client_secret: '${SECRET}',
  },
  upstreams: { 'bank-api': 'http://127.0.0.1:8080' },
  routes: [{ name: 'accounts', path_prefix: '/ob/aisp/', methods: ['get'], upstream: 'bank-api', scopes: ['accounts'] }],
});

const problems = (doc: unknown, env: Record<string, string> = { SECRET: 's' }): string[] => {
  try {
    buildConfig(doc, { env });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
};

t.test('defaults are applied and values normalized', async (t) => {
  const c = buildConfig(minimal(), { env: { SECRET: 's3cret' } });
  t.equal(c.listen.port, 8443);
  t.equal(c.admin.host, '127.0.0.1');
  t.equal(c.clientCertificate.source, 'tls');
  t.equal(c.authorizationServer?.clientSecret, 's3cret');
  t.equal(c.authorizationServer?.clientAuthMethod, 'client_secret_basic');
  t.equal(c.authorizationServer?.timeoutMs, 2000);
  t.equal(c.authorizationServer?.cache.maxEntries, 100000);
  t.equal(c.authorizationServer?.cache.maxTtlSeconds, 60);
  t.equal(c.authorizationServer?.cache.negativeTtlSeconds, 0);
  t.same(c.authorizationServer?.allowedAlgorithms, ['PS256', 'ES256', 'EdDSA']);
  t.equal(c.authorizationServer?.jwksCooldownSeconds, 30);
  t.equal(c.authorizationServer?.jwksMaxAgeSeconds, 600);
  t.same(c.logging, { level: 'info', flushIntervalMs: 100 });
  const r = c.routes[0];
  t.equal(r?.pathPrefix, '/ob/aisp');
  t.same(r?.methods, ['GET']);
  t.equal(r?.auth, 'certificate_bound_token', 'fail-closed default');
  t.equal(c.upstreams.get('bank-api')?.url, 'http://127.0.0.1:8080');
  t.ok(Object.isFrozen(c));
});

t.test('env interpolation', async (t) => {
  const p: string[] = [];
  t.equal(interpolate('a${X}b${Y:-dflt}c', { X: '1' }, 'k', p), 'a1bdfltc');
  t.equal(interpolate('${Y:-}', {}, 'k', p), '');
  t.same(p, []);
  interpolate('${MISSING}', {}, 'routes[0].name', p);
  t.same(p, ['routes[0].name: environment variable MISSING is not set']);
  t.same(problems(minimal(), {}), ['authorization_server.client_secret: environment variable SECRET is not set', 'authorization_server.client_secret: is required for client_secret_basic']);
});

t.test('every problem is reported with its key path', async (t) => {
  const doc = minimal() as Record<string, unknown>;
  doc.routes = [
    { name: 'a', path_prefix: '/a', upstream: 'bank-api' },
    { name: 'a', path_prefix: 'relative', upstream: 'bank-api' },
    { name: 'c', path_prefix: '/c/../d', upstream: 'bank', methods: ['G T'], auth: 'magic', typo: 1 },
    { name: 'd', path_prefix: '/d', upstream: 'bank-api', auth: 'none', scopes: ['x'] },
  ];
  doc.listen = { port: 70000, tls: { cert_file: '/nonexistent.crt' } };
  doc.client_certificate = { source: 'header', trusted_proxies: ['10.0.0.0/33', 'x'], preset: 'nope' };
  doc.upstreams = { 'bank-api': 'http://127.0.0.1:8080', bad: 'ftp://x', path: 'http://x/y' };
  doc.extra = true;
  const p = problems(doc);
  for (const expected of [
    'routes[1].name: duplicate route name "a"',
    'routes[1].path_prefix: "relative" must be an absolute, normalized path without percent-encoding',
    'routes[2].upstream: unknown upstream "bank"',
    'routes[2].path_prefix: "/c/../d" must be an absolute, normalized path without percent-encoding',
    'routes[2].methods[0]: "G T" is not an HTTP method',
    'routes[2].auth: must be one of certificate_bound_token, mtls, none (got "magic")',
    'routes[2].typo: unknown key',
    'routes[3].scopes: has no effect with auth: none',
    'listen.port: must be an integer from 0 to 65535',
    'listen.tls.cert_file: cannot read /nonexistent.crt: ENOENT',
    'listen.tls.key_file: is required',
    'client_certificate.trusted_proxies[0]: "10.0.0.0/33" is not an IP address or CIDR',
    'client_certificate.trusted_proxies[1]: "x" is not an IP address or CIDR',
    'upstreams.bad.url: "ftp://x" is not an http(s) URL',
    'upstreams.path.url: must be an origin (scheme://host:port) without path, query or credentials',
    'extra: unknown key',
  ]) {
    t.ok(p.includes(expected), expected);
  }
  t.match(p.join('\n'), /client_certificate\.preset: unknown preset "nope"/);
});

t.test('cross-section rules', async (t) => {
  t.same(problems({ upstreams: { u: 'http://x' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u' }] }), [
    'authorization_server: is required by routes with auth: certificate_bound_token',
  ]);
  t.same(problems({ upstreams: { u: 'http://x' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', auth: 'none' }] }), []);
  t.same(problems({}), ['upstreams: is required', 'routes: must be a non-empty list']);
  t.same(problems({ client_certificate: { source: 'header' }, upstreams: { u: 'http://x' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', auth: 'none' }] }), [
    'client_certificate.trusted_proxies: is required when source is header (the header is only honoured from these peers)',
  ]);
  const jwt = minimal() as Record<string, unknown>;
  jwt.token_validation = 'jwt';
  jwt.authorization_server = { issuer: 'https://as.example' };
  t.same(problems(jwt), ['authorization_server.jwks_uri: is required', 'authorization_server.audience: is required when token_validation is jwt or auto']);
  const signed = minimal() as Record<string, unknown>;
  signed.authorization_server = { ...(minimal().authorization_server), signed_introspection: true, allowed_algorithms: ['ES256', 'HS256', 'none'] };
  t.same(problems(signed), [
    'authorization_server.jwks_uri: is required',
    'authorization_server.allowed_algorithms[1]: "HS256" is not allowed: access tokens must be signed with an asymmetric key',
    'authorization_server.allowed_algorithms[2]: "none" is not allowed: access tokens must be signed with an asymmetric key',
  ]);
  const jwksTuning = minimal() as Record<string, unknown>;
  jwksTuning.authorization_server = { ...(minimal().authorization_server), jwks_cooldown_seconds: -1, jwks_max_age_seconds: 0 };
  t.same(problems(jwksTuning), [
    'authorization_server.jwks_cooldown_seconds: must be an integer from 0 to 3600',
    'authorization_server.jwks_max_age_seconds: must be an integer from 1 to 86400',
  ]);
  const tlsVerify = minimal() as Record<string, unknown>;
  tlsVerify.client_certificate = { source: 'tls', verify: { require_client_auth_eku: true } };
  t.same(problems(tlsVerify), ['client_certificate.verify.require_client_auth_eku: applies to source: header only']);
  const mtls = buildConfig({ upstreams: { u: 'http://x:1' }, routes: [{ name: 'token', path_prefix: '/token', upstream: 'u', auth: 'mtls', methods: ['POST'] }] });
  t.equal(mtls.routes[0]?.forwardCertificateHeader, 'x-client-cert');
});

t.test('types are checked', async (t) => {
  const doc = minimal() as Record<string, unknown>;
  doc.listen = 'x';
  doc.admin = { port: 'abc' };
  doc.logging = { level: 'loud', flush_interval_ms: -1 };
  doc.reload = { watch: 'yes' };
  doc.routes = [{ name: ['x'], path_prefix: '/x', upstream: 'bank-api', methods: 'GET' }];
  const p = problems(doc);
  t.ok(p.includes('listen: must be a mapping'));
  t.ok(p.includes('admin.port: must be an integer from 0 to 65535'));
  t.ok(p.includes('logging.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'));
  t.ok(p.includes('logging.flush_interval_ms: must be an integer from 0 to 10000'), p.join('\n'));
  t.ok(p.includes('reload.watch: must be true or false'));
  t.ok(p.includes('routes[0].name: must be a string'));
  t.ok(p.includes('routes[0].methods: must be a list of non-empty strings'));
});

t.test('loadConfig reads YAML, resolves files against its directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-config-'));
  const { readFileSync } = await import('node:fs');
  const pem = readFileSync(new URL('../vectors/rfc8705-appendix-a.pem', import.meta.url), 'utf8');
  writeFileSync(join(dir, 'ca.pem'), pem);
  writeFileSync(join(dir, 'bad.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  writeFileSync(join(dir, 'empty.pem'), 'nothing here');
  writeFileSync(
    join(dir, 'gateway.yaml'),
    `client_certificate:\n  source: header\n  trusted_proxies: [127.0.0.1/32, "::1"]\n  verify: { ca_file: ca.pem }\nupstreams: { u: "http://127.0.0.1:1" }\nroutes:\n  - { name: r, path_prefix: /, upstream: u, auth: none }\n`,
  );
  const c = loadConfig(join(dir, 'gateway.yaml'), {});
  t.equal(c.clientCertificate.verify.ca?.contents.toString(), pem);
  const bad = (file: string) => {
    try {
      buildConfig({ listen: { tls: { cert_file: file, key_file: 'ca.pem' } }, upstreams: { u: 'http://x:1' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', auth: 'none' }] }, { baseDir: dir });
      return [];
    } catch (e) {
      return [...(e as ConfigError).problems];
    }
  };
  t.same(bad('bad.pem'), [`listen.tls.cert_file: ${join(dir, 'bad.pem')} holds a certificate that does not parse`, `listen.tls.key_file: ${join(dir, 'ca.pem')} is not a readable PEM private key`]);
  t.same(bad('empty.pem'), [`listen.tls.cert_file: ${join(dir, 'empty.pem')} holds no PEM certificate`, `listen.tls.key_file: ${join(dir, 'ca.pem')} is not a readable PEM private key`]);
  t.equal(c.source, join(dir, 'gateway.yaml'));
  writeFileSync(join(dir, 'dup.yaml'), 'a: 1\na: 2\n');
  t.throws(() => loadConfig(join(dir, 'dup.yaml')), ConfigError);
  t.throws(() => loadConfig(join(dir, 'missing.yaml')), /cannot read \(ENOENT\)/);
});

t.test('isCidr', async (t) => {
  for (const ok of ['10.0.0.0/8', '127.0.0.1', '::1/128', 'fd00::/8', '0.0.0.0/0']) t.ok(isCidr(ok), ok);
  for (const bad of ['10.0.0.0/33', '::/129', 'x', '1.2.3.4/a', '1.2.3.4/8/9', '']) t.notOk(isCidr(bad), bad);
});
