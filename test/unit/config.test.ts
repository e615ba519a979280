import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, buildConfig, interpolate, loadConfig } from '../../src/config/load.js';

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
  const validation = c.authorizationServer?.validation;
  t.equal(validation?.mode, 'introspection');
  t.same(validation && 'introspection' in validation ? validation.introspection : undefined, {
    endpoint: 'https://as.example/introspect',
    authentication: { method: 'client_secret_basic', clientId: 'certbound', secret: 's3cret' },
    signed: false,
  });
  t.equal(c.authorizationServer?.timeoutMs, 2000);
  t.equal(c.authorizationServer?.cache.maxEntries, 100000);
  t.equal(c.authorizationServer?.cache.maxTtlSeconds, 60);
  t.equal(c.authorizationServer?.cache.negativeTtlSeconds, 0);
  t.same(c.authorizationServer?.allowedAlgorithms, ['PS256', 'ES256', 'EdDSA']);
  const jwt = buildConfig({ ...minimal(), token_validation: 'jwt', authorization_server: { ...minimal().authorization_server, jwks_uri: 'https://as.example/jwks', audience: 'https://api' } }, { env: { SECRET: 's' } });
  const keys = jwt.authorizationServer?.validation;
  t.same(keys && 'jwks' in keys ? keys.jwks : undefined, { uri: 'https://as.example/jwks', cooldownSeconds: 30, maxAgeSeconds: 600 });
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
  t.same(problems(minimal(), {}), ['authorization_server.client_secret: environment variable SECRET is not set'], 'one problem per key');
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
    'routes[2].auth: must be one of certificate_bound_token, sender_constrained_token, dpop_bound_token, mtls, none (got "magic")',
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
  t.same(problems({}), ['upstreams: is required', 'routes: is required']);
  t.same(problems({ upstreams: {}, routes: [] }), ['routes: must be a non-empty list']);
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
    'authorization_server.allowed_algorithms[1]: "HS256" is not allowed: access tokens must be signed with an asymmetric key',
    'authorization_server.allowed_algorithms[2]: "none" is not allowed: access tokens must be signed with an asymmetric key',
    'authorization_server.jwks_uri: is required',
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
  t.ok(p.includes('routes[0].methods: must be a list'));
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

t.test('limits and timeouts: defaults and bounds', async (t) => {
  const c = buildConfig(minimal(), { env: { SECRET: 's' } });
  t.same(
    { ...c.listen },
    { host: '0.0.0.0', port: 8443, maxHeaderBytes: 32768, maxHeaders: 100, maxConnections: 1024, keepAliveTimeoutMs: 65000, requestTimeoutMs: 300000, headersTimeoutMs: 10000, sendTimeoutMs: 30000 },
  );
  t.equal(c.upstreams.get('bank-api')?.maxPending, 1024);
  t.equal(c.upstreams.get('bank-api')?.timeoutMs, 30000);
  t.equal(c.clientCertificate.xfccMaxElements, 1);
  t.equal(c.routes[0]?.allowDoubleEncoding, false);
  const short = buildConfig({ ...minimal(), listen: { request_timeout_ms: 4000 } }, { env: { SECRET: 's' } });
  t.equal(short.listen.headersTimeoutMs, 4000, 'the headers timeout follows a shorter request timeout');
  const doc = {
    ...minimal(),
    listen: { max_headers: 0, max_connections: 0, headers_timeout_ms: 20000, request_timeout_ms: 15000, send_timeout_ms: 0 },
    client_certificate: { xfcc_max_elements: 0 },
    upstreams: { 'bank-api': { url: 'http://127.0.0.1:8080', max_pending: -1 } },
  };
  t.same(problems(doc), [
    'listen.max_headers: must be an integer from 1 to 10000',
    'listen.max_connections: must be an integer from 1 to 1000000',
    'listen.send_timeout_ms: must be an integer from 1 to 3600000',
    'client_certificate.xfcc_max_elements: must be an integer from 1 to 64',
    'upstreams.bank-api.max_pending: must be an integer from 0 to 1000000',
    'listen.headers_timeout_ms: must not exceed request_timeout_ms (15000)',
  ]);
});

t.test('what would break every request later is refused now, with its key path', async (t) => {
  const { createCa } = await import('../fixtures/pki.js');
  const dir = mkdtempSync(join(tmpdir(), 'certbound-config-keys-'));
  const ca = await createCa({ commonName: 'Config CA' });
  const a = await ca.issue({ commonName: 'a', kind: 'server', keyAlgorithm: 'rsa' });
  const b = await ca.issue({ commonName: 'b', kind: 'server' });
  const ec = await ca.issue({ commonName: 'ec', kind: 'client' });
  for (const [name, text] of [['a.crt', a.certPem], ['a.key', a.keyPem], ['b.key', b.keyPem], ['ec.key', ec.keyPem], ['ec.crt', ec.certPem]] as const) writeFileSync(join(dir, name), text);
  const build = (doc: Record<string, unknown>): string[] => {
    try {
      buildConfig({ ...minimal(), ...doc }, { env: { SECRET: 's' }, baseDir: dir });
      return [];
    } catch (e) {
      return [...(e as ConfigError).problems];
    }
  };
  t.same(build({ listen: { tls: { cert_file: 'a.crt', key_file: 'b.key' } } }), [`listen.tls.key_file: ${join(dir, 'b.key')} is not the private key of cert_file's certificate`]);
  t.same(build({ listen: { tls: { cert_file: 'a.crt', key_file: 'a.key' } } }), []);
  for (const realm of ['bank\r', 'bank\nx', 'caf\u00e9', 'a"b', 'a\\b', 'tab\t']) {
    t.same(build({ realm }), ['realm: must be printable ASCII without " or \\'], JSON.stringify(realm));
  }
  t.same(build({ realm: 'Open Banking (prod)' }), []);
  const as = (extra: Record<string, unknown>) => ({ authorization_server: { ...minimal().authorization_server, client_auth_method: 'private_key_jwt', ...extra } });
  const jws = 'PS256, PS384, PS512, RS256, RS384, RS512, ES256, ES384, ES512, EdDSA';
  t.same(build(as({ private_key_file: 'a.key', signing_algorithm: 'PS257' })), [`authorization_server.signing_algorithm: must be one of ${jws} (got "PS257")`]);
  t.same(build({ authorization_server: { ...minimal().authorization_server, signing_algorithm: 'PS257' } }), [`authorization_server.signing_algorithm: must be one of ${jws} (got "PS257")`], 'whatever the client auth method');
  t.same(build(as({ private_key_file: 'a.key', signing_algorithm: 'ES256' })), ['authorization_server.signing_algorithm: "ES256" cannot sign with this key (one of PS256, PS384, PS512, RS256, RS384, RS512)']);
  t.same(build(as({ private_key_file: 'a.key', signing_algorithm: 'RS384' })), []);
  t.same(build(as({ private_key_file: 'a.key' })), [], 'no algorithm: the one that fits the key');
  const { generateKeyPairSync } = await import('node:crypto');
  const keyFile = (name: string, key: ReturnType<typeof generateKeyPairSync>['privateKey']) => writeFileSync(join(dir, name), key.export({ format: 'pem', type: 'pkcs8' }));
  keyFile('p384.key', generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey);
  keyFile('p521.key', generateKeyPairSync('ec', { namedCurve: 'secp521r1' }).privateKey);
  keyFile('k256.key', generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey);
  keyFile('ed.key', generateKeyPairSync('ed25519').privateKey);
  keyFile('pss.key', generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey);
  keyFile('x25519.key', generateKeyPairSync('x25519').privateKey);
  t.same(build(as({ private_key_file: 'ec.key', signing_algorithm: 'ES384' })), ['authorization_server.signing_algorithm: "ES384" cannot sign with this key (one of ES256)']);
  t.same(build(as({ private_key_file: 'p384.key', signing_algorithm: 'ES384' })), []);
  t.same(build(as({ private_key_file: 'p521.key', signing_algorithm: 'ES256' })), ['authorization_server.signing_algorithm: "ES256" cannot sign with this key (one of ES512)']);
  t.same(build(as({ private_key_file: 'ed.key', signing_algorithm: 'EdDSA' })), []);
  t.same(build(as({ private_key_file: 'pss.key', signing_algorithm: 'RS256' })), ['authorization_server.signing_algorithm: "RS256" cannot sign with this key (one of PS256, PS384, PS512)']);
  for (const unusable of ['k256.key', 'x25519.key']) {
    t.same(build(as({ private_key_file: unusable })), [`authorization_server.private_key_file: ${join(dir, unusable)}: unsupported key type for private_key_jwt (RSA, EC P-256/384/521 or Ed25519)`], unusable);
  }
  const tlsAuth = { authorization_server: { ...minimal().authorization_server, client_auth_method: 'tls_client_auth', client_cert_file: 'ec.crt', client_key_file: 'a.key' } };
  t.same(build(tlsAuth), [`authorization_server.client_key_file: ${join(dir, 'a.key')} is not the private key of client_cert_file's certificate`]);
});

t.test('only an expanded ${VAR} becomes a number or boolean; a value written in the file keeps its YAML type', async (t) => {
  const base = { upstreams: { u: 'http://x' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', auth: 'none' }] };
  const c = buildConfig({ ...base, listen: { port: '${P}', keep_alive_timeout_ms: '${K:-5000}' }, client_certificate: { verify: { check_validity: '${V}' } } }, { env: { P: '8080', V: 'false' } });
  t.equal(c.listen.port, 8080);
  t.equal(c.listen.keepAliveTimeoutMs, 5000);
  t.equal(c.clientCertificate.verify.checkValidity, false);
  t.same(problems({ ...base, listen: { port: true }, client_certificate: { verify: { check_validity: 0 } } }), [
    'listen.port: must be an integer from 0 to 65535',
    'client_certificate.verify.check_validity: must be true or false',
  ]);
  t.same(problems({ ...base, routes: [{ ...base.routes[0], forward_authorization: 1 }] }), ['routes[0].forward_authorization: must be true or false']);
  t.same(problems({ ...minimal(), authorization_server: { ...minimal().authorization_server, client_secret: true } }), ['authorization_server.client_secret: must be a string']);
  t.same(problems({ ...base, listen: { port: '8443' } }), ['listen.port: must be an integer from 0 to 65535'], 'a quoted number in the file is a string');
  t.same(problems({ ...base, listen: { port: '${P}' } }, { P: 'eighty' }), ['listen.port: must be an integer from 0 to 65535']);
});

t.test('authorization server files are read whenever named; the TLS client certificate goes on every connection to the server', async (t) => {
  const { createCa } = await import('../fixtures/pki.js');
  const dir = mkdtempSync(join(tmpdir(), 'certbound-config-as-'));
  const ca = await createCa({ commonName: 'AS files CA' });
  const me = await ca.issue({ commonName: 'certbound', kind: 'client' });
  writeFileSync(join(dir, 'me.crt'), me.certPem);
  writeFileSync(join(dir, 'me.key'), me.keyPem);
  const jwt = (extra: Record<string, unknown>) => ({
    token_validation: 'jwt',
    authorization_server: { issuer: 'https://as.example', jwks_uri: 'https://as.example/jwks', audience: 'https://api', ...extra },
    upstreams: { u: 'http://x' },
    routes: [{ name: 'r', path_prefix: '/', upstream: 'u' }],
  });
  const c = buildConfig(jwt({ client_auth_method: 'tls_client_auth', client_cert_file: 'me.crt', client_key_file: 'me.key' }), { env: {}, baseDir: dir });
  t.equal(c.authorizationServer?.clientCertificate?.cert.path, join(dir, 'me.crt'), 'jwt mode: the JWKS fetch presents it too');
  t.ok(c.files.includes(join(dir, 'me.key')), 'and the reload watcher follows it');
  const missing = (doc: Record<string, unknown>): string[] => {
    try {
      buildConfig(doc, { env: { SECRET: 's' }, baseDir: dir });
      return [];
    } catch (e) {
      return [...(e as ConfigError).problems];
    }
  };
  t.same(missing(jwt({ private_key_file: 'gone.key' })), [`authorization_server.private_key_file: cannot read ${join(dir, 'gone.key')}: ENOENT`], 'named but unused in this mode: still read');
  t.same(missing({ ...minimal(), authorization_server: { ...minimal().authorization_server, client_cert_file: 'gone.crt' } }), [`authorization_server.client_cert_file: cannot read ${join(dir, 'gone.crt')}: ENOENT`]);
  t.same(missing({ ...minimal(), authorization_server: { ...minimal().authorization_server, signing_algorithm: 'ES256' } }), [], 'a valid signing_algorithm unused by client_secret_basic is accepted, as before');
});

t.test('the route name "none" is reserved for requests that match no route', async (t) => {
  t.same(problems({ upstreams: { u: 'http://x' }, routes: [{ name: 'none', path_prefix: '/', upstream: 'u', auth: 'none' }] }), [
    'routes[0].name: "none" is reserved: requests that match no route are counted and logged under it',
  ]);
});

t.test('trusted_proxies: each entry is built into a net.BlockList', async (t) => {
  const doc = (trusted: string[]) => ({ client_certificate: { source: 'header', trusted_proxies: trusted }, upstreams: { u: 'http://x' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', auth: 'none' }] });
  t.same(problems(doc(['10.0.0.0/8', '127.0.0.1', '::1/128', 'fd00::/8', '0.0.0.0/0'])), []);
  const bad = ['10.0.0.0/33', '::/129', 'x', '1.2.3.4/a', '1.2.3.4/8/9'];
  t.same(problems(doc(bad)), bad.map((entry, i) => `client_certificate.trusted_proxies[${i}]: "${entry}" is not an IP address or CIDR`));
  t.same(problems(doc([''])), ['client_certificate.trusted_proxies[0]: must not be empty']);
});
