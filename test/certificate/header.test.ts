import t from 'tap';
import { createHeaderCertificateReader } from '../../src/certificate/header.js';
import type { ClientCertificateConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { PROXY, b64, caFile, config, createCa, nginxEscape } from './fixtures/helpers.js';

const ca = await createCa({ commonName: 'Header CA' });
const tpp = await ca.issue({ commonName: 'TPP', kind: 'client' });
const other = await ca.issue({ commonName: 'Other', kind: 'client' });
const value = nginxEscape(tpp.certPem);

const reader = (overrides: Partial<ClientCertificateConfig> = {}) => createHeaderCertificateReader(config(overrides));

function error(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (e) {
    if (e instanceof GatewayError) return e;
    throw e;
  }
  throw new Error('no error thrown');
}

t.test('a certificate from the trusted proxy', async (t) => {
  const result = reader().read({ 'x-client-cert': [value] }, PROXY);
  t.ok(result.present);
  if (result.present) {
    t.equal(result.certificate.thumbprint, tpp.thumbprint);
    t.ok(result.certificate.x509.raw.equals(tpp.der));
  }
});

t.test('no certificate in all its shapes', async (t) => {
  const formats = ['pem', 'der-base64', 'rfc9440', 'xfcc', 'traefik', 'aws-alb'] as const;
  for (const format of formats) {
    const r = reader({ format, encoded: false });
    t.same(r.read({}, PROXY), { present: false }, `${format}: absent`);
    t.same(r.read({ 'other-header': ['x'] }, PROXY), { present: false }, `${format}: other headers only`);
    for (const shape of ['', '   ', '(null)', '{http.request.tls.client.certificate_der_base64}', '{client_cert_leaf}']) {
      t.same(r.read({ 'x-client-cert': [shape] }, PROXY), { present: false }, `${format}: ${JSON.stringify(shape)}`);
    }
  }
  t.same(reader().read({ 'x-client-cert': [''] }, '192.0.2.1'), { present: false, untrustedPeer: true }, 'empty header from an untrusted peer');
});

t.test('the verify header (ingress-nginx ssl-client-verify)', async (t) => {
  const r = reader({ header: 'ssl-client-cert', verifyHeader: { name: 'ssl-client-verify', success: ['SUCCESS'] } });
  const ok = r.read({ 'ssl-client-cert': [value], 'ssl-client-verify': ['SUCCESS'] }, PROXY);
  t.ok(ok.present);
  t.same(r.read({ 'ssl-client-cert': [value], 'ssl-client-verify': ['FAILED:certificate has expired'] }, PROXY), {
    present: false,
    why: 'load balancer did not verify the client certificate (FAILED:certificate has expired)',
  });
  t.same(r.read({ 'ssl-client-verify': ['NONE'] }, PROXY), { present: false, why: 'load balancer did not verify the client certificate (NONE)' });
  t.same(r.read({ 'ssl-client-cert': [value] }, PROXY), {
    present: false,
    why: 'load balancer did not verify the client certificate (no ssl-client-verify header)',
  });
  t.same(r.read({ 'ssl-client-verify': ['SUCCESS'] }, PROXY), { present: false }, 'verified but no certificate forwarded');
  const long = r.read({ 'ssl-client-cert': [value], 'ssl-client-verify': [`FAILED:${'x'.repeat(500)}\u0001`] }, PROXY);
  t.ok(!long.present && long.why !== undefined && long.why.length < 200, 'reason bounded');
  t.equal(error(() => r.read({ 'ssl-client-cert': [value], 'ssl-client-verify': ['SUCCESS', 'SUCCESS'] }, PROXY)).code, 'certificate_header_repeated');
  t.same(r.headerNames, ['ssl-client-cert', 'ssl-client-verify']);
});

t.test('headerNames lists every consumed header once', async (t) => {
  t.same(reader().headerNames, ['x-client-cert']);
  t.same(reader({ format: 'rfc9440', chainHeader: 'x-chain', verifyHeader: { name: 'x-verified', success: ['true'] } }).headerNames, ['x-client-cert', 'x-chain', 'x-verified']);
  t.same(reader({ chainHeader: 'x-client-cert' }).headerNames, ['x-client-cert']);
  t.ok(Object.isFrozen(reader().headerNames));
});

t.test('trust of the sending peer', async (t) => {
  const ignore = reader();
  const reject = reader({ untrustedHeader: 'reject' });
  const headers = { 'x-client-cert': [value] };
  for (const peer of ['10.0.0.1', '10.255.255.255', '127.0.0.1', '::1', 'fd00::1234', '::ffff:10.9.8.7', '::ffff:127.0.0.1']) {
    t.ok(ignore.read(headers, peer).present, `trusted ${peer}`);
  }
  for (const peer of ['11.0.0.1', '127.0.0.2', '::2', 'fe80::1', '::ffff:11.0.0.1', undefined, '', 'not-an-ip']) {
    t.same(ignore.read(headers, peer), { present: false, untrustedPeer: true }, `ignored from ${String(peer)}`);
    t.equal(error(() => reject.read(headers, peer)).code, 'certificate_header_untrusted', `rejected from ${String(peer)}`);
  }
  t.same(reject.read({}, '11.0.0.1'), { present: false }, 'no header from an untrusted peer is fine');
  const chainOnly = reader({ chainHeader: 'x-chain' });
  t.same(chainOnly.read({ 'x-chain': ['x'] }, '11.0.0.1'), { present: false, untrustedPeer: true }, 'a chain header alone counts as sent');
  const loopback = createHeaderCertificateReader(config({ trustedProxies: ['127.0.0.0/8'] }));
  t.ok(loopback.read(headers, '::ffff:127.0.0.1').present, 'IPv4-mapped IPv6 matches an IPv4 CIDR');
  t.throws(() => createHeaderCertificateReader(config({ trustedProxies: ['nonsense'] })), /trusted_proxies/);
});

t.test('errors carry their code and never echo the value', async (t) => {
  const r = reader({ cacheSize: 0 });
  const repeated = error(() => r.read({ 'x-client-cert': [value, value] }, PROXY));
  t.equal(repeated.code, 'certificate_header_repeated');
  const chainRepeated = error(() => reader({ chainHeader: 'x-chain' }).read({ 'x-client-cert': [value], 'x-chain': ['a', 'b'] }, PROXY));
  t.equal(chainRepeated.code, 'certificate_header_repeated');
  const cases: Array<[string, string]> = [
    ['bad percent', value.replace('%0A', '%0G')],
    ['lone percent', `${value}%`],
    ['bad base64', nginxEscape(tpp.certPem.replace('MII', 'M*I'))],
    ['trailing garbage', nginxEscape(`${tpp.certPem}garbage`)],
    ['no END line', nginxEscape(tpp.certPem.replace('-----END CERTIFICATE-----', ''))],
    ['not a certificate', nginxEscape(`-----BEGIN CERTIFICATE-----\n${b64(Buffer.from('hello world, not DER'))}\n-----END CERTIFICATE-----\n`)],
    ['base64 of PEM text', b64(Buffer.from(tpp.certPem))],
    ['DER with trailing bytes', b64(Buffer.concat([tpp.der, Buffer.from([0, 0, 0])]))],
    ['non-canonical base64', b64(Buffer.from([0x41])).replace('Q==', 'R==')],
    ['missing padding', b64(tpp.der).replace(/=+$/, '') + (b64(tpp.der).endsWith('=') ? '' : '=')],
    ['unicode', `${b64(tpp.der)}\u00e9`],
    ['eleven certificates', nginxEscape(tpp.certPem.repeat(11))],
    ['other label', nginxEscape(tpp.certPem.replaceAll('CERTIFICATE', 'PUBLIC KEY'))],
  ];
  for (const [what, bad] of cases) {
    const e = error(() => r.read({ 'x-client-cert': [bad] }, PROXY));
    t.equal(e.code, 'certificate_malformed', what);
    t.ok(e.description.length < 120 && !e.description.includes(bad.slice(0, 40)), `${what}: description does not echo the value`);
  }
  const big = reader({ maxHeaderBytes: value.length - 1 });
  t.equal(error(() => big.read({ 'x-client-cert': [value] }, PROXY)).code, 'certificate_malformed', 'over max_header_bytes');
  const bigChain = reader({ maxHeaderBytes: value.length + 10, chainHeader: 'x-chain' });
  t.ok(bigChain.read({ 'x-client-cert': [value] }, PROXY).present);
  t.equal(error(() => bigChain.read({ 'x-client-cert': [value], 'x-chain': [value] }, PROXY)).code, 'certificate_malformed', 'chain counts towards the size');
});

t.test('the cache: same object on the second read, errors memoized, bounded', async (t) => {
  const r = reader({ cacheSize: 2 });
  const headers = { 'x-client-cert': [value] };
  const first = r.read(headers, PROXY);
  t.equal(r.read(headers, PROXY), first, 'same object');
  t.ok(Object.isFrozen(first));
  const bad = { 'x-client-cert': [`${value}%`] };
  const e1 = error(() => r.read(bad, PROXY));
  t.equal(error(() => r.read(bad, PROXY)), e1, 'the error is memoized too');
  const otherHeaders = { 'x-client-cert': [nginxEscape(other.certPem)] };
  r.read(otherHeaders, PROXY); // evicts the first
  const again = r.read(headers, PROXY);
  t.not(again, first, 'bounded: the least recently used entry was evicted');
  t.same(again, first);
  const off = reader({ cacheSize: 0 });
  t.not(off.read(headers, PROXY), off.read(headers, PROXY), 'cache_size 0 parses every time');
  const chain = reader({ chainHeader: 'x-chain' });
  const a = chain.read({ 'x-client-cert': [value], 'x-chain': [''] }, PROXY);
  const b = chain.read({ 'x-client-cert': [value] }, PROXY);
  t.not(a, b, 'the chain value is part of the key');
});

t.test('a keep-alive connection repeating its value: compared with the last one, never parsed again', async (t) => {
  let decodes = 0;
  const formats = await import('../../src/certificate/formats.js');
  const { createHeaderCertificateReader: counted } = await t.mockImport<typeof import('../../src/certificate/header.js')>('../../src/certificate/header.js', {
    '../../src/certificate/formats.js': {
      ...formats,
      decodeCertificates: (...args: Parameters<typeof formats.decodeCertificates>) => {
        decodes++;
        return formats.decodeCertificates(...args);
      },
    },
  });
  let now = Date.now();
  // An LRU of one entry: another value read elsewhere evicts this one.
  const r = counted(config({ cacheSize: 1 }), () => now);
  const connection = {};
  const elsewhere = {};
  const mine = { 'x-client-cert': [value] };
  const first = r.read(mine, PROXY, connection);
  t.ok(first.present);
  t.equal(decodes, 1);
  t.ok(r.read({ 'x-client-cert': [nginxEscape(other.certPem)] }, PROXY, elsewhere).present, 'another connection, another value: evicts the LRU entry');
  t.equal(decodes, 2);
  // A copy of the value, as the HTTP parser makes for every request: equal, not the same string.
  t.equal(r.read({ 'x-client-cert': [`${value} `.slice(0, -1)] }, PROXY, connection), first, 'the same result object, from the connection');
  t.equal(decodes, 2, 'not parsed again although the LRU lost it');
  const switched = r.read({ 'x-client-cert': [nginxEscape(other.certPem)] }, PROXY, connection);
  t.equal(switched.present && switched.certificate.thumbprint, other.thumbprint, 'a different value on the same connection is read as itself');
  t.equal(r.read({ 'x-client-cert': [nginxEscape(other.certPem)] }, PROXY, connection), switched);
  t.equal(error(() => r.read({ 'x-client-cert': [`${value}%`] }, PROXY, connection)).code, 'certificate_malformed', 'a bad value on a known connection');
  t.equal(error(() => r.read({ 'x-client-cert': [`${value}%`] }, PROXY, connection)).code, 'certificate_malformed', 'stays bad');
  const decodesBefore = decodes;
  t.same(r.read(mine, '192.0.2.1', connection), { present: false, untrustedPeer: true }, 'trust is checked on every request, before the memo');
  t.equal(decodes, decodesBefore);
  t.ok(r.read(mine, PROXY, connection).present);
  now += 20 * 365 * 86_400_000;
  t.equal(error(() => r.read(mine, PROXY, connection)).code, 'certificate_expired', 'the validity window is checked on every request');
  const off = counted(config({ cacheSize: 0 }));
  const before = decodes;
  t.not(off.read(mine, PROXY, connection), off.read(mine, PROXY, connection), 'cache_size 0: no memo either');
  t.equal(decodes, before + 2);
});

t.test('after a reload, the new reader parses a connection\'s value again, under its own config', async (t) => {
  const strangers = await createCa({ commonName: 'Stranger CA' });
  const connection = {};
  const mine = { 'x-client-cert': [value] };
  const verify = (pem: string) => ({ checkValidity: true, requireClientAuthEku: false, ca: caFile(pem) });
  const before = reader({ verify: verify(ca.certPem) });
  const after = reader({ verify: verify(strangers.certPem) });
  t.ok(before.read(mine, PROXY, connection).present, 'trusted by the running config');
  t.equal(error(() => after.read(mine, PROXY, connection)).code, 'certificate_untrusted', 'not by the reloaded one, although the connection remembers the value');
  t.ok(before.read(mine, PROXY, connection).present, 'each reader its own answer');
});

t.test('a header from an untrusted peer is never parsed', async (t) => {
  const r = reader();
  t.same(r.read({ 'x-client-cert': ['%%%garbage'] }, '192.0.2.1'), { present: false, untrustedPeer: true });
});

t.test('a bug (not a GatewayError) in a decoder propagates and is not cached', async (t) => {
  let calls = 0;
  const { createHeaderCertificateReader: mocked } = await t.mockImport<typeof import('../../src/certificate/header.js')>('../../src/certificate/header.js', {
    '../../src/certificate/formats.js': {
      isNoCertificateValue: () => false,
      decodeCertificates: () => {
        calls++;
        throw new TypeError('bug');
      },
    },
  });
  const r = mocked(config());
  t.throws(() => r.read({ 'x-client-cert': [value] }, PROXY), TypeError);
  t.throws(() => r.read({ 'x-client-cert': [value] }, PROXY), TypeError);
  t.equal(calls, 2);
});
