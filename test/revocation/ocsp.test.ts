import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Certificate, id_ce_cRLReasons, id_pe_authorityInfoAccess } from '@peculiar/asn1-x509';
import { OCSPRequest, OCSPResponseStatus, Request, TBSRequest, id_pkix_ocsp_nonce, type CertID } from '@peculiar/asn1-ocsp';
import { buildOcspRequest, ocspUrlOf, queryOcsp, readOcspResponse, type OcspCheck, type OcspRequest } from '../../src/revocation/ocsp.js';
import { RevocationError, type SourceAnswer } from '../../src/revocation/types.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';
import { rejectionOf } from '../helpers/codes.js';
import {
  alteredCertId, basicResponse, certIdOf, closedUrl, extension, parseRequest, signedResponse, signerOf, startFakeResponder, startRecordingProxy,
  statusResponse, wrap, type ParsedRequest, type Reply, type ResponseOptions, type SingleOptions,
} from './fixtures/fake-ocsp.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const MINUTE = 60_000;
const DAY = 86_400_000;
const SKEW = 5 * MINUTE;

const ca = createOpensslCa('OCSP Test CA');
const otherCa = createOpensslCa('Other OCSP CA');
// Same name as `ca`, another key: an impostor.
const impostorCa = createOpensslCa('OCSP Test CA');
t.teardown(() => [ca, otherCa, impostorCa].forEach((c) => c.remove()));

// Everything `ca`'s responders answer about is issued before any starts: the responder re-reads
// index.txt only after answering one more request from the old one.
const tpp = ca.issue('TPP', { ocspUrl: 'http://ocsp.qtsp.example/ocsp' });
const doomed = ca.issue('TPP Revoked During The Test');
const revokedAtStart = ca.issue('TPP Revoked Before');
ca.revoke(revokedAtStart);
const responder = ca.issue('OCSP Responder', { eku: ['OCSPSigning'] });
const notResponder = ca.issue('Not An OCSP Responder', { eku: ['clientAuth'] });
const oneDayResponder = ca.issue('One Day Responder', { eku: ['OCSPSigning'], days: 1 });
const withoutAia = ca.issue('TPP Without AIA');
// Every fixture CA starts its serials at 1000: this one has tpp's serial.
const foreign = otherCa.issue('Foreign TPP');
const foreignResponder = otherCa.issue('Foreign Responder', { eku: ['OCSPSigning'] });
const impostorResponder = impostorCa.issue('Impostor Responder', { eku: ['OCSPSigning'] });

const caSigner = signerOf(ca.pem, readFileSync(ca.keyPath, 'utf8'));
const otherCaSigner = signerOf(otherCa.pem, readFileSync(otherCa.keyPath, 'utf8'));
const impostorSigner = signerOf(impostorCa.pem, readFileSync(impostorCa.keyPath, 'utf8'));
const delegate = signerOf(responder.pem, responder.keyPem);

const checkOf = (request: OcspRequest, overrides: Partial<OcspCheck> = {}): OcspCheck => ({
  request,
  issuer: ca.x509,
  now: Date.now(),
  clockSkewMs: SKEW,
  maxAgeMs: DAY,
  ...overrides,
});

/** The reason code `run` fails with, or 'no error'. */
interface AskOptions {
  readonly nonce?: boolean;
  readonly issuer?: X509Certificate;
  readonly now?: number;
}

/** Asks `url` as the gateway does: build, send, read. */
function ask(url: string, leaf: X509Certificate, options: AskOptions = {}): Promise<SourceAnswer> {
  return send(url, buildOcspRequest(leaf, options.issuer ?? ca.x509, { nonce: options.nonce ?? false }), options);
}

async function send(url: string, request: OcspRequest, options: AskOptions = {}): Promise<SourceAnswer> {
  const der = await queryOcsp(url, request, { timeoutMs: 5000 });
  return readOcspResponse(der, checkOf(request, { issuer: options.issuer ?? ca.x509, now: options.now ?? Date.now() }));
}

const tppId = certIdOf(tpp.x509, ca.x509);
const requestOf = (...certIds: CertID[]): Buffer => Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: certIds.map((reqCert) => new Request({ reqCert })) }) })));

/** A request about a serial `ca` never issued. */
function requestForMissingSerial(): OcspRequest {
  const serialNumber = Buffer.from('7fffffff', 'hex');
  return { ...buildOcspRequest(tpp.x509, ca.x509), der: requestOf(alteredCertId(tppId, { serial: serialNumber })), serialNumber };
}

const fresh = (now = Date.now()): Pick<SingleOptions, 'thisUpdate' | 'nextUpdate'> => ({ thisUpdate: new Date(now - MINUTE), nextUpdate: new Date(now + 10 * MINUTE) });

/** The fake responder's usual answer: good, fresh, signed by the CA, the nonce echoed; `change` alters it. */
function answerFor(parsed: ParsedRequest, change: Partial<ResponseOptions> = {}, single: Partial<SingleOptions> = {}): ResponseOptions {
  const certId = parsed.certIds[0];
  if (certId === undefined) throw new Error('no CertID in the request');
  return { signer: caSigner, responses: [{ certId, ...fresh(), ...single }], ...(parsed.nonce ? { nonce: parsed.nonce } : {}), ...change };
}

interface FakeCase {
  readonly nonce?: boolean;
  readonly now?: number;
  readonly timeoutMs?: number;
  readonly maxBytes?: number;
}

/** Serves `answer` from a fake responder and asks it for `tpp` as the gateway does. */
async function viaFake(t: Test, answer: (parsed: ParsedRequest) => Reply | ResponseOptions, options: FakeCase = {}): Promise<SourceAnswer> {
  const fake = await startFakeResponder((exchange) => {
    const reply = answer(parseRequest(exchange.der));
    return 'signer' in reply ? { body: signedResponse(reply) } : reply;
  });
  t.teardown(() => fake.close());
  const request = buildOcspRequest(tpp.x509, ca.x509, { nonce: options.nonce ?? false });
  const der = await queryOcsp(fake.url, request, { timeoutMs: options.timeoutMs ?? 5000, ...(options.maxBytes ? { maxBytes: options.maxBytes } : {}) });
  return readOcspResponse(der, checkOf(request, { now: options.now ?? Date.now() }));
}

/** Reads a response built here for `tpp` (no HTTP). */
function readBuilt(response: Uint8Array, overrides: Partial<OcspCheck> = {}, request = buildOcspRequest(tpp.x509, ca.x509)): SourceAnswer {
  return readOcspResponse(response, checkOf(request, overrides));
}

t.test('ocspUrlOf: the first http(s) OCSP location of the AIA extension', async (t) => {
  t.equal(ocspUrlOf(tpp.x509), 'http://ocsp.qtsp.example/ocsp');
  t.equal(ocspUrlOf(withoutAia.x509), undefined, 'no AIA extension');
  const mixed = ca.issue('TPP Mixed AIA', {
    ocspUrl: 'ldap://dir.example/ocsp,OCSP;email:ocsp@qtsp.example,caIssuers;URI:http://ca.example/ca.crt,OCSP;URI:https://ocsp.example/b,OCSP;URI:http://ocsp.example/c',
  });
  t.equal(ocspUrlOf(mixed.x509), 'https://ocsp.example/b', 'skips an ldap location, an e-mail one and a caIssuers one');
  t.equal(ocspUrlOf(ca.issue('TPP LDAP Only', { ocspUrl: 'ldap://dir.example/ocsp' }).x509), undefined, 'no http(s) location');
  // The AIA value replaced by bytes that do not parse (the signature no longer matters to X509Certificate).
  const asn = AsnConvert.parse(tpp.x509.raw, Certificate);
  const aia = asn.tbsCertificate.extensions?.find((e) => e.extnID === id_pe_authorityInfoAccess);
  if (aia) aia.extnValue = new OctetString(new Uint8Array([0x30, 0x03, 0x01]));
  t.equal(ocspUrlOf(new X509Certificate(Buffer.from(AsnConvert.serialize(asn)))), undefined, 'an AIA that does not parse');
});

t.test('buildOcspRequest: a SHA-1 CertID of the issuer and the serial, a 32-byte nonce when asked', async (t) => {
  const plain = buildOcspRequest(tpp.x509, ca.x509);
  const parsed = parseRequest(plain.der);
  t.equal(parsed.certIds.length, 1);
  t.same(Buffer.from(AsnConvert.serialize(parsed.certIds[0])), Buffer.from(AsnConvert.serialize(certIdOf(tpp.x509, ca.x509))), 'the CertID computed independently');
  t.equal(parsed.nonce, undefined);
  t.equal(plain.nonce, undefined);
  t.equal(plain.serialNumber.toString('hex').toUpperCase(), tpp.serial);
  const withNonce = buildOcspRequest(tpp.x509, ca.x509, { nonce: true });
  t.equal(withNonce.nonce?.length, 32);
  t.same(parseRequest(withNonce.der).nonce, withNonce.nonce, 'the nonce extension carries it as an OCTET STRING');
  t.not(buildOcspRequest(tpp.x509, ca.x509, { nonce: true }).nonce?.toString('hex'), withNonce.nonce?.toString('hex'), 'a new nonce each time');
  // openssl reads it back.
  const file = join(ca.dir, 'request.der');
  writeFileSync(file, withNonce.der);
  const text = execFileSync('openssl', ['ocsp', '-reqin', file, '-req_text'], { encoding: 'utf8' });
  t.match(text, /Hash Algorithm: sha1/);
  t.match(text, new RegExp(`Serial Number: ${tpp.serial}`));
  t.match(text, /OCSP Nonce/);
  const notACertificate = { raw: Buffer.from([0x30, 0x00]) } as unknown as X509Certificate;
  t.equal(await rejectionOf(() => buildOcspRequest(notACertificate, ca.x509)), 'malformed', 'a certificate the ASN.1 classes cannot read');
});

t.test('openssl ocsp, the CA signing, without nextUpdate: good, revoked, unknown', async (t) => {
  const real = await ca.startResponder();
  t.teardown(() => real.close());
  const good = await ask(real.url, tpp.x509);
  t.equal(good.status, 'good');
  t.equal(good.nextUpdate, undefined, 'no -nmin: no nextUpdate');
  t.equal((await ask(real.url, doomed.x509)).status, 'good', 'before the revocation');
  ca.revoke(doomed);
  t.equal((await ask(real.url, doomed.x509)).status, 'revoked', 'after ca.revoke');
  t.equal((await ask(real.url, revokedAtStart.x509)).status, 'revoked');
  t.equal((await send(real.url, requestForMissingSerial())).status, 'unknown', 'a serial the index does not have');
  // A CertID is the issuer's hashes and a serial, nothing of the leaf itself: another CA's certificate
  // asked about with this CA as issuer is whatever this CA's certificate of that serial is (tpp).
  t.equal((await ask(real.url, foreign.x509)).status, 'good', "another CA's certificate, asked with the wrong issuer: tpp's answer");
  // Asked with its own CA as issuer, openssl answers unknown, signed by this CA: no signer otherCa trusts.
  t.equal(await rejectionOf(() => ask(real.url, foreign.x509, { issuer: otherCa.x509 })), 'untrusted_signer', "another CA's responder");
  t.equal(await rejectionOf(() => ask(real.url, tpp.x509, { now: Date.now() + 2 * DAY })), 'stale', 'no nextUpdate: too old past maxAgeMs');
});

t.test('openssl ocsp, the CA signing, with -nmin: nextUpdate, the nonce echoed', async (t) => {
  const real = await ca.startResponder({ nextUpdateMinutes: 10 });
  t.teardown(() => real.close());
  const good = await ask(real.url, tpp.x509, { nonce: true });
  t.equal(good.status, 'good');
  const span = (good.nextUpdate ?? 0) - good.thisUpdate;
  // openssl reads the clock once for thisUpdate and once for nextUpdate: a second may pass between.
  t.ok(span >= 10 * MINUTE && span <= 10 * MINUTE + 1000, `nextUpdate = thisUpdate + 10 min (${span} ms)`);
  t.equal((await ask(real.url, revokedAtStart.x509, { nonce: true })).status, 'revoked');
  t.equal(await rejectionOf(() => ask(real.url, tpp.x509, { now: Date.now() + 11 * MINUTE })), 'stale', 'past nextUpdate');
});

t.test('openssl ocsp with a delegated responder certificate (id-kp-OCSPSigning)', async (t) => {
  const real = await ca.startResponder({ signer: responder, nextUpdateMinutes: 5 });
  t.teardown(() => real.close());
  const good = await ask(real.url, tpp.x509, { nonce: true });
  t.equal(good.status, 'good');
  t.type(good.nextUpdate, 'number');
  t.equal((await ask(real.url, revokedAtStart.x509)).status, 'revoked');
  t.equal((await send(real.url, requestForMissingSerial())).status, 'unknown');
  t.equal(await rejectionOf(() => ask(real.url, tpp.x509, { now: Date.now() + 40 * DAY })), 'untrusted_signer', 'the responder certificate has expired by then');
});

t.test('openssl ocsp signing with a certificate of the CA that lacks id-kp-OCSPSigning', async (t) => {
  const real = await ca.startResponder({ signer: notResponder });
  t.teardown(() => real.close());
  t.equal(await rejectionOf(() => ask(real.url, tpp.x509)), 'untrusted_signer');
});

t.test("cross-check with openssl's own client", async (t) => {
  const real = await ca.startResponder({ signer: responder, nextUpdateMinutes: 10 });
  t.teardown(() => real.close());
  for (const leaf of [tpp, revokedAtStart]) {
    const out = join(ca.dir, `response-${leaf.serial}.der`);
    const text = execFileSync('openssl', ['ocsp', '-issuer', ca.certPath, '-cert', leaf.certPath, '-url', real.url, '-CAfile', ca.certPath, '-no_nonce', '-respout', out], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const said = new RegExp(`${leaf.certPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: (\\w+)`).exec(text)?.[1];
    t.ok(said, `openssl printed a status: ${text}`);
    // openssl's client asks with the same SHA-1 CertID: our request matches the answer it fetched.
    const ours = readOcspResponse(readFileSync(out), checkOf(buildOcspRequest(leaf.x509, ca.x509)));
    t.equal(ours.status, said, `${leaf.name}: both read ${said}`);
  }
});

t.test('GET for a short request, POST for a long one (seen through a recording proxy before openssl)', async (t) => {
  const real = await ca.startResponder();
  const proxy = await startRecordingProxy(real.url);
  t.teardown(async () => {
    await proxy.close();
    await real.close();
  });
  t.equal((await ask(proxy.url, tpp.x509)).status, 'good');
  t.equal((await ask(`${proxy.url}/`, tpp.x509, { nonce: true })).status, 'good', 'a trailing slash, and a nonce');
  // A request for four certificates: well over 255 bytes once encoded.
  const short = buildOcspRequest(tpp.x509, ca.x509);
  const long: OcspRequest = { ...short, der: requestOf(...[tpp, doomed, responder, notResponder].map((l) => certIdOf(l.x509, ca.x509))) };
  t.ok(encodeURIComponent(long.der.toString('base64')).length >= 255);
  const der = await queryOcsp(proxy.url, long, { timeoutMs: 5000 });
  t.equal(readOcspResponse(der, checkOf(long)).status, 'good', 'the one answer about tpp among four');
  t.same(
    proxy.exchanges.map((e) => [e.method, e.path.startsWith('//') ? 'double slash' : 'ok', e.connection]),
    [
      ['GET', 'ok', 'close'],
      ['GET', 'ok', 'close'],
      ['POST', 'ok', 'close'],
    ],
  );
  t.equal(proxy.exchanges[2]?.contentType, 'application/ocsp-request');
  t.same(proxy.exchanges[0]?.der, short.der, 'the GET path carries the request');
});

t.test('GET while the URL-encoded base64 is under 255 bytes; the path joined without a double slash', async (t) => {
  const fake = await startFakeResponder(() => ({ body: Buffer.from('ok') }));
  t.teardown(() => fake.close());
  // URL-encoded base64 always has an even length, so 254 is the longest GET: 62 zero groups ('AAAA')
  // and one 00 00 3F group ('AAA/', 'AAA%2F' once encoded). 192 zero bytes are 256 'A's.
  const at254 = Buffer.concat([Buffer.alloc(186), Buffer.from([0, 0, 0x3f])]);
  const at256 = Buffer.alloc(192);
  t.equal(encodeURIComponent(at254.toString('base64')).length, 254);
  t.equal(encodeURIComponent(at256.toString('base64')).length, 256);
  const request = (der: Buffer): OcspRequest => ({ ...buildOcspRequest(tpp.x509, ca.x509), der });
  t.same(await queryOcsp(`${fake.url}/ocsp`, request(at254), { timeoutMs: 2000 }), Buffer.from('ok'));
  await queryOcsp(`${fake.url}/ocsp/`, request(at254), { timeoutMs: 2000 });
  await queryOcsp(fake.url, request(at256), { timeoutMs: 2000 });
  t.same(
    fake.exchanges.map((e) => [e.method, e.path.length, e.contentType ?? 'none']),
    [
      ['GET', '/ocsp/'.length + 254, 'none'],
      ['GET', '/ocsp/'.length + 254, 'none'],
      ['POST', 1, 'application/ocsp-request'],
    ],
  );
  t.same(fake.exchanges[0]?.der, at254);
  t.same(fake.exchanges[2]?.der, at256);
});

t.test('queryOcsp: the responder down, slow, stalling, failing, too talkative', async (t) => {
  t.equal(await rejectionOf(async () => queryOcsp(await closedUrl(), buildOcspRequest(tpp.x509, ca.x509), { timeoutMs: 2000 })), 'unavailable', 'connection refused');
  t.equal(await rejectionOf(() => viaFake(t, (p) => ({ body: signedResponse(answerFor(p)), delayMs: 30_000 }), { timeoutMs: 200 })), 'unavailable', 'no headers before timeoutMs');
  t.equal(await rejectionOf(() => viaFake(t, (p) => ({ body: signedResponse(answerFor(p)), stall: true }), { timeoutMs: 200 })), 'unavailable', 'the body stalls');
  t.equal(await rejectionOf(() => viaFake(t, (p) => ({ status: 500, body: signedResponse(answerFor(p)) }))), 'unavailable', 'HTTP 500');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ status: 404 }))), 'unavailable', 'HTTP 404');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: Buffer.alloc(2000) }), { maxBytes: 1000 })), 'unavailable', 'over maxBytes');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: Buffer.alloc(64 * 1024 + 1) }))), 'unavailable', 'over the default 64 KiB');
  t.equal(await rejectionOf(() => queryOcsp('not a url', buildOcspRequest(tpp.x509, ca.x509), { timeoutMs: 2000 })), 'unavailable', 'a URL that does not parse');
  t.equal((await viaFake(t, (p) => ({ body: signedResponse(answerFor(p)) }), { maxBytes: 64 * 1024 })).status, 'good', 'within maxBytes');
});

t.test('fake responders: what the body says', async (t) => {
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: Buffer.from('<html>ocsp</html>') }))), 'malformed', 'garbage');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: Buffer.alloc(0) }))), 'malformed', 'empty');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: statusResponse(OCSPResponseStatus.tryLater) }))), 'responder_error', 'tryLater');
  t.equal(await rejectionOf(() => viaFake(t, () => ({ body: statusResponse(OCSPResponseStatus.unauthorized) }))), 'responder_error', 'unauthorized');
  const now = Math.floor(Date.now() / 1000) * 1000;
  t.same(await viaFake(t, (p) => answerFor(p, {}, fresh(now)), { now }), { status: 'good', thisUpdate: now - MINUTE, nextUpdate: now + 10 * MINUTE }, 'good');
  t.equal((await viaFake(t, (p) => answerFor(p, {}, { status: 'revoked' }))).status, 'revoked');
  t.equal((await viaFake(t, (p) => answerFor(p, {}, { status: 'unknown' }))).status, 'unknown');
});

t.test('fake responders: who signed', async (t) => {
  // Another key, the responderID naming the issuer: the issuer is the identified signer and its key does not verify.
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: impostorSigner, responder: ca.x509 }))), 'bad_signature', 'another key, responderID byName of the issuer');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: impostorSigner }))), 'bad_signature', 'an impostor CA of the same name');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: otherCaSigner, responder: ca.x509, responderId: 'byKey' }))), 'bad_signature', 'another key, responderID byKey of the issuer');
  // Another key naming itself: nobody the issuer trusts.
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: otherCaSigner }))), 'untrusted_signer', 'another CA, naming itself');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: otherCaSigner, certs: [otherCaSigner.cert] }))), 'untrusted_signer', 'another CA, its certificate attached');
  t.equal((await viaFake(t, (p) => answerFor(p, { responderId: 'byKey' }))).status, 'good', 'the CA, responderID byKey');
  // Delegated responders.
  t.equal((await viaFake(t, (p) => answerFor(p, { signer: delegate, certs: [delegate.cert] }))).status, 'good', 'delegated, byName');
  t.equal((await viaFake(t, (p) => answerFor(p, { signer: delegate, certs: [notResponder.x509, ca.x509, delegate.cert], responderId: 'byKey' }))).status, 'good', 'delegated, byKey, among other certificates');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: delegate }))), 'untrusted_signer', 'delegated, its certificate not attached');
  const noEku = signerOf(notResponder.pem, notResponder.keyPem);
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: noEku, certs: [noEku.cert] }))), 'untrusted_signer', 'a delegated signer without id-kp-OCSPSigning');
  const foreignDelegate = signerOf(foreignResponder.pem, foreignResponder.keyPem);
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: foreignDelegate, certs: [foreignDelegate.cert] }))), 'untrusted_signer', "another CA's OCSP responder");
  const impostorDelegate = signerOf(impostorResponder.pem, impostorResponder.keyPem);
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: impostorDelegate, certs: [impostorDelegate.cert] }))), 'untrusted_signer', "a responder issued under the issuer's name by another key");
  // The delegate named and attached, but the response signed by another key.
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { signer: otherCaSigner, responder: delegate.cert, certs: [delegate.cert] }))), 'bad_signature', 'the delegate identified, another key signing');
});

t.test('fake responders: which certificate, and when', async (t) => {
  const now = Math.floor(Date.now() / 1000) * 1000;
  const other = Buffer.from('7fffffff', 'hex');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { certId: alteredCertId(tppId, { serial: other }) }))), 'wrong_certificate', 'another serial');
  t.equal(await rejectionOf(() => viaFake(t, () => answerFor({ certIds: [certIdOf(tpp.x509, otherCa.x509)] }))), 'wrong_certificate', 'the same serial under another issuer');
  t.equal((await viaFake(t, () => answerFor({ certIds: [certIdOf(tpp.x509, ca.x509, 'sha256')] }))).status, 'good', 'answered with a SHA-256 CertID');
  t.equal(
    (await viaFake(t, (p) => answerFor(p, { responses: [{ certId: alteredCertId(tppId, { serial: other }), status: 'revoked' }, { certId: tppId, ...fresh(now) }] }), { now })).status,
    'good',
    'the one answer about tpp among others',
  );
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now - 20 * MINUTE), nextUpdate: new Date(now - MINUTE) }), { now })), 'stale', 'nextUpdate past');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now - MINUTE), nextUpdate: new Date(now) }), { now })), 'stale', 'nextUpdate = now');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now + SKEW + 1000), nextUpdate: new Date(now + DAY) }), { now })), 'not_yet_valid', 'thisUpdate beyond the skew');
  t.same(await viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now + SKEW), nextUpdate: new Date(now + DAY) }), { now }), { status: 'good', thisUpdate: now + SKEW, nextUpdate: now + DAY }, 'thisUpdate in the future, within the skew');
  t.same(await viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now - 2 * MINUTE), nextUpdate: undefined }), { now }), { status: 'good', thisUpdate: now - 2 * MINUTE }, 'no nextUpdate, recent');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now - DAY - 1000), nextUpdate: undefined }), { now })), 'stale', 'no nextUpdate, older than maxAgeMs: a replay');
  t.equal((await viaFake(t, (p) => answerFor(p, {}, { thisUpdate: new Date(now - 3 * DAY), nextUpdate: new Date(now + MINUTE) }), { now })).status, 'good', 'old but nextUpdate ahead: maxAgeMs does not apply');
});

t.test('fake responders: the nonce', async (t) => {
  t.equal((await viaFake(t, (p) => answerFor(p), { nonce: true })).status, 'good', 'echoed');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { nonce: undefined }), { nonce: true })), 'nonce_mismatch', 'missing (a pre-signed RFC 5019 answer)');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { nonce: Buffer.alloc(32, 7) }), { nonce: true })), 'nonce_mismatch', 'another nonce');
  t.equal(
    await rejectionOf(() => viaFake(t, (p) => answerFor(p, { nonce: undefined, extensions: [extension(id_pkix_ocsp_nonce, false, p.nonce ?? Buffer.alloc(0))] }), { nonce: true })),
    'nonce_mismatch',
    'the raw nonce without its OCTET STRING',
  );
  t.equal((await viaFake(t, (p) => answerFor(p, { nonce: Buffer.alloc(32, 7) }))).status, 'good', 'a nonce nobody asked for is ignored');
});

t.test('fake responders: critical extensions', async (t) => {
  const unknownOid = '1.3.6.1.4.1.99999.1';
  const value = new Uint8Array([0x05, 0x00]);
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, { extensions: [extension(unknownOid, true, value)] }))), 'unsupported', 'an unknown critical response extension');
  t.equal((await viaFake(t, (p) => answerFor(p, { extensions: [extension(unknownOid, false, value)] }))).status, 'good', 'not critical: ignored');
  t.equal(await rejectionOf(() => viaFake(t, (p) => answerFor(p, {}, { extensions: [extension(unknownOid, true, value)] }))), 'unsupported', 'an unknown critical single extension');
  t.equal((await viaFake(t, (p) => answerFor(p, {}, { status: 'revoked', extensions: [extension(id_ce_cRLReasons, true, new Uint8Array([0x0a, 0x01, 0x01]))] }))).status, 'revoked', 'a critical reasonCode is understood');
  t.equal(
    (await viaFake(t, (p) => answerFor(p, { nonce: undefined, extensions: [extension(id_pkix_ocsp_nonce, true, AsnConvert.serialize(new OctetString(p.nonce ?? Buffer.alloc(0))))] }), { nonce: true })).status,
    'good',
    'a critical nonce is understood',
  );
});

t.test('readOcspResponse: structure', async (t) => {
  const good = signedResponse(answerFor({ certIds: [tppId] }));
  t.equal(readBuilt(good).status, 'good');
  t.equal(await rejectionOf(() => readBuilt(Buffer.concat([good, Buffer.from([0])]))), 'malformed', 'a trailing byte');
  t.equal(await rejectionOf(() => readBuilt(good.subarray(0, good.length - 1))), 'malformed', 'truncated');
  t.equal(await rejectionOf(() => readBuilt(statusResponse(OCSPResponseStatus.successful))), 'malformed', 'successful without responseBytes');
  t.equal(await rejectionOf(() => readBuilt(wrap(basicResponse(answerFor({ certIds: [tppId] })), '1.3.6.1.5.5.7.48.1.99'))), 'malformed', 'another response type');
  t.equal(await rejectionOf(() => readBuilt(wrap(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])))), 'malformed', 'not a BasicOCSPResponse');
  t.equal(await rejectionOf(() => readBuilt(wrap(Buffer.concat([Buffer.from(AsnConvert.serialize(basicResponse(answerFor({ certIds: [tppId] })))), Buffer.from([0])])))), 'malformed', 'a trailing byte inside');
  t.equal(await rejectionOf(() => readBuilt(signedResponse(answerFor({ certIds: [tppId] }, { version: 1 })))), 'unsupported', 'ResponseData v2');
  t.equal(await rejectionOf(() => readBuilt(signedResponse(answerFor({ certIds: [tppId] }, { signatureAlgorithm: '1.2.840.10045.4.1' })))), 'bad_signature', 'ecdsa-with-SHA1: not accepted');
  t.equal(await rejectionOf(() => readBuilt(signedResponse(answerFor({ certIds: [tppId] }, { responses: [{ certId: tppId }, { certId: tppId }] })))), 'malformed', 'two answers about the certificate');
  t.equal(await rejectionOf(() => readBuilt(signedResponse(answerFor({ certIds: [alteredCertId(tppId, { hashAlgorithm: '1.2.840.113549.2.5' })] })))), 'wrong_certificate', 'a CertID hashed with MD5');
  t.equal(await rejectionOf(() => readBuilt(good, { issuer: otherCa.x509 }, buildOcspRequest(tpp.x509, ca.x509))), 'untrusted_signer', 'checked against another issuer');
  const forOther = buildOcspRequest(tpp.x509, otherCa.x509);
  t.equal(await rejectionOf(() => readBuilt(good, {}, forOther)), 'wrong_certificate', 'a request built for another issuer than check.issuer');
  const notACertificate = { raw: Buffer.from([0x30, 0x00]) } as unknown as X509Certificate;
  t.equal(await rejectionOf(() => readBuilt(good, { issuer: notACertificate })), 'malformed', 'an issuer the ASN.1 classes cannot read');
});

t.test('readOcspResponse: the delegated responder certificate at `now`', async (t) => {
  const short = signerOf(oneDayResponder.pem, oneDayResponder.keyPem);
  const at = (now: number): Uint8Array => signedResponse(answerFor({ certIds: [tppId] }, { signer: short, certs: [short.cert], responses: [{ certId: tppId, ...fresh(now) }] }));
  const now = Date.now();
  t.equal(readBuilt(at(now), { now }).status, 'good');
  t.equal(await rejectionOf(() => readBuilt(at(now + 2 * DAY), { now: now + 2 * DAY })), 'untrusted_signer', 'expired');
  t.equal(await rejectionOf(() => readBuilt(at(now - DAY), { now: now - DAY })), 'untrusted_signer', 'not yet valid');
  // A copy of the responder certificate whose signature does not verify is passed over.
  const broken = basicResponse(answerFor({ certIds: [tppId] }, { signer: delegate, certs: [delegate.cert, delegate.cert] }));
  const first = broken.certs?.[0];
  if (first) first.signatureValue = new ArrayBuffer(0);
  t.equal(readBuilt(wrap(broken)).status, 'good', 'a broken copy, then the real one');
});
