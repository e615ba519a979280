// OCSP (RFC 6960) for a TPP's client certificate: build the request, then read the answer and
// accept it only when it is signed by the issuer or its delegated responder, fresh, and about
// exactly the certificate asked for. Sending it over HTTP is in ./ocsp-fetch.ts.
import { createHash, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnParser, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier, AuthorityInfoAccessSyntax, Certificate, ExtendedKeyUsage, Extension, id_ad_ocsp, id_ce_extKeyUsage,
  id_ce_invalidityDate, id_ce_cRLReasons, id_pe_authorityInfoAccess,
} from '@peculiar/asn1-x509';
import {
  BasicOCSPResponse, CertID, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request, TBSRequest, Version, id_kp_OCSPSigning,
  id_pkix_ocsp_archive_cutoff, id_pkix_ocsp_basic, id_pkix_ocsp_crl, id_pkix_ocsp_extended_revoke, id_pkix_ocsp_nonce,
  type ResponderID, type SingleResponse,
} from '@peculiar/asn1-ocsp';
import * as asn1js from 'asn1js';
import { verifySignature } from './signature.js';
import { RevocationError, type SourceAnswer } from './types.js';

export { queryOcsp, OCSP_MAX_BYTES } from './ocsp-fetch.js';

export interface OcspRequest {
  /** The OCSPRequest, DER. */
  readonly der: Buffer;
  /** The RFC 8954 nonce sent, when one was. */
  readonly nonce?: Buffer;
  /** The leaf's serial, its INTEGER's content bytes: the SingleResponse used must name exactly these. */
  readonly serialNumber: Buffer;
  /** SHA-1 of the issuer's Name and of its key, as in the request: the issuer the request was built for. */
  readonly issuerNameHash: Buffer;
  readonly issuerKeyHash: Buffer;
}

export interface OcspCheck {
  readonly request: OcspRequest;
  /** The leaf's issuer: it signs the answer, or certifies the responder that does. */
  readonly issuer: X509Certificate;
  /** Epoch ms. */
  readonly now: number;
  /** How far in the future thisUpdate may be. */
  readonly clockSkewMs: number;
  /** How old thisUpdate may be when the answer has no nextUpdate. */
  readonly maxAgeMs: number;
}

const SHA1 = '1.3.14.3.2.26';
/** CertID hash algorithms a responder may answer with (RFC 6960 §4.1.1 asks for none in particular). */
const CERT_ID_HASHES: ReadonlyMap<string, string> = new Map([
  [SHA1, 'sha1'],
  ['2.16.840.1.101.3.4.2.1', 'sha256'],
  ['2.16.840.1.101.3.4.2.2', 'sha384'],
  ['2.16.840.1.101.3.4.2.3', 'sha512'],
]);
/** Extensions read, or safe to ignore, even when critical. */
const RESPONSE_EXTENSIONS: ReadonlySet<string> = new Set([id_pkix_ocsp_nonce, id_pkix_ocsp_extended_revoke]);
const SINGLE_EXTENSIONS: ReadonlySet<string> = new Set([id_pkix_ocsp_crl, id_pkix_ocsp_archive_cutoff, id_ce_cRLReasons, id_ce_invalidityDate]);
const NONCE_BYTES = 32;

/** The first http(s) OCSP accessLocation of the leaf's Authority Information Access extension; undefined if none (or if it does not parse). */
export function ocspUrlOf(leaf: X509Certificate): string | undefined {
  try {
    const aia = extensionOf(AsnConvert.parse(leaf.raw, Certificate).tbsCertificate.extensions, id_pe_authorityInfoAccess);
    if (aia === undefined) return undefined;
    const urls = AsnConvert.parse(aia.extnValue.buffer, AuthorityInfoAccessSyntax)
      .filter((d) => d.accessMethod === id_ad_ocsp)
      .map((d) => d.accessLocation.uniformResourceIdentifier ?? '');
    return urls.find((u) => /^https?:\/\//i.test(u));
  } catch {
    return undefined;
  }
}

/** A request for the leaf (SHA-1 CertID, RFC 5019), with a RFC 8954 nonce when options.nonce. */
export function buildOcspRequest(leaf: X509Certificate, issuer: X509Certificate, options: { nonce?: boolean } = {}): OcspRequest {
  const id = issuerOf(issuer);
  const serial = parseCertificate(leaf.raw).tbsCertificate.serialNumber;
  const issuerNameHash = digest('sha1', id.name);
  const issuerKeyHash = digest('sha1', id.key);
  const reqCert = new CertID({
    // parameters: null is encoded as NULL, as openssl and most clients send SHA-1's.
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: new OctetString(issuerNameHash),
    issuerKeyHash: new OctetString(issuerKeyHash),
    serialNumber: serial,
  });
  const nonce = options.nonce ? randomBytes(NONCE_BYTES) : undefined;
  const tbsRequest = new TBSRequest({ requestList: [new Request({ reqCert })] });
  if (nonce) tbsRequest.requestExtensions = [new Extension({ extnID: id_pkix_ocsp_nonce, extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))) })];
  const der = Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest })));
  return { der, ...(nonce ? { nonce } : {}), serialNumber: Buffer.from(serial), issuerNameHash, issuerKeyHash };
}

/** Verifies and reads a response. Throws only RevocationError, whatever the bytes. */
export function readOcspResponse(der: Uint8Array, check: OcspCheck): SourceAnswer {
  try {
    return read(der, check);
  } catch (e) {
    if (e instanceof RevocationError) throw e;
    throw new RevocationError('malformed', 'the response does not parse');
  }
}

function read(der: Uint8Array, check: OcspCheck): SourceAnswer {
  const response = AsnParser.fromASN<OCSPResponse>(parseDer(der), OCSPResponse);
  if (response.responseStatus !== OCSPResponseStatus.successful) throw new RevocationError('responder_error', `responseStatus ${response.responseStatus}`);
  if (response.responseBytes?.responseType !== id_pkix_ocsp_basic) throw new RevocationError('malformed', 'not a basic OCSP response');
  const element = parseDer(new Uint8Array(response.responseBytes.response.buffer));
  const basic = AsnParser.fromASN<BasicOCSPResponse>(element, BasicOCSPResponse);
  // The signature covers tbsResponseData as received: the parser keeps the parsed element's own bytes
  // (valueBeforeDecodeView, `raw: true` in the schema), never a re-encoding.
  if (basic.tbsResponseDataRaw === undefined) throw new RevocationError('malformed', 'no tbsResponseData');
  const tbs = new Uint8Array(basic.tbsResponseDataRaw);
  const issuer = issuerOf(check.issuer);
  const key = signerKey(basic.tbsResponseData.responderID, certificatesAsReceived(element), issuer, check.now);
  if (!verifySignature(basic.signatureAlgorithm.algorithm, tbs, new Uint8Array(basic.signature), key)) {
    throw new RevocationError('bad_signature', 'the response signature does not verify');
  }
  const data = basic.tbsResponseData;
  if (data.version !== Version.v1) throw new RevocationError('unsupported', `ResponseData version ${data.version}`);
  refuseCriticalExtensions(data.responseExtensions, RESPONSE_EXTENSIONS);
  if (check.request.nonce && !nonceOf(data.responseExtensions)?.equals(check.request.nonce)) {
    throw new RevocationError('nonce_mismatch', 'the response does not carry the nonce sent');
  }
  const single = singleResponseFor(data.responses, check.request, issuer);
  refuseCriticalExtensions(single.singleExtensions, SINGLE_EXTENSIONS);
  return answerOf(single, check);
}

/** One DER element taking all of `bytes` (trailing bytes are refused too). */
function parseDer(bytes: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(bytes);
  if (parsed.offset !== bytes.byteLength) throw new RevocationError('malformed', 'not one ASN.1 element');
  return parsed.result;
}

interface Issuer {
  readonly cert: X509Certificate;
  /** The DER of its subject Name. */
  readonly name: Buffer;
  /** The contents of its subjectPublicKey BIT STRING. */
  readonly key: Buffer;
}

function issuerOf(cert: X509Certificate): Issuer {
  const tbs = parseCertificate(cert.raw).tbsCertificate;
  return { cert, name: Buffer.from(AsnConvert.serialize(tbs.subject)), key: Buffer.from(tbs.subjectPublicKeyInfo.subjectPublicKey) };
}

function parseCertificate(der: Uint8Array): Certificate {
  try {
    return AsnConvert.parse(der, Certificate);
  } catch {
    throw new RevocationError('malformed', 'a certificate does not parse');
  }
}

/**
 * The key that must have signed (RFC 6960 §4.2.2.2): the issuer's when the responderID names it,
 * else that of a certificate in `certs` the responderID names, issued by the issuer for OCSP signing
 * and valid at `now`.
 */
function signerKey(responderId: ResponderID, certs: readonly Uint8Array[], issuer: Issuer, now: number): KeyObject {
  if (names(responderId, issuer)) return issuer.cert.publicKey;
  for (const der of certs) {
    const delegate = delegateOf(der);
    if (names(responderId, delegate) && isDelegatedBy(delegate, issuer, now)) return delegate.cert.publicKey;
  }
  throw new RevocationError('untrusted_signer', 'signed by neither the issuer nor a responder it delegated to');
}

interface Delegate extends Issuer {
  readonly asn: Certificate;
}

function delegateOf(der: Uint8Array): Delegate {
  const asn = AsnConvert.parse(der, Certificate);
  const tbs = asn.tbsCertificate;
  return { cert: new X509Certificate(der), asn, name: Buffer.from(AsnConvert.serialize(tbs.subject)), key: Buffer.from(tbs.subjectPublicKeyInfo.subjectPublicKey) };
}

function names(responderId: ResponderID, who: Issuer): boolean {
  if (responderId.byName !== undefined) return Buffer.from(AsnConvert.serialize(responderId.byName)).equals(who.name);
  return responderId.byKey !== undefined && Buffer.from(responderId.byKey.buffer).equals(digest('sha1', who.key));
}

function isDelegatedBy(delegate: Delegate, issuer: Issuer, now: number): boolean {
  const { validity, extensions } = delegate.asn.tbsCertificate;
  if (now < validity.notBefore.getTime().getTime() || now > validity.notAfter.getTime().getTime()) return false;
  const eku = extensionOf(extensions, id_ce_extKeyUsage);
  if (eku === undefined || !AsnConvert.parse(eku.extnValue.buffer, ExtendedKeyUsage).includes(id_kp_OCSPSigning)) return false;
  return delegate.cert.checkIssued(issuer.cert) && delegate.cert.verify(issuer.cert.publicKey);
}

/**
 * The DER of each certificate in BasicOCSPResponse.certs, as received. `basic` parsed as a
 * BasicOCSPResponse, so it is constructed, and a [0] among its fields holds the SEQUENCE OF Certificate.
 */
function certificatesAsReceived(basic: asn1js.AsnType): Uint8Array[] {
  const tagged = (basic as asn1js.Constructed).valueBlock.value.find((f) => f.idBlock.tagClass === 3 && f.idBlock.tagNumber === 0);
  const list = (tagged as asn1js.Constructed | undefined)?.valueBlock.value[0] as asn1js.Constructed | undefined;
  return list?.valueBlock.value.map((c) => c.valueBeforeDecodeView) ?? [];
}

function refuseCriticalExtensions(extensions: readonly Extension[] | undefined, understood: ReadonlySet<string>): void {
  const unknown = extensions?.find((e) => e.critical && !understood.has(e.extnID));
  if (unknown !== undefined) throw new RevocationError('unsupported', `critical extension ${unknown.extnID}`);
}

/** The nonce of the response (RFC 8954: extnValue holds an OCTET STRING); undefined if absent or not one. */
function nonceOf(extensions: readonly Extension[] | undefined): Buffer | undefined {
  const extension = extensionOf(extensions, id_pkix_ocsp_nonce);
  if (extension === undefined) return undefined;
  try {
    return Buffer.from(AsnConvert.parse(extension.extnValue.buffer, OctetString).buffer);
  } catch {
    return undefined;
  }
}

/** The one SingleResponse about the certificate asked for, its CertID hashed again with the algorithm the responder used. */
function singleResponseFor(responses: readonly SingleResponse[], request: OcspRequest, issuer: Issuer): SingleResponse {
  if (!digest('sha1', issuer.name).equals(request.issuerNameHash) || !digest('sha1', issuer.key).equals(request.issuerKeyHash)) {
    throw new RevocationError('wrong_certificate', 'the request was built for another issuer');
  }
  const matching = responses.filter(({ certID }) => {
    const hash = CERT_ID_HASHES.get(certID.hashAlgorithm.algorithm);
    return (
      hash !== undefined &&
      Buffer.from(certID.serialNumber).equals(request.serialNumber) &&
      Buffer.from(certID.issuerNameHash.buffer).equals(digest(hash, issuer.name)) &&
      Buffer.from(certID.issuerKeyHash.buffer).equals(digest(hash, issuer.key))
    );
  });
  const [single, ...others] = matching;
  if (single === undefined) throw new RevocationError('wrong_certificate', 'no answer about the certificate asked for');
  // Two answers about one certificate: no telling which holds.
  if (others.length > 0) throw new RevocationError('malformed', 'more than one answer about the certificate');
  return single;
}

function answerOf(single: SingleResponse, check: OcspCheck): SourceAnswer {
  const thisUpdate = single.thisUpdate.getTime();
  const nextUpdate = single.nextUpdate?.getTime();
  if (thisUpdate > check.now + check.clockSkewMs) throw new RevocationError('not_yet_valid', 'thisUpdate is in the future');
  if (nextUpdate !== undefined && nextUpdate <= check.now) throw new RevocationError('stale', 'nextUpdate has passed');
  // Without nextUpdate only thisUpdate tells a fresh answer from a replayed old one.
  if (nextUpdate === undefined && thisUpdate < check.now - check.maxAgeMs) throw new RevocationError('stale', 'thisUpdate is older than the maximum age');
  // The CHOICE parsed: revoked, good (a NULL), else unknown, which is never read as good anyway.
  const { good, revoked } = single.certStatus;
  const status = revoked !== undefined ? 'revoked' : good === null ? 'good' : 'unknown';
  return nextUpdate === undefined ? { status, thisUpdate } : { status, thisUpdate, nextUpdate };
}

function extensionOf(extensions: readonly Extension[] | undefined, id: string): Extension | undefined {
  return extensions?.find((e) => e.extnID === id);
}

const digest = (algorithm: string, data: Uint8Array): Buffer => createHash(algorithm).update(data).digest();
