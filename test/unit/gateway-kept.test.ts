// What a reload keeps: a gateway compiled with an unchanged revocation configuration reuses the
// previous one's checker (its status cache and CRLs); ownership moves at the swap, so the part is
// closed only with the last gateway that uses it.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../../src/config/load.js';
import { compileGateway, takeOver } from '../../src/gateway.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createGenerations } from '../../src/server/generations.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('Kept CA');
t.teardown(() => ca.remove());
const dir = mkdtempSync(join(tmpdir(), 'certbound-kept-'));
writeFileSync(join(dir, 'ca.crt'), ca.pem);
const doc = (revocation: Record<string, unknown>) => ({
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1'], verify: { ca_file: 'ca.crt' }, revocation },
  upstreams: { u: 'http://127.0.0.1:1' },
  routes: [{ name: 'token', path_prefix: '/token', upstream: 'u', auth: 'mtls' }],
});
const metrics = createMetrics({ defaultMetrics: false });
const compile = (revocation: Record<string, unknown>, previous?: ReturnType<typeof compileGateway>) =>
  compileGateway(buildConfig(doc(revocation), { env: {}, baseDir: dir }), { metrics, ...(previous ? { previous } : {}) });
const hardFail = { mode: 'hard_fail', ocsp: { url: 'http://127.0.0.1:1' } };

t.test('an unchanged revocation configuration keeps the checker; a changed one builds a new one', async (t) => {
  const first = compile(hardFail);
  t.ok(first.revocation, 'mode hard_fail: a checker');
  const same = compile(hardFail, first);
  t.equal(same.revocation, first.revocation, 'kept');
  const changed = compile({ ...hardFail, retry_after_seconds: 9 }, first);
  t.not(changed.revocation, first.revocation, 'a changed key: a new checker');
  const off = compile({ mode: 'off' }, first);
  t.equal(off.revocation, undefined);
  await Promise.all([changed.close(), off.close()]);

  // Before the swap the kept checker is still the first gateway's: an abandoned reload closes nothing of it.
  await same.close();
  t.equal(metrics.revocationViews.size, 1, 'the kept checker is still open (its view still registered)');
  const next = compile(hardFail, first);
  takeOver(next, first);
  await first.close();
  t.equal(metrics.revocationViews.size, 1, 'closing the previous gateway after the swap leaves it open');
  await next.close();
  t.equal(metrics.revocationViews.size, 0, 'closed with its last owner');
});

t.test('generations: a chain of reloads that keeps the checker closes it only with the last gateway', async (t) => {
  const a = compile(hardFail);
  const generations = createGenerations(a);
  const held = generations.hold(); // a request still running on a
  const b = compile(hardFail, a);
  generations.swap(b);
  const c = compile(hardFail, b);
  generations.swap(c);
  generations.release(held); // a closes now
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(metrics.revocationViews.size, 1, 'c owns it now');
  t.equal(c.revocation, a.revocation);
  await generations.closeAll();
  t.equal(metrics.revocationViews.size, 0);
});
