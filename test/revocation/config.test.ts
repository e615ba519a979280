// client_certificate.revocation, routes[].psd2_roles and the two new identity headers: defaults,
// what validate refuses (with key paths), and what each resolves to.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, buildConfig } from '../../src/config/load.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('Config CA');
const crl = ca.crl();
t.teardown(() => ca.remove());
const dir = mkdtempSync(join(tmpdir(), 'certbound-revocation-config-'));
writeFileSync(join(dir, 'ca.crt'), ca.pem);
writeFileSync(join(dir, 'crl.der'), crl.der);

const header = (revocation: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1'], revocation, ...extra },
  upstreams: { u: 'http://127.0.0.1:1' },
  routes: [{ name: 'token', path_prefix: '/token', upstream: 'u', auth: 'mtls' }],
});
const problems = (doc: unknown): string[] => {
  try {
    buildConfig(doc, { env: {}, baseDir: dir });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
};

t.test('every revocation key has its default; mode off needs nothing', async (t) => {
  const c = buildConfig(header({}), { env: {}, baseDir: dir });
  t.same(c.clientCertificate.revocation, { mode: 'off' });
  t.same(c.routes[0]?.psd2Roles, []);
  t.equal(c.identityHeaders.organizationId, 'x-certbound-organization-id');
  t.equal(c.identityHeaders.psd2Roles, 'x-certbound-psd2-roles');
});

t.test('a mode other than off without any issuer certificate is refused, naming the key path', async (t) => {
  for (const mode of ['soft_fail', 'hard_fail']) {
    t.same(problems(header({ mode })), [
      `client_certificate.revocation.issuer_file: is required when mode is ${mode} (there is no listen.tls.client_ca_file or client_certificate.verify.ca_file to default to)`,
    ]);
  }
  t.same(problems(header({ mode: 'sometimes' })), ['client_certificate.revocation.mode: must be one of off, soft_fail, hard_fail (got "sometimes")']);
});

t.test('issuer_file defaults to verify.ca_file (and listen.tls.client_ca_file); set, it wins', async (t) => {
  const viaVerify = buildConfig(header({ mode: 'hard_fail' }, { verify: { ca_file: 'ca.crt' } }), { env: {}, baseDir: dir }).clientCertificate.revocation;
  t.equal(viaVerify.mode, 'hard_fail');
  if (viaVerify.mode === 'off') return;
  t.equal(viaVerify.issuers.path, join(dir, 'ca.crt'));
  t.equal(viaVerify.issuers.certificates[0]?.fingerprint256, ca.x509.fingerprint256);
  t.same(viaVerify.order, ['ocsp', 'crl']);
  t.same(viaVerify.ocsp, { timeoutMs: 2000, nonce: false, maxCacheSeconds: 3600 }, 'url "" means the AIA URL: absent');
  t.same(viaVerify.crl, { urls: [], files: [], useDistributionPoints: true, refreshSeconds: 3600, timeoutMs: 10000 });
  t.equal(viaVerify.clockSkewSeconds, 60);
  t.equal(viaVerify.retryAfterSeconds, 5);
  t.equal(viaVerify.cacheEntries, 100000);
  const named = buildConfig(header({ mode: 'soft_fail', issuer_file: 'ca.crt', ocsp: { url: 'http://ocsp.qtsp.example' } }), { env: {}, baseDir: dir });
  const r = named.clientCertificate.revocation;
  t.equal(r.mode === 'off' ? undefined : r.ocsp?.url, 'http://ocsp.qtsp.example', 'ocsp.url replaces the AIA URL');
  t.ok(named.files.includes(join(dir, 'ca.crt')), 'the issuer file is watched');
});

t.test('sources: disabled ones leave the order; none left is refused; CRL files are read (PEM or DER) and watched', async (t) => {
  const crlOnly = buildConfig(header({ mode: 'hard_fail', issuer_file: 'ca.crt', ocsp: { enabled: false }, crl: { files: ['crl.der'] } }), { env: {}, baseDir: dir });
  const r = crlOnly.clientCertificate.revocation;
  t.same(r.mode === 'off' ? undefined : r.order, ['crl']);
  t.equal(r.mode === 'off' ? undefined : r.ocsp, undefined);
  t.same(r.mode === 'off' ? undefined : r.crl?.files.map((f) => f.contents.equals(crl.der)), [true]);
  t.ok(crlOnly.files.includes(join(dir, 'crl.der')));
  t.same(problems(header({ mode: 'hard_fail', issuer_file: 'ca.crt', ocsp: { enabled: false }, order: ['ocsp'] })), [
    'client_certificate.revocation.order: names no enabled source (ocsp.enabled and crl.enabled are false and true)',
  ]);
  t.same(problems(header({ mode: 'off', crl: { files: ['missing.crl'] } })), [`client_certificate.revocation.crl.files[0]: cannot read ${join(dir, 'missing.crl')}: ENOENT`], 'a named file is read whatever the mode');
});

t.test('bounds and types', async (t) => {
  t.same(problems(header({ ocsp: { max_cache_seconds: 0 } })), ['client_certificate.revocation.ocsp.max_cache_seconds: must be an integer from 1 to 604800']);
  t.same(problems(header({ ocsp: { url: 'ftp://x' } })), ['client_certificate.revocation.ocsp.url: "ftp://x" is not an http(s) URL']);
  t.same(problems(header({ crl: { urls: ['nope'] } })), ['client_certificate.revocation.crl.urls[0]: "nope" is not an http(s) URL']);
  t.same(problems(header({ order: ['ocsp', 'ocsp'] })), ['client_certificate.revocation.order: must not list "ocsp" twice']);
  t.same(problems(header({ order: ['ldap'] })), ['client_certificate.revocation.order[0]: must be one of ocsp, crl (got "ldap")']);
  t.same(problems(header({ clock_skew_seconds: -1 })), ['client_certificate.revocation.clock_skew_seconds: must be an integer from 0 to 3600']);
});

t.test('psd2_roles: known roles only, and never on a route that checks no certificate', async (t) => {
  const doc = (route: Record<string, unknown>) => ({ upstreams: { u: 'http://127.0.0.1:1' }, routes: [{ name: 'r', path_prefix: '/', upstream: 'u', ...route }] });
  t.same(problems(doc({ auth: 'mtls', psd2_roles: ['PSP_AI', 'PSP_PI'] })), []);
  t.same(problems(doc({ auth: 'mtls', psd2_roles: ['PSP_XX'] })), ['routes[0].psd2_roles[0]: must be one of PSP_AS, PSP_PI, PSP_AI, PSP_IC (got "PSP_XX")']);
  t.same(problems(doc({ auth: 'mtls', psd2_roles: ['PSP_AI', 'PSP_AI'] })), ['routes[0].psd2_roles: must not list "PSP_AI" twice']);
  t.same(problems(doc({ auth: 'none', psd2_roles: ['PSP_AI'] })), ['routes[0].psd2_roles: needs a client certificate on every request: only with auth: certificate_bound_token or mtls, not none']);
  t.same(problems({ ...doc({ auth: 'none' }), identity_headers: { psd2_roles: 'bad header' } }), ['identity_headers.psd2_roles: "bad header" is not a valid header name']);
});
