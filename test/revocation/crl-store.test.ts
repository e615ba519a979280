import t, { type Test } from 'tap';
import { AsnSerializer } from '@peculiar/asn1-schema';
import { CRLDistributionPoints, DistributionPoint, DistributionPointName, GeneralName, IssuingDistributionPoint, id_ce_cRLDistributionPoints, id_ce_issuingDistributionPoint } from '@peculiar/asn1-x509';
import type { X509Certificate } from 'node:crypto';
import { createCrlStore, MAX_DISCOVERED_URLS, refreshDelayMs, type CrlStore, type CrlStoreOptions, type CrlVerdict } from '../../src/revocation/crl-store.js';
import { RevocationError } from '../../src/revocation/types.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';
import { deadUrl, extension, leafWithExtensions, loadLog, signCrl, startCrlServer, type LoadLog } from './fixtures/crl-fixtures.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const server = await startCrlServer();
t.teardown(() => server.close());
const ca = createOpensslCa('CRL Store CA');
const other = createOpensslCa('Other Store CA');
t.teardown(() => [ca, other].forEach((c) => c.remove()));

const SECOND = 1000;
const DAY = 86_400 * SECOND;
const base = Math.floor(Date.now() / SECOND) * SECOND;
const revoked = ca.issue('Revoked TPP', { crlUrl: server.url('/dp.crl') });
const good = ca.issue('Good TPP', { crlUrl: server.url('/dp.crl') });
const plain = ca.issue('No CRLDP TPP');
const stranger = other.issue('Stranger');
const beforeRevocation = ca.crl({ lastUpdate: new Date(base - 3600 * SECOND), nextUpdate: new Date(base + DAY) });
ca.revoke(revoked);
const crl = ca.crl({ lastUpdate: new Date(base - 60 * SECOND), nextUpdate: new Date(base + DAY) });
const staleCrl = ca.crl({ lastUpdate: new Date(base - 2 * DAY), nextUpdate: new Date(base - DAY) });
const otherCrl = other.crl();
server.set('/dp.crl', { body: crl.der });

const times = { thisUpdate: base - 60 * SECOND, nextUpdate: base + DAY };
const GOOD: CrlVerdict = { status: 'good', ...times };
const REVOKED: CrlVerdict = { status: 'revoked', ...times };

/** A store with these options (no files, no URLs, the CA as issuer, refreshing every hour), closed at teardown. */
function storeFor(t: Test, options: Partial<CrlStoreOptions> = {}): CrlStore {
  const store = createCrlStore({ files: [], urls: [], issuers: [ca.x509, other.x509], refreshSeconds: 3600, timeoutMs: 10_000, ...options });
  t.teardown(() => store.close());
  return store;
}
const settled = (verdict: CrlVerdict | Promise<CrlVerdict>): Promise<CrlVerdict> => Promise.resolve(verdict);
const isPromise = (verdict: CrlVerdict | Promise<CrlVerdict>): boolean => verdict instanceof Promise;
/** A verdict that must have been given synchronously. */
function sync(verdict: CrlVerdict | Promise<CrlVerdict>): CrlVerdict {
  if (verdict instanceof Promise) throw new Error('expected a synchronous verdict');
  return verdict;
}
/** Resolves at the first load of `source` after which `condition` holds. */
const until = (log: LoadLog, source: string, condition: () => boolean): Promise<string> => log.next(source, () => condition());

t.test('refreshDelayMs: refreshSeconds, a margin before nextUpdate, a bounded backoff', async (t) => {
  const hour = 3600 * SECOND;
  t.equal(refreshDelayMs(hour, 0), hour, 'no nextUpdate: refreshSeconds');
  t.equal(refreshDelayMs(hour, 0, 100 * SECOND), 90 * SECOND, '10 % of the time left before nextUpdate');
  t.equal(refreshDelayMs(hour, 0, 5 * SECOND), 4 * SECOND, 'a margin of at least 1 s');
  t.equal(refreshDelayMs(hour, 0, 500), SECOND, 'never sooner than 1 s');
  t.equal(refreshDelayMs(hour, 0, 2 * hour), hour, 'refreshSeconds when nextUpdate is far');
  t.equal(refreshDelayMs(7 * 24 * hour, 0, 4 * 24 * hour), 4 * 24 * hour - 5 * 60 * SECOND, 'a margin of at most 5 min');
  t.same([1, 2, 3, 4].map((failures) => refreshDelayMs(hour, failures, 100 * SECOND)), [1, 2, 4, 8].map((s) => s * SECOND), 'after failures: 1 s doubling');
  t.equal(refreshDelayMs(hour, 40), hour, 'up to refreshSeconds');
  t.equal(refreshDelayMs(hour, 40, 100 * SECOND), 90 * SECOND, 'and still before the nextUpdate of the CRL held');
  t.equal(refreshDelayMs(hour, 3, -5 * SECOND), 4 * SECOND, 'once that has passed, the backoff alone');
  t.equal(refreshDelayMs(50, 3), 50, 'a refreshSeconds below 1 s bounds the backoff too');
  t.equal(refreshDelayMs(1e12, 0), 2 ** 31 - 1, 'never beyond what setTimeout can wait');
});

t.test('files, PEM and DER: read at start, revoked and good', async (t) => {
  const log = loadLog();
  const store = storeFor(t, {
    files: [
      { path: '/etc/certbound/ca.pem', contents: Buffer.from(crl.pem) },
      { path: '/etc/certbound/ca.der', contents: crl.der },
      { path: '/etc/certbound/ca.der', contents: Buffer.from('ignored: the same path twice') },
      { path: '/etc/certbound/garbage.crl', contents: Buffer.from('not a CRL') },
      { path: '/etc/certbound/other.crl', contents: otherCrl.der },
    ],
    issuers: [ca.x509],
    useDistributionPoints: false,
    onLoad: log.onLoad,
  });
  t.equal(store.ready(), false, 'not before start()');
  store.start();
  store.start();
  t.equal(store.ready(), true, 'files only: ready at once');
  t.same(log.events, [
    { source: '/etc/certbound/ca.pem', outcome: 'ok' },
    { source: '/etc/certbound/ca.der', outcome: 'ok' },
    { source: '/etc/certbound/garbage.crl', outcome: 'malformed' },
    { source: '/etc/certbound/other.crl', outcome: 'wrong_certificate' },
  ]);
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED);
  t.strictSame(store.check(good.x509, ca.x509), GOOD);
  t.strictSame(store.check(plain.x509, ca.x509), GOOD);
  t.strictSame(store.check(stranger.x509, other.x509), { status: 'unavailable', why: 'no CRL for this issuer' });
  t.strictSame(store.sources(), [
    { source: '/etc/certbound/ca.pem', nextUpdate: times.nextUpdate, entries: 1 },
    { source: '/etc/certbound/ca.der', nextUpdate: times.nextUpdate, entries: 1 },
    { source: '/etc/certbound/garbage.crl', entries: 0 },
    { source: '/etc/certbound/other.crl', entries: 0 },
  ]);
});

t.test('past nextUpdate: a listed serial is still revoked, any other is unavailable', async (t) => {
  let now = base;
  const store = storeFor(t, { files: [{ path: 'ca.pem', contents: Buffer.from(crl.pem) }], useDistributionPoints: false, clock: () => now });
  store.start();
  t.strictSame(store.check(good.x509, ca.x509), GOOD);
  now = times.nextUpdate;
  t.strictSame(store.check(good.x509, ca.x509), { status: 'unavailable', why: 'CRL past nextUpdate' }, 'at nextUpdate');
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED);

  const old = storeFor(t, { files: [{ path: 'stale.pem', contents: Buffer.from(staleCrl.pem) }], useDistributionPoints: false });
  old.start();
  t.strictSame(old.check(good.x509, ca.x509), { status: 'unavailable', why: 'CRL past nextUpdate' });
  t.strictSame(old.check(revoked.x509, ca.x509), { status: 'revoked', thisUpdate: base - 2 * DAY, nextUpdate: base - DAY });
});

t.test('of several fresh CRLs, good cites the newest', async (t) => {
  const older = { path: 'older.pem', contents: beforeRevocation.der };
  const newer = { path: 'newer.pem', contents: crl.der };
  for (const files of [[older, newer], [newer, older]]) {
    const store = storeFor(t, { files, useDistributionPoints: false });
    store.start();
    t.strictSame(store.check(good.x509, ca.x509), GOOD, files.map((f) => f.path).join(', '));
    t.strictSame(store.check(revoked.x509, ca.x509), REVOKED, 'listed in one of them: revoked');
  }
});

t.test('a configured URL, fetched in the background', async (t) => {
  server.set('/configured.crl', { body: crl.der });
  const log = loadLog();
  const url = server.url('/configured.crl');
  const store = storeFor(t, { urls: [url, url], useDistributionPoints: false, onLoad: log.onLoad });
  const loaded = log.next(url);
  store.start();
  t.equal(store.ready(), false, 'not before the fetch is done');
  t.strictSame(store.check(good.x509, ca.x509), { status: 'unavailable', why: 'no CRL for this issuer' }, 'nothing yet');
  t.equal(await loaded, 'ok');
  t.equal(store.ready(), true);
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED, 'synchronous once loaded');
  t.strictSame(store.check(good.x509, ca.x509), GOOD);
  t.equal(server.count('/configured.crl'), 1, 'a URL configured twice is fetched once');
  t.strictSame(store.sources(), [{ source: url, nextUpdate: times.nextUpdate, entries: 1 }]);
});

t.test("the leaf's distribution point: fetched on first check, single flight", async (t) => {
  const log = loadLog();
  const store = storeFor(t, { onLoad: log.onLoad });
  store.start();
  t.equal(store.ready(), true, 'nothing configured');
  const before = server.count('/dp.crl');
  const first = store.check(revoked.x509, ca.x509);
  const second = store.check(good.x509, ca.x509);
  t.equal(isPromise(first), true, 'a Promise: the distribution point was never fetched');
  t.equal(isPromise(second), true, 'the concurrent caller waits too');
  t.strictSame(await settled(first), REVOKED);
  t.strictSame(await settled(second), GOOD);
  t.equal(server.count('/dp.crl') - before, 1, 'one HTTP request for both');
  t.same(log.events, [{ source: server.url('/dp.crl'), outcome: 'ok' }]);
  const third = store.check(good.x509, ca.x509);
  t.equal(isPromise(third), false, 'synchronous once fetched');
  t.strictSame(third, GOOD);
  t.strictSame(store.check(plain.x509, ca.x509), GOOD, 'a CRL fetched for one leaf applies to every leaf of its issuer');
  t.strictSame(store.sources(), [{ source: server.url('/dp.crl'), nextUpdate: times.nextUpdate, entries: 1 }]);
});

t.test('a distribution point that is also configured is fetched once', async (t) => {
  const log = loadLog();
  const url = server.url('/dp.crl');
  const before = server.count('/dp.crl');
  const store = storeFor(t, { urls: [url], onLoad: log.onLoad });
  store.start();
  const verdict = store.check(good.x509, ca.x509);
  t.equal(isPromise(verdict), true, 'the configured fetch is still under way');
  t.strictSame(await settled(verdict), GOOD);
  t.equal(server.count('/dp.crl') - before, 1);
  t.equal(store.sources().length, 1);
});

t.test('server down, HTTP errors, a CRL of another CA', async (t) => {
  const dead = await deadUrl('/dead.crl');
  const log = loadLog();
  const configured = storeFor(t, { urls: [dead], useDistributionPoints: false, onLoad: log.onLoad });
  const failed = log.next(dead);
  configured.start();
  t.equal(await failed, 'unavailable');
  t.equal(configured.ready(), true, 'tried counts, success or not');
  t.strictSame(configured.check(good.x509, ca.x509), { status: 'unavailable', why: 'fetch failed: unavailable' });

  const leafOnDead = ca.issue('Dead CRLDP TPP', { crlUrl: dead });
  const store = storeFor(t);
  store.start();
  t.strictSame(await settled(store.check(leafOnDead.x509, ca.x509)), { status: 'unavailable', why: 'fetch failed: unavailable' });
  t.strictSame(store.check(leafOnDead.x509, ca.x509), { status: 'unavailable', why: 'fetch failed: unavailable' }, 'tried: synchronous now');
  t.strictSame(store.check(plain.x509, ca.x509), { status: 'unavailable', why: 'no CRL for this issuer' }, "another leaf's failed distribution point is not cited");

  server.set('/other.crl', { body: otherCrl.der });
  const wrong = ca.issue('Wrong CRL TPP', { crlUrl: server.url('/other.crl') });
  t.strictSame(await settled(store.check(wrong.x509, ca.x509)), { status: 'unavailable', why: 'no CRL for this issuer' }, "another CA's CRL is read, but not for this issuer");
  const narrow = storeFor(t, { issuers: [ca.x509] });
  t.strictSame(await settled(narrow.check(wrong.x509, ca.x509)), { status: 'unavailable', why: 'fetch failed: wrong_certificate' }, 'an issuer not configured');

  server.set('/503.crl', { body: Buffer.from('busy'), status: 503 });
  const busy = ca.issue('Busy CRLDP TPP', { crlUrl: server.url('/503.crl') });
  t.strictSame(await settled(store.check(busy.x509, ca.x509)), { status: 'unavailable', why: 'fetch failed: unavailable' });
});

t.test('refresh picks up a newly revoked serial', async (t) => {
  const own = createOpensslCa('Refresh CA');
  t.teardown(() => own.remove());
  const first = own.issue('First');
  const second = own.issue('Second');
  own.revoke(first);
  server.set('/refresh.crl', { body: own.crl().der });
  const log = loadLog();
  const url = server.url('/refresh.crl');
  const store = storeFor(t, { urls: [url], issuers: [own.x509], refreshSeconds: 0.05, useDistributionPoints: false, onLoad: log.onLoad });
  const loaded = log.next(url);
  store.start();
  t.equal(await loaded, 'ok');
  t.equal(sync(store.check(first.x509, own.x509)).status, 'revoked');
  t.equal(sync(store.check(second.x509, own.x509)).status, 'good');
  own.revoke(second);
  server.set('/refresh.crl', { body: own.crl().der });
  await until(log, url, () => store.sources()[0]?.entries === 2);
  t.equal(sync(store.check(second.x509, own.x509)).status, 'revoked', 'after a refresh');
  t.ok(server.count('/refresh.crl') >= 2);
  t.ok(log.events.every((e) => e.outcome === 'ok'));
});

t.test('a failed refresh keeps the last good CRL until its nextUpdate', async (t) => {
  server.set('/flaky.crl', { body: crl.der });
  const log = loadLog();
  const url = server.url('/flaky.crl');
  let now = base;
  const store = storeFor(t, { urls: [url], refreshSeconds: 0.05, useDistributionPoints: false, onLoad: log.onLoad, clock: () => now });
  const loaded = log.next(url);
  store.start();
  t.equal(await loaded, 'ok');
  server.set('/flaky.crl', { body: Buffer.from('down'), status: 503 });
  t.equal(await log.next(url, (outcome) => outcome !== 'ok'), 'unavailable');
  t.equal(await log.next(url), 'unavailable', 'and it keeps trying');
  t.strictSame(store.check(good.x509, ca.x509), GOOD, 'the last good CRL still answers');
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED);
  t.strictSame(store.sources(), [{ source: url, nextUpdate: times.nextUpdate, entries: 1 }]);
  now = times.nextUpdate + 1;
  t.strictSame(store.check(good.x509, ca.x509), { status: 'unavailable', why: 'CRL past nextUpdate' }, 'then it is stale');
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED, 'but still says who it lists');
  server.set('/flaky.crl', { body: crl.der });
  t.equal(await log.next(url, (outcome) => outcome === 'ok'), 'ok', 'back');
});

t.test('no rollback to an older CRL', async (t) => {
  server.set('/rollback.crl', { body: crl.der });
  const log = loadLog();
  const url = server.url('/rollback.crl');
  const store = storeFor(t, { urls: [url], refreshSeconds: 0.05, useDistributionPoints: false, onLoad: log.onLoad });
  const loaded = log.next(url);
  store.start();
  t.equal(await loaded, 'ok');
  server.set('/rollback.crl', { body: beforeRevocation.der });
  t.equal(await log.next(url, (outcome) => outcome !== 'ok'), 'stale', 'an older CRL is refused');
  t.strictSame(store.check(revoked.x509, ca.x509), REVOKED, 'the newer one still answers');
  t.strictSame(store.sources(), [{ source: url, nextUpdate: times.nextUpdate, entries: 1 }]);
});

t.test('CRLs served stale or without nextUpdate', async (t) => {
  server.set('/stale.crl', { body: staleCrl.der });
  server.set('/open.crl', { body: await signCrl(ca, { thisUpdate: new Date(base), entries: [{ serial: revoked.serial }] }) });
  const log = loadLog();
  const urls = [server.url('/stale.crl'), server.url('/open.crl')];
  const store = storeFor(t, { urls: urls.slice(0, 1), useDistributionPoints: false, onLoad: log.onLoad, refreshSeconds: 0.05 });
  const loaded = log.next(urls[0] ?? '');
  store.start();
  t.equal(await loaded, 'ok', 'a stale CRL is still held');
  t.strictSame(store.check(good.x509, ca.x509), { status: 'unavailable', why: 'CRL past nextUpdate' });
  t.equal(await log.next(urls[0] ?? ''), 'ok', 'and fetched again soon');

  const open = storeFor(t, { urls: urls.slice(1), useDistributionPoints: false, onLoad: log.onLoad });
  const opened = log.next(urls[1] ?? '');
  open.start();
  t.equal(await opened, 'ok');
  t.strictSame(open.check(good.x509, ca.x509), { status: 'good', thisUpdate: base }, 'no nextUpdate: good without one');
  t.strictSame(open.check(revoked.x509, ca.x509), { status: 'revoked', thisUpdate: base });
  t.strictSame(open.sources(), [{ source: urls[1], entries: 1 }]);
});

t.test('a partitioned CRL covers only the leaves of its distribution point', async (t) => {
  const partition = server.url('/partition-1.crl');
  const idp = new IssuingDistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: partition })] }) });
  const inPartition = ca.issue('Partition 1 TPP', { crlUrl: partition });
  const revokedInPartition = ca.issue('Partition 1 revoked TPP', { crlUrl: partition });
  const elsewhere = ca.issue('Partition 2 TPP', { crlUrl: server.url('/partition-2.crl') });
  server.set('/partition-1.crl', {
    body: await signCrl(ca, { nextUpdate: new Date(base + DAY), entries: [{ serial: revokedInPartition.serial }], extensions: [extension(id_ce_issuingDistributionPoint, true, AsnSerializer.serialize(idp))] }),
  });
  const store = storeFor(t);
  store.start();
  t.equal((await settled(store.check(revokedInPartition.x509, ca.x509))).status, 'revoked');
  t.equal((await settled(store.check(inPartition.x509, ca.x509))).status, 'good');
  t.strictSame(await settled(store.check(elsewhere.x509, ca.x509)), { status: 'unavailable', why: 'fetch failed: unavailable' }, 'its own partition is not served');

  const log = loadLog();
  const configured = storeFor(t, { urls: [partition], useDistributionPoints: false, onLoad: log.onLoad });
  const loaded = log.next(partition);
  configured.start();
  t.equal(await loaded, 'ok');
  t.equal(sync(configured.check(inPartition.x509, ca.x509)).status, 'good', 'configured, not fetched as a distribution point: the same scope');
  t.equal(sync(configured.check(revokedInPartition.x509, ca.x509)).status, 'revoked');
  t.strictSame(configured.check(elsewhere.x509, ca.x509), { status: 'unavailable', why: 'no CRL for this issuer' }, 'another partition');
  t.strictSame(configured.check(plain.x509, ca.x509), { status: 'unavailable', why: 'no CRL for this issuer' }, 'a leaf naming no distribution point');
});

t.test(`at most ${MAX_DISCOVERED_URLS} distribution points are kept`, async (t) => {
  const leaves = await Promise.all(
    Array.from({ length: MAX_DISCOVERED_URLS + 1 }, (_, i) =>
      leafWithExtensions(ca, [
        extension(
          id_ce_cRLDistributionPoints,
          false,
          AsnSerializer.serialize(new CRLDistributionPoints([new DistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: server.url(`/flood/${i}.crl`) })] }) })])),
        ),
      ]),
    ),
  );
  const store = storeFor(t);
  store.start();
  const verdicts = await Promise.all(leaves.map((leaf) => settled(store.check(leaf, ca.x509))));
  t.ok(verdicts.every((v) => v.status === 'unavailable'), 'all 404');
  t.equal(store.sources().length, MAX_DISCOVERED_URLS, 'the bound');
  t.notOk(store.sources().some((s) => s.source === server.url('/flood/0.crl')), 'the least recently asked is gone');
  const first = leaves[0] as X509Certificate;
  const again = store.check(first, ca.x509);
  t.equal(isPromise(again), true, 'and is fetched anew when asked again');
  await again;
  t.equal(server.count('/flood/0.crl'), 2);
  t.equal(store.sources().length, MAX_DISCOVERED_URLS);
});

t.test('close(): timers cleared, fetches aborted, no fetch after', async (t) => {
  server.set('/hang.crl', 'hang');
  const hangingLeaf = ca.issue('Hanging CRLDP TPP', { crlUrl: server.url('/hang.crl') });
  const laterLeaf = ca.issue('Later CRLDP TPP', { crlUrl: server.url('/later.crl') });
  const log = loadLog();
  const store = createCrlStore({ files: [], urls: [server.url('/hang.crl')], issuers: [ca.x509], refreshSeconds: 3600, timeoutMs: 60_000, onLoad: log.onLoad });
  store.start();
  const pending = store.check(hangingLeaf.x509, ca.x509);
  t.equal(isPromise(pending), true);
  store.close();
  store.close();
  t.strictSame(await settled(pending), { status: 'unavailable', why: 'fetch failed: unavailable' }, 'an aborted fetch');
  t.same(log.events, [], 'an abort by close() is no load to report');
  t.equal(store.ready(), true);
  t.strictSame(store.check(laterLeaf.x509, ca.x509), { status: 'unavailable', why: 'fetch failed: unavailable' }, 'synchronous after close');
  t.equal(server.count('/later.crl'), 0, 'nothing fetched after close');
  store.start();
  t.equal(server.count('/later.crl'), 0);

  const never = createCrlStore({ files: [{ path: 'ca.pem', contents: crl.der }], urls: [], issuers: [ca.x509], refreshSeconds: 1, timeoutMs: 1 });
  never.close();
  never.start();
  t.equal(never.ready(), false, 'start() after close() does nothing');
});

t.test('check() never throws; a throwing onLoad changes nothing', async (t) => {
  const broken = (base: X509Certificate, error: unknown): X509Certificate =>
    Object.create(base, {
      serialNumber: {
        get() {
          throw error;
        },
      },
    }) as X509Certificate;
  const store = storeFor(t, {
    files: [{ path: 'ca.pem', contents: crl.der }],
    onLoad: () => {
      throw new Error('metrics are down');
    },
  });
  t.doesNotThrow(() => store.start());
  t.strictSame(store.check(broken(plain.x509, new RevocationError('malformed', 'no serial')), ca.x509), { status: 'unavailable', why: 'error: malformed' });
  t.strictSame(store.check(broken(plain.x509, new TypeError('no serial')), ca.x509), { status: 'unavailable', why: 'error: malformed' });
  server.set('/broken.crl', { body: crl.der });
  const leaf = ca.issue('Broken TPP', { crlUrl: server.url('/broken.crl') });
  const verdict = store.check(broken(leaf.x509, new TypeError('no serial')), ca.x509);
  t.equal(isPromise(verdict), true);
  t.strictSame(await settled(verdict), { status: 'unavailable', why: 'error: malformed' });
  t.strictSame(store.check(plain.x509, ca.x509), GOOD);
});
