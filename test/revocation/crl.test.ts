import t from 'tap';
import { AsnSerializer } from '@peculiar/asn1-schema';
import {
  AttributeTypeAndValue,
  AttributeValue,
  CRLDistributionPoints,
  DistributionPoint,
  DistributionPointName,
  GeneralName,
  IssuingDistributionPoint,
  Name,
  Reason,
  ReasonFlags,
  RelativeDistinguishedName,
  id_ce_authorityKeyIdentifier,
  id_ce_certificateIssuer,
  id_ce_cRLDistributionPoints,
  id_ce_cRLReasons,
  id_ce_deltaCRLIndicator,
  id_ce_issuingDistributionPoint,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { X509Certificate, createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { crlDistributionPointsOf, fetchCrl, readCrl, type Crl } from '../../src/revocation/crl.js';
import { RevocationError, serialKey } from '../../src/revocation/types.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';
import { reasonOf, rejectionOf } from '../helpers/codes.js';
import {
  deadUrl,
  extension,
  leafWithExtensions,
  opensslSerials,
  opensslTimes,
  resign,
  signCrl,
  startCrlServer,
  version1,
  version1Crl,
  withoutCrlSign,
} from './fixtures/crl-fixtures.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('CRL Test CA');
const twin = createOpensslCa('CRL Test CA'); // the same name, another key
const other = createOpensslCa('Other CRL CA');
t.teardown(() => [ca, twin, other].forEach((c) => c.remove()));

const revoked = ca.issue('Revoked TPP', { crlUrl: 'http://crl.example/ca.crl' });
const alsoRevoked = ca.issue('Also revoked TPP');
const good = ca.issue('Good TPP');
ca.revoke(revoked);
ca.revoke(alsoRevoked);
const second = 1000;
const base = Math.floor(Date.now() / second) * second;
const lastUpdate = new Date(base - 60 * second);
const nextUpdate = new Date(lastUpdate.getTime() + 86_400 * second);
const crl = ca.crl({ lastUpdate, nextUpdate });

const der = (value: object): ArrayBuffer => AsnSerializer.serialize(value);
const idp = (params: Partial<IssuingDistributionPoint>): ReturnType<typeof extension> =>
  extension(id_ce_issuingDistributionPoint, true, der(new IssuingDistributionPoint(params)));
const uriName = (uri: string): GeneralName => new GeneralName({ uniformResourceIdentifier: uri });
const rdn = (cn: string): RelativeDistinguishedName => new RelativeDistinguishedName([new AttributeTypeAndValue({ type: '2.5.4.3', value: new AttributeValue({ utf8String: cn }) })]);
const nullValue = new asn1js.Null().toBER();
/** The openssl CRL decoded by asn1js, changed, and encoded again (unsigned changes: structure only). */
function reshape(change: (outer: asn1js.AsnType[], tbs: asn1js.AsnType[]) => void, resign = false): Uint8Array {
  const outer = asn1js.fromBER(new Uint8Array(crl.der)).result as asn1js.Sequence;
  change(outer.valueBlock.value, (outer.valueBlock.value[0] as asn1js.Sequence).valueBlock.value);
  if (resign) {
    // Signed again by the CA, so the change reaches the parts read only once the signature verified.
    const tbs = new Uint8Array((outer.valueBlock.value[0] as asn1js.Sequence).toBER());
    const signature = sign('sha256', tbs, { key: createPrivateKey(readFileSync(ca.keyPath)), dsaEncoding: 'der' });
    outer.valueBlock.value.splice(2, 1, new asn1js.BitString({ valueHex: signature, unusedBits: 0 }));
  }
  return new Uint8Array(outer.toBER());
}

t.test('an openssl CRL, PEM and DER: the serials it lists, its times and its issuer', async (t) => {
  for (const [label, bytes] of [
    ['DER', crl.der],
    ['PEM', Buffer.from(crl.pem)],
    ['PEM after openssl text', Buffer.from(`Certificate Revocation List (CRL):\n        Version 2 (0x1)\n${crl.pem}`)],
  ] as const) {
    const read = readCrl(bytes, [other.x509, ca.x509]);
    t.equal(read.issuer, ca.x509, `${label}: issuer`);
    t.equal(read.size, 2, label);
    t.equal(read.has(serialKey(revoked.serial)), true, label);
    t.equal(read.has(serialKey(alsoRevoked.serial)), true, label);
    t.equal(read.has(serialKey(good.serial)), false, label);
    t.equal(read.thisUpdate, lastUpdate.getTime(), label);
    t.equal(read.nextUpdate, nextUpdate.getTime(), label);
    t.equal(read.scope, undefined, label);
  }
  t.equal(readCrl(crl.der, [ca.x509]).has(serialKey(`00${revoked.serial}`)), true, 'a serial with a leading 00 is the same serial');
});

t.test('openssl crl -text reads the same serials and times', async (t) => {
  const read = readCrl(crl.der, [ca.x509]);
  const serials = opensslSerials(crl.path);
  t.same(serials.sort(), [revoked.serial, alsoRevoked.serial].sort());
  t.equal(read.size, serials.length);
  t.ok(serials.every((serial) => read.has(serialKey(serial))));
  t.same(opensslTimes(crl.path), { thisUpdate: read.thisUpdate, nextUpdate: read.nextUpdate });
});

t.test('a version 1 CRL (openssl, no extensions) and a CRL without nextUpdate', async (t) => {
  const v1 = readCrl(version1Crl(ca), [ca.x509]);
  t.equal(v1.issuer, ca.x509);
  t.equal(v1.size, 2);
  const open = readCrl(await signCrl(ca, { entries: [{ serial: good.serial }] }), [ca.x509]);
  t.equal(open.nextUpdate, undefined);
  t.notOk('nextUpdate' in open, 'no nextUpdate key at all');
  t.equal(open.has(serialKey(good.serial)), true, 'the entries after an absent nextUpdate are read');
  const extended = await signCrl(ca, { entries: [{ serial: good.serial }], extensions: [extension('1.3.6.1.4.1.99999.1', true, nullValue)] });
  t.equal(reasonOf(() => readCrl(extended, [ca.x509])), 'unsupported', 'and so are the extensions');
  const empty = await signCrl(ca, { extensions: [extension('1.3.6.1.4.1.99999.1', true, nullValue)] });
  t.equal(reasonOf(() => readCrl(empty, [ca.x509])), 'unsupported', 'with no entries either');
});

t.test('the issuer: by name, then by signature, then by cRLSign', async (t) => {
  t.equal(reasonOf(() => readCrl(crl.der, [other.x509])), 'wrong_certificate', 'a CA of another name');
  t.equal(reasonOf(() => readCrl(crl.der, [])), 'wrong_certificate', 'no issuer at all');
  t.equal(reasonOf(() => readCrl(crl.der, [twin.x509])), 'bad_signature', 'the same name, another key');
  t.equal(readCrl(crl.der, [twin.x509, ca.x509]).issuer, ca.x509, 'of two of that name, the one whose key verifies');
  t.equal(reasonOf(() => readCrl(other.crl().der, [ca.x509, twin.x509])), 'wrong_certificate', "another CA's CRL");
  t.equal(reasonOf(() => readCrl(twin.crl().der, [ca.x509])), 'bad_signature', "the twin's CRL");

  const noCrlSign = withoutCrlSign(ca);
  t.equal(noCrlSign.publicKey.equals(ca.x509.publicKey), true, 'the same key');
  t.equal(reasonOf(() => readCrl(crl.der, [noCrlSign])), 'bad_signature', 'keyUsage without cRLSign');
  t.equal(readCrl(crl.der, [noCrlSign, ca.x509]).issuer, ca.x509, 'the certificate with cRLSign is chosen');
  const v1 = version1(ca);
  t.equal(v1.toLegacyObject().ext_key_usage, undefined);
  t.equal(readCrl(crl.der, [v1]).issuer, v1, 'a version 1 certificate has no keyUsage: it may sign CRLs');
});

t.test('a tampered CRL does not verify', async (t) => {
  const signature = Buffer.from(crl.der);
  signature[signature.length - 1] = (signature[signature.length - 1] ?? 0) ^ 0x01;
  t.equal(reasonOf(() => readCrl(signature, [ca.x509])), 'bad_signature', 'a bit of the signature');

  const entry = Buffer.from(`0202${revoked.serial}`, 'hex');
  const at = crl.der.indexOf(entry);
  t.ok(at > 0, 'the revoked serial is in the DER');
  const serial = Buffer.from(crl.der);
  serial[at + entry.length - 1] = (serial[at + entry.length - 1] ?? 0) ^ 0x01;
  t.equal(reasonOf(() => readCrl(serial, [ca.x509])), 'bad_signature', 'a bit of a revoked serial');

  const ecdsaSha256 = Buffer.from('06082a8648ce3d040302', 'hex');
  const outer = Buffer.from(crl.der);
  outer[outer.lastIndexOf(ecdsaSha256) + ecdsaSha256.length - 1] = 0x03; // ecdsa-with-SHA384
  t.equal(reasonOf(() => readCrl(outer, [ca.x509])), 'malformed', 'signatureAlgorithm differs from tbsCertList.signature');
});

t.test('not a CRL', async (t) => {
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array()],
    ['text', Buffer.from('hello, world')],
    ['a certificate, PEM', Buffer.from(good.pem)],
    ['a certificate, DER', good.x509.raw],
    ['trailing bytes', Buffer.concat([crl.der, Buffer.from([0])])],
    ['truncated', crl.der.subarray(0, crl.der.length - 1)],
    ['an empty SEQUENCE', Buffer.from('3000', 'hex')],
    ['a SEQUENCE of an empty SEQUENCE', Buffer.from('30023000', 'hex')],
    ['a SEQUENCE of an INTEGER', Buffer.from('3003020101', 'hex')],
    ['a time asn1js throws on', Buffer.from('3006300418024141', 'hex')],
    ['an empty PEM block', Buffer.from('-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n')],
    ['a tbsCertList that is no SEQUENCE', reshape((outer) => outer.splice(0, 1, new asn1js.Null()))],
    ['a fourth element', reshape((outer) => outer.push(new asn1js.Null()))],
    ['a signature that is no BIT STRING', reshape((outer) => outer.splice(2, 1, new asn1js.OctetString({ valueHex: new Uint8Array(8) })))],
    ['a signature with unused bits', reshape((outer) => outer.splice(2, 1, new asn1js.BitString({ valueHex: new Uint8Array(8), unusedBits: 1 })))],
    ['a bogus AlgorithmIdentifier', reshape((_, tbs) => tbs.splice(1, 1, new asn1js.Null()))],
    ['no issuer', reshape((_, tbs) => tbs.splice(2))],
    ['no thisUpdate', reshape((_, tbs) => tbs.splice(3))],
    ['a revoked entry without a serial', reshape((_, tbs) => ((tbs[5] as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence).valueBlock.value.splice(0, 1, new asn1js.Null()), true)],
    ['a revoked entry that is no SEQUENCE', reshape((_, tbs) => (tbs[5] as asn1js.Sequence).valueBlock.value.splice(0, 1, new asn1js.Null()), true)],
    ['a revoked entry without a date', reshape((_, tbs) => ((tbs[5] as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence).valueBlock.value.splice(1, 1, new asn1js.Null()), true)],
    ['a revoked entry with a field after its extensions', reshape((_, tbs) => ((tbs[5] as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence).valueBlock.value.push(new asn1js.Null()), true)],
    ['a revoked entry whose extensions are no SEQUENCE', reshape((_, tbs) => ((tbs[5] as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence).valueBlock.value.splice(2, 1, new asn1js.Null()), true)],
    ['a field after the extensions', reshape((_, tbs) => tbs.push(new asn1js.Null()))],
    ['[1] where [0] extensions go', reshape((_, tbs) => tbs.splice(-1, 1, new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value: [new asn1js.Null()] })))],
  ];
  t.same(reshape(() => undefined), new Uint8Array(crl.der), 'reshape() without a change gives the same bytes');
  for (const [label, bytes] of cases) t.equal(reasonOf(() => readCrl(bytes, [ca.x509])), 'malformed', label);
});

t.test('CRL extensions: understood, refused, ignored', async (t) => {
  const read = async (extensions: ReturnType<typeof extension>[]): Promise<Crl | string> => {
    const bytes = await signCrl(ca, { nextUpdate, extensions, entries: [{ serial: good.serial }] });
    try {
      return readCrl(bytes, [ca.x509]);
    } catch (e) {
      if (e instanceof RevocationError) return e.reason;
      throw e;
    }
  };
  const outcomeOf = (result: Crl | string): string => (typeof result === 'string' ? result : 'read');
  t.equal(outcomeOf(await read([])), 'read', 'signed by @peculiar/x509 under the openssl CA');
  t.equal(outcomeOf(await read([extension(id_ce_authorityKeyIdentifier, true, der(new asn1js.Sequence()))])), 'read', 'a critical authorityKeyIdentifier');
  t.equal(outcomeOf(await read([extension('1.3.6.1.4.1.99999.1', false, nullValue)])), 'read', 'an unknown non-critical extension');
  t.equal(outcomeOf(await read([extension('1.3.6.1.4.1.99999.1', true, nullValue)])), 'unsupported', 'an unknown critical extension');
  t.equal(outcomeOf(await read([extension(id_ce_deltaCRLIndicator, true, new asn1js.Integer({ value: 1 }).toBER())])), 'unsupported', 'a delta CRL');
  t.equal(outcomeOf(await read([idp({ indirectCRL: true })])), 'unsupported', 'an indirect CRL');
  t.equal(outcomeOf(await read([idp({ onlySomeReasons: new Reason(ReasonFlags.keyCompromise) })])), 'unsupported', 'some reasons only');
  t.equal(outcomeOf(await read([idp({ onlyContainsCACerts: true })])), 'unsupported', 'CA certificates only');
  t.equal(outcomeOf(await read([idp({ onlyContainsAttributeCerts: true })])), 'unsupported', 'attribute certificates only');
  const directory = new DistributionPointName({ fullName: [new GeneralName({ directoryName: new Name([rdn('CRL partition')]) })] });
  t.equal(outcomeOf(await read([idp({ distributionPoint: directory })])), 'unsupported', 'a partition named by a directoryName only');
  t.equal(outcomeOf(await read([idp({ distributionPoint: new DistributionPointName({ nameRelativeToCRLIssuer: rdn('CRL partition') }) })])), 'unsupported', 'a partition named relative to the issuer');
  t.equal(outcomeOf(await read([extension(id_ce_issuingDistributionPoint, true, nullValue)])), 'malformed', 'an unreadable issuingDistributionPoint');

  const named = new DistributionPointName({ fullName: [uriName('http://crl.example/partition-1.crl')] });
  t.equal(outcomeOf(await read([idp({ distributionPoint: named, onlySomeReasons: new Reason(ReasonFlags.keyCompromise) })])), 'unsupported', 'a partition, some reasons only');
  t.equal(outcomeOf(await read([idp({ distributionPoint: named, indirectCRL: true })])), 'unsupported', 'a partition, indirect');
  t.equal(outcomeOf(await read([idp({ distributionPoint: named, onlyContainsCACerts: true })])), 'unsupported', 'a partition, CA certificates only');
  const users = await read([idp({ onlyContainsUserCerts: true })]);
  t.equal(outcomeOf(users), 'read', 'user certificates only');
  t.equal(typeof users === 'string' ? 'none' : users.scope, undefined, 'covers every one of them');
  const uri = 'http://crl.example/partition-1.crl';
  const partition = await read([idp({ distributionPoint: new DistributionPointName({ fullName: [uriName(uri), new GeneralName({ dNSName: 'crl.example' })] }) })]);
  t.same(typeof partition === 'string' ? partition : partition.scope, [uri], 'a partition: its scope is the URIs it names');
});

t.test('CRL entry extensions', async (t) => {
  const read = async (extensions: ReturnType<typeof extension>[]): Promise<string> => {
    const bytes = await signCrl(ca, { nextUpdate, entries: [{ serial: alsoRevoked.serial }, { serial: good.serial, extensions }] });
    return reasonOf(() => t.equal(readCrl(bytes, [ca.x509]).size, 2));
  };
  t.equal(await read([extension(id_ce_cRLReasons, true, new asn1js.Enumerated({ value: 1 }).toBER())]), 'no error', 'a critical reasonCode');
  t.equal(await read([extension('1.3.6.1.4.1.99999.2', false, nullValue)]), 'no error', 'an unknown non-critical entry extension');
  t.equal(await read([extension('1.3.6.1.4.1.99999.2', true, nullValue)]), 'unsupported', 'an unknown critical entry extension');
  const issuer = der(new asn1js.Sequence());
  t.equal(await read([extension(id_ce_certificateIssuer, true, issuer)]), 'unsupported', 'certificateIssuer: an indirect CRL');
});

t.test('a CRL with thousands of entries (beyond asn1js default node limit)', async (t) => {
  const when = new asn1js.UTCTime({ valueDate: new Date(base) });
  const many = resign(ca, crl.der, (fields) => {
    const list = fields[5] as asn1js.Sequence;
    for (let i = 0; i < 5000; i++) list.valueBlock.value.push(new asn1js.Sequence({ value: [new asn1js.Integer({ value: 0x100000 + i }), when] }));
  });
  const read = readCrl(many, [ca.x509]);
  t.equal(read.size, 5002);
  t.equal(read.has(serialKey(revoked.serial)), true, 'the entries openssl wrote are still there');
  t.equal(read.has(serialKey('100000')), true);
  t.equal(read.has(serialKey('101387')), true);
  t.equal(read.has(serialKey(good.serial)), false);
});

t.test("the leaf's CRL distribution points", async (t) => {
  t.same(crlDistributionPointsOf(revoked.x509), ['http://crl.example/ca.crl']);
  t.same(crlDistributionPointsOf(good.x509), [], 'no extension');
  const mixed = ca.issue('Mixed', { crlUrl: 'ldap://ldap.example/cn=CA, URI:HTTPS://crl.example/b.crl, URI:http://crl.example/a.crl' });
  t.same(crlDistributionPointsOf(mixed.x509), ['HTTPS://crl.example/b.crl', 'http://crl.example/a.crl'], 'http(s) only, in order');
  const points = (items: DistributionPoint[]): ReturnType<typeof extension> => extension(id_ce_cRLDistributionPoints, false, der(new CRLDistributionPoints(items)));
  const many = await leafWithExtensions(ca, [
    points([
      new DistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [uriName('http://a.example/1.crl'), uriName('http://a.example/1.crl')] }) }),
      new DistributionPoint({ distributionPoint: new DistributionPointName({ nameRelativeToCRLIssuer: rdn('x') }) }),
      new DistributionPoint({ cRLIssuer: [uriName('http://issuer.example/')] }),
      new DistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ directoryName: new Name([rdn('y')]) }), uriName('http://a.example/2.crl')] }) }),
    ]),
  ]);
  t.same(crlDistributionPointsOf(many), ['http://a.example/1.crl', 'http://a.example/2.crl'], 'fullName URIs only, once each');
  const broken = await leafWithExtensions(ca, [extension(id_ce_cRLDistributionPoints, false, nullValue)]);
  t.same(crlDistributionPointsOf(broken), [], 'an unreadable extension names nothing');
  t.ok(broken instanceof X509Certificate);
});

t.test('fetchCrl: a bounded GET', async (t) => {
  const server = await startCrlServer();
  t.teardown(() => server.close());
  server.set('/ok', { body: crl.der });
  server.set('/chunked', { body: crl.der, chunked: true });
  server.set('/missing', { body: Buffer.from('no'), status: 404 });
  server.set('/hang', 'hang');
  t.same(Buffer.from(await fetchCrl(server.url('/ok'), { timeoutMs: 10_000 })), crl.der);
  t.same(Buffer.from(await fetchCrl(server.url('/chunked'), { timeoutMs: 10_000 })), crl.der, 'without a content-length');
  t.equal(await rejectionOf(() => fetchCrl(server.url('/missing'), { timeoutMs: 10_000 })), 'unavailable', 'HTTP 404');
  t.equal(await rejectionOf(() => fetchCrl(server.url('/ok'), { timeoutMs: 10_000, maxBytes: crl.der.length - 1 })), 'unavailable', 'a content-length over the cap');
  t.equal(await rejectionOf(() => fetchCrl(server.url('/chunked'), { timeoutMs: 10_000, maxBytes: crl.der.length - 1 })), 'unavailable', 'a body over the cap');
  t.same(Buffer.from(await fetchCrl(server.url('/chunked'), { timeoutMs: 10_000, maxBytes: crl.der.length })), crl.der, 'a body of exactly the cap');
  t.equal(await rejectionOf(() => fetchCrl(server.url('/hang'), { timeoutMs: 50 })), 'unavailable', 'a timeout');
  const aborted = new AbortController();
  aborted.abort();
  t.equal(await rejectionOf(() => fetchCrl(server.url('/ok'), { timeoutMs: 10_000, signal: aborted.signal })), 'unavailable', 'aborted by the caller');
  const refused = await deadUrl();
  t.equal(await rejectionOf(() => fetchCrl(refused, { timeoutMs: 10_000 })), 'unavailable', 'connection refused');
  t.equal(await rejectionOf(() => fetchCrl('ldap://ldap.example/cn=CA', { timeoutMs: 10_000 })), 'unavailable', 'not http(s)');
  t.equal(await rejectionOf(() => fetchCrl('http://[::1', { timeoutMs: 10_000 })), 'unavailable', 'not a URL');
  const messages: string[] = [];
  await fetchCrl(server.url('/hang'), { timeoutMs: 50 }).catch((e: Error) => messages.push(e.message));
  t.same(messages, ['unavailable: timed out']);
});
