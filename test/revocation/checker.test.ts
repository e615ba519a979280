// The revocation stage's cache, single flight, background refresh, source order and modes,
// against a fake OCSP responder (real signed responses, counted) and real CRLs, on a test clock.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ClientCertificate } from '../../src/certificate/types.js';
import type { RevocationConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createRevocationChecker, UNAVAILABLE_TTL_MS } from '../../src/revocation/checker.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';
import { parseRequest, signedResponse, signerOf, startFakeResponder, type Reply } from './fixtures/fake-ocsp.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('Checker CA');
const signer = signerOf(ca.pem, readFileSync(ca.keyPath, 'utf8'));
const leaf = ca.issue('tpp-a');
const other = ca.issue('tpp-b');
const revokedLeaf = ca.issue('tpp-revoked');
ca.revoke(revokedLeaf);
const crl = ca.crl();
t.teardown(() => ca.remove());

type Enabled = Exclude<RevocationConfig, { mode: 'off' }>;
const issuers = { path: ca.certPath, contents: Buffer.from(ca.pem), certificates: [ca.x509] };

/** A responder that answers `status` for every certificate, after `delayMs`. */
async function responder(status: () => 'good' | 'revoked' | 'unknown' | 'down', delayMs = 0) {
  const r = await startFakeResponder((exchange): Reply => {
    const s = status();
    if (s === 'down') return { status: 500 };
    // Answers about the certificate asked for: the request's own CertID.
    const certId = parseRequest(exchange.der).certIds[0];
    if (!certId) return { status: 400 };
    return { delayMs, body: signedResponse({ signer, responses: [{ certId, status: s, nextUpdate: new Date(Date.now() + 3600_000) }] }) };
  });
  t.teardown(() => r.close());
  return r;
}
function checker(config: Partial<Enabled> & { url?: string }, clock: { now: number }) {
  const metrics = createMetrics({ defaultMetrics: false });
  const { url, ...rest } = config;
  const c = createRevocationChecker(
    {
      mode: 'hard_fail',
      issuers,
      ocsp: { timeoutMs: 2000, nonce: false, maxCacheSeconds: 100, ...(url ? { url } : {}) },
      order: ['ocsp'],
      clockSkewSeconds: 60,
      retryAfterSeconds: 5,
      cacheEntries: 1000,
      ...rest,
    },
    { metrics, clock: () => clock.now },
  );
  t.teardown(() => c.close());
  return { c, metrics };
}
/** Waits until `done()` holds (a background lookup has been answered and stored): no fixed sleep. */
async function until(done: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('condition not reached within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await new Promise((resolve) => setImmediate(resolve));
}
const counted = async (metrics: ReturnType<typeof createMetrics>, series: string, n: number): Promise<boolean> =>
  new RegExp(`certbound_revocation_checks_total\\{${series}\\} ${n}\\b`).test(await metrics.registry.metrics());

const code = async (check: () => void | Promise<void>): Promise<string> => {
  try {
    await check();
    return 'passed';
  } catch (e) {
    return e instanceof GatewayError ? e.code : String(e);
  }
};

t.test('single flight, then the cached answer synchronously; refreshed in the background before it expires', async (t) => {
  const r = await responder(() => 'good');
  const clock = { now: Date.now() };
  const { c, metrics } = checker({ url: r.url }, clock);
  const cert = new ClientCertificate(leaf.x509);
  const first = [c.check(cert), c.check(cert), c.check(new ClientCertificate(leaf.x509))];
  t.ok(first.every((p) => p instanceof Promise), 'a first use waits for the lookup');
  t.same(await Promise.all(first.map((p) => code(() => p))), ['passed', 'passed', 'passed']);
  t.equal(r.exchanges.length, 1, 'three concurrent first uses, one OCSP call');
  t.equal(c.check(cert), undefined, 'cached: answered synchronously, no promise');
  t.equal(r.exchanges.length, 1);
  clock.now += 81_000; // past 80 % of max_cache_seconds (100 s)
  t.equal(c.check(cert), undefined, 'still answered from the cache...');
  t.equal(c.check(cert), undefined, '...by every request while the refresh runs');
  await until(() => counted(metrics, 'source="ocsp",result="good"', 2));
  t.equal(r.exchanges.length, 2, '...and one lookup started in the background');
  clock.now += 90_000; // past the first answer's expiry (100 s), within the refreshed one's
  t.equal(c.check(cert), undefined, 'the refreshed answer holds from its own lookup on');
  t.equal(r.exchanges.length, 2);
});

t.test('revoked → certificate_revoked; an answer expires after max_cache_seconds and is looked up again', async (t) => {
  let status: 'good' | 'revoked' = 'good';
  const r = await responder(() => status);
  const clock = { now: Date.now() };
  const { c } = checker({ url: r.url }, clock);
  const cert = new ClientCertificate(leaf.x509);
  t.equal(await code(() => c.check(cert)), 'passed');
  status = 'revoked';
  t.equal(await code(() => c.check(cert)), 'passed', 'within max_cache_seconds the cached good holds');
  clock.now += 101_000;
  const again = c.check(cert);
  t.ok(again instanceof Promise, 'expired: the request waits for a new lookup');
  t.equal(await code(() => again), 'certificate_revoked');
  t.equal(await code(() => c.check(cert)), 'certificate_revoked', 'and the revoked answer is cached');
});

t.test('unknown and errors fall through to the next source; a definite answer is final', async (t) => {
  const unknown = await responder(() => 'unknown');
  const clock = { now: Date.now() };
  const crlFiles = [{ path: crl.path, contents: crl.der }];
  const crlConfig = { urls: [], files: crlFiles, useDistributionPoints: false, refreshSeconds: 3600, timeoutMs: 2000 };
  const { c, metrics } = checker({ url: unknown.url, order: ['ocsp', 'crl'], crl: crlConfig }, clock);
  c.start();
  t.equal(await code(() => c.check(new ClientCertificate(revokedLeaf.x509))), 'certificate_revoked', 'OCSP unknown → the CRL lists it');
  t.equal(await code(() => c.check(new ClientCertificate(other.x509))), 'passed', 'OCSP unknown → the CRL does not list it');
  const text = await metrics.registry.metrics();
  t.match(text, /certbound_revocation_checks_total\{source="ocsp",result="unknown"\} 2/);
  t.match(text, /certbound_revocation_checks_total\{source="crl",result="revoked"\} 1/);
  t.match(text, /certbound_revocation_checks_total\{source="crl",result="good"\} 1/);

  const good = await responder(() => 'good');
  const first = checker({ url: good.url, order: ['ocsp', 'crl'], crl: crlConfig }, clock).c;
  first.start();
  t.equal(await code(() => first.check(new ClientCertificate(revokedLeaf.x509))), 'passed', 'OCSP says good: final, the CRL is not asked');
  const crlFirst = checker({ url: good.url, order: ['crl', 'ocsp'], crl: crlConfig }, clock).c;
  crlFirst.start();
  t.throws(() => crlFirst.check(new ClientCertificate(revokedLeaf.x509)), { code: 'certificate_revoked' }, 'order: [crl, ocsp]: the loaded CRL answers first, synchronously');
  t.equal(crlFirst.check(new ClientCertificate(other.x509)), undefined, 'good, synchronously too');
});

t.test('no answer: hard_fail refuses with Retry-After, soft_fail passes; "no answer" is remembered for 5 s', async (t) => {
  const r = await responder(() => 'down');
  const clock = { now: Date.now() };
  const hard = checker({ url: r.url, retryAfterSeconds: 7 }, clock).c;
  const cert = new ClientCertificate(leaf.x509);
  try {
    await hard.check(cert);
    t.fail('passed');
  } catch (e) {
    t.equal((e as GatewayError).code, 'revocation_unavailable');
    t.equal((e as GatewayError).details.retryAfter, 7);
  }
  t.equal(r.exchanges.length, 1);
  t.equal(await code(() => hard.check(cert)), 'revocation_unavailable');
  t.equal(r.exchanges.length, 1, 'remembered: the responder is not asked again at once');
  clock.now += UNAVAILABLE_TTL_MS + 1;
  t.equal(await code(() => hard.check(cert)), 'revocation_unavailable');
  t.equal(r.exchanges.length, 2, 'asked again once the 5 s have passed');

  const { c: soft, metrics } = checker({ url: r.url, mode: 'soft_fail' }, clock);
  t.equal(await code(() => soft.check(cert)), 'passed');
  t.equal(await code(() => soft.check(cert)), 'passed');
  t.match(await metrics.registry.metrics(), /certbound_revocation_unavailable_total\{action="allowed"\} 2/);
});

t.test('a background lookup that finds no answer keeps the answer that still holds', async (t) => {
  let status: 'good' | 'down' = 'good';
  const r = await responder(() => status);
  const clock = { now: Date.now() };
  const { c, metrics } = checker({ url: r.url }, clock);
  const cert = new ClientCertificate(leaf.x509);
  t.equal(await code(() => c.check(cert)), 'passed');
  status = 'down';
  clock.now += 81_000;
  t.equal(c.check(cert), undefined);
  await until(() => counted(metrics, 'source="ocsp",result="error"', 1));
  t.equal(r.exchanges.length, 2, 'the background lookup ran and failed');
  t.equal(c.check(cert), undefined, 'the good answer still holds until it expires');
  clock.now += 20_000;
  t.equal(await code(() => c.check(cert)), 'revocation_unavailable', 'once expired, no answer is no answer');
});

t.test('a certificate no configured issuer issued has no status', async (t) => {
  const stranger = createOpensslCa('Stranger CA');
  t.teardown(() => stranger.remove());
  const r = await responder(() => 'good');
  const { c } = checker({ url: r.url }, { now: Date.now() });
  t.equal(await code(() => c.check(new ClientCertificate(stranger.issue('x').x509))), 'revocation_unavailable');
  t.equal(r.exchanges.length, 0, 'nothing asked');
});
