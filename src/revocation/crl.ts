// Certificate revocation lists (RFC 5280 §5): where a leaf says to find them, fetching one, and
// reading one into a verified set of revoked serials. Freshness is the store's to judge.
import type { X509Certificate } from 'node:crypto';
import { AsnParser } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  CRLDistributionPoints,
  Extensions,
  IssuingDistributionPoint,
  KeyUsage,
  KeyUsageFlags,
  Time,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLDistributionPoints,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  id_ce_deltaCRLIndicator,
  id_ce_invalidityDate,
  id_ce_issuerAltName,
  id_ce_issuingDistributionPoint,
  id_ce_keyUsage,
  type Extension,
  type GeneralName,
} from '@peculiar/asn1-x509';
import { request } from 'undici';
import { DerError, TAG, bytesOf, certificateParts, childrenOf, contentOf, extensionAt, isOid, oidOf, tlvAt, type FramedExtension, type Tlv } from '../certificate/der.js';
import { verifySignature } from './signature.js';
import { RevocationError, serialKey } from './types.js';

export interface Crl {
  readonly issuer: X509Certificate;
  readonly thisUpdate: number;
  readonly nextUpdate?: number;
  /** How many serials it lists. */
  readonly size: number;
  /**
   * The URIs its issuingDistributionPoint names (RFC 5280 §5.2.5): a partitioned CRL covers only
   * the certificates whose distribution points name one of them. Absent: all of the issuer's.
   */
  readonly scope?: readonly string[];
  /** serial as serialKey() gives it */
  has(serial: string): boolean;
}

/** A CRL bigger than this is a broken or hostile server (the largest public CRLs are tens of MiB). */
export const MAX_CRL_BYTES = 64 * 1024 * 1024;

/** CRL extensions certbound may ignore even when marked critical: they change nothing about who is revoked. */
const UNDERSTOOD_CRL_EXTENSIONS: ReadonlySet<string> = new Set([id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_issuerAltName]);
/** Entry extensions likewise: the reason, the invalidity date and the hold instruction (2.5.29.23). */
const UNDERSTOOD_ENTRY_EXTENSIONS: ReadonlySet<string> = new Set([id_ce_cRLReasons, id_ce_invalidityDate, '2.5.29.23']);

const PEM_CRL = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]*)-----END X509 CRL-----/;
const DER_SEQUENCE = 0x30;

const malformed = (message: string): RevocationError => new RevocationError('malformed', message);
const unsupported = (message: string): RevocationError => new RevocationError('unsupported', message);

/** The http(s) fullName URIs of the leaf's CRL distribution points extension (parsed with @peculiar/asn1-x509); [] if none. */
export function crlDistributionPointsOf(leaf: X509Certificate): string[] {
  try {
    const extension = certificateParts(leaf.raw).extensions.find((e) => oidOf(leaf.raw, e.id) === id_ce_cRLDistributionPoints);
    if (extension === undefined) return [];
    const points = AsnParser.parse(contentOf(leaf.raw, extension.value), CRLDistributionPoints);
    const uris = points.flatMap((point) => urisOf(point.distributionPoint?.fullName ?? []));
    return [...new Set(uris.filter((uri) => /^https?:\/\//i.test(uri)))];
  } catch {
    // Node parsed the certificate already: only its CRLDP can be broken, and then it names nothing usable.
    return [];
  }
}

/**
 * Reads a CRL, PEM or DER. The issuer is the one of `issuers` whose subject Name DER equals the
 * CRL's issuer and whose key verifies the signature over the exact received tbsCertList bytes;
 * its keyUsage, when present, must include cRLSign. Does not judge freshness (the store does).
 * Throws only RevocationError: 'malformed', 'wrong_certificate', 'bad_signature', 'unsupported'.
 */
export function readCrl(bytes: Uint8Array, issuers: readonly X509Certificate[]): Crl {
  try {
    const received = parseCrl(derOf(bytes));
    const issuer = signerOf(received, issuers);
    return contentsOf(received, issuer);
  } catch (error) {
    if (error instanceof DerError) throw malformed(error.message);
    throw error;
  }
}

/** GET over undici with a timeout and a byte cap (default 64 MiB); RevocationError('unavailable') on any failure or non-200. */
export async function fetchCrl(url: string, options: { timeoutMs: number; maxBytes?: number; signal?: AbortSignal }): Promise<Uint8Array> {
  const maxBytes = options.maxBytes ?? MAX_CRL_BYTES;
  if (!/^https?:\/\//i.test(url)) throw new RevocationError('unavailable', 'not an http(s) URL');
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  try {
    // No redirects (undici follows none by default): a CRL is fetched from the URL named, or not at all.
    const res = await request(url, { method: 'GET', headers: { accept: 'application/pkix-crl' }, signal });
    if (res.statusCode !== 200) {
      void res.body.dump().catch(() => undefined); // bounded by undici (128 KiB), then the socket is closed
      throw new RevocationError('unavailable', `HTTP ${res.statusCode}`);
    }
    if (Number(res.headers['content-length']) > maxBytes) {
      void res.body.dump().catch(() => undefined);
      throw new RevocationError('unavailable', `CRL larger than ${maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const bytes = chunk as Buffer;
      size += bytes.length;
      if (size > maxBytes) throw new RevocationError('unavailable', `CRL larger than ${maxBytes} bytes`); // leaving the loop destroys the body
      chunks.push(bytes);
    }
    return Buffer.concat(chunks);
  } catch (err) {
    if (err instanceof RevocationError) throw err;
    throw new RevocationError('unavailable', timeout.aborted ? 'timed out' : String(err));
  }
}



/** A CRL as received: its fields, typed, and the exact bytes of the signed part and of the issuer Name. */
interface ReceivedCrl {
  readonly tbs: Uint8Array;
  readonly issuerName: Uint8Array;
  readonly algorithm: string;
  readonly signature: Uint8Array;
  readonly thisUpdate: Time;
  readonly nextUpdate?: Time;
  /** revokedCertificates, read once the signature has verified. */
  readonly list?: Tlv;
  readonly der: Uint8Array;
  readonly extensions: readonly Extension[];
}

function derOf(bytes: Uint8Array): Uint8Array {
  if (bytes[0] === DER_SEQUENCE) return bytes;
  const pem = PEM_CRL.exec(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'));
  if (pem === null) throw malformed('neither DER nor a PEM X509 CRL');
  return Buffer.from(String(pem[1]), 'base64'); // the group always takes part, if empty
}

/**
 * CertificateList, field by field: ./der.ts frames it (the revoked list is walked, not decoded
 * into a tree: asn1js takes ~40 µs an entry), the @peculiar/asn1-x509 classes type every other
 * field. Not AsnParser.parse(der, CertificateList) whole: @peculiar/asn1-schema 2.x drops
 * revokedCertificates and crlExtensions when the optional nextUpdate is absent, which would read a
 * CRL as listing no one.
 */
function parseCrl(der: Uint8Array): ReceivedCrl {
  const top = tlvAt(der, 0);
  if (top.tag !== TAG.SEQUENCE || top.end !== der.byteLength) throw malformed('not one DER value');
  const [tbsCertList, outerAlgorithm, signature, ...rest] = childrenOf(der, top);
  if (tbsCertList?.tag !== TAG.SEQUENCE || signature?.tag !== TAG.BIT_STRING || rest.length > 0 || signature.end === signature.body || der[signature.body] !== 0) {
    throw malformed('not a CertificateList');
  }
  const fields = childrenOf(der, tbsCertList);
  let at = fields[0]?.tag === TAG.INTEGER ? 1 : 0; // version, v2 when present
  const algorithm = typed(der, fields[at++], AlgorithmIdentifier).algorithm;
  const issuer = fields[at++];
  if (issuer?.tag !== TAG.SEQUENCE) throw malformed('not a CertificateList (Name expected)');
  const thisUpdate = typed(der, fields[at++], Time);
  const isTime = (tlv: Tlv | undefined) => tlv?.tag === TAG.UTC_TIME || tlv?.tag === TAG.GENERALIZED_TIME;
  const nextUpdate = isTime(fields[at]) ? typed(der, fields[at++], Time) : undefined;
  const list = fields[at]?.tag === TAG.SEQUENCE ? fields[at++] : undefined;
  let extensions: readonly Extension[] = [];
  const tagged = fields[at];
  if (tagged?.tag === TAG.CONTEXT_0) {
    const [inner, ...more] = childrenOf(der, tagged); // [0] EXPLICIT Extensions
    if (more.length > 0) throw malformed('unexpected fields in crlExtensions');
    extensions = typed(der, inner, Extensions);
    at++;
  }
  if (at !== fields.length) throw malformed('unexpected fields in tbsCertList');
  if (typed(der, outerAlgorithm, AlgorithmIdentifier).algorithm !== algorithm) throw malformed('signatureAlgorithm differs from tbsCertList.signature');
  return {
    der,
    tbs: bytesOf(der, tbsCertList),
    issuerName: bytesOf(der, issuer),
    algorithm,
    signature: der.subarray(signature.body + 1, signature.end),
    thisUpdate,
    ...(nextUpdate ? { nextUpdate } : {}),
    list,
    extensions,
  };
}

/**
 * revokedCertificates, straight into the set of serials: each entry's extensions are judged as it
 * is read (an indirect CRL, an unknown critical extension), and nothing else is kept of it.
 */
function serialsOf(der: Uint8Array, list: Tlv | undefined): Set<string> {
  const serials = new Set<string>();
  if (list === undefined) return serials;
  for (let at = list.body; at < list.end; ) {
    const entry = tlvAt(der, at, list.end);
    at = entry.end;
    if (entry.tag !== TAG.SEQUENCE) throw malformed('a revoked entry that is not a SEQUENCE');
    const serial = tlvAt(der, entry.body, entry.end);
    if (serial.tag !== TAG.INTEGER || serial.end === serial.body) throw malformed('a revoked entry without a serial');
    const date = tlvAt(der, serial.end, entry.end);
    if (date.tag !== TAG.UTC_TIME && date.tag !== TAG.GENERALIZED_TIME) throw malformed('a revoked entry without a revocation date');
    if (date.end < entry.end) {
      const inner = tlvAt(der, date.end, entry.end);
      if (inner.tag !== TAG.SEQUENCE || inner.end !== entry.end) throw malformed('unexpected fields in a revoked entry');
      for (const extension of childrenOf(der, inner)) judgeEntryExtension(der, extensionAt(der, extension));
    }
    serials.add(serialKey(der.subarray(serial.body, serial.end)));
  }
  return serials;
}

/** certificateIssuer (2.5.29.29), DER-encoded. */
const CERTIFICATE_ISSUER_DER = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x1d]);

/**
 * An entry's extension: an indirect CRL, or an unknown critical one, is refused. Only those ids are
 * decoded: the others (the reason code on nearly every entry) change nothing.
 */
function judgeEntryExtension(der: Uint8Array, { id, critical }: FramedExtension): void {
  if (isOid(der, id, CERTIFICATE_ISSUER_DER)) throw unsupported('an indirect CRL (certificateIssuer entry)');
  if (!critical) return;
  const extnID = oidOf(der, id);
  if (!UNDERSTOOD_ENTRY_EXTENSIONS.has(extnID)) throw unsupported(`critical entry extension ${extnID}`);
}

/** A field typed by its @peculiar/asn1-x509 class; anything else is malformed. */
function typed<T>(der: Uint8Array, tlv: Tlv | undefined, type: new () => T): T {
  if (tlv !== undefined) {
    try {
      return AsnParser.parse(bytesOf(der, tlv), type);
    } catch {
      // not that type: malformed, below
    }
  }
  throw malformed(`not a CertificateList (${type.name} expected)`);
}

/** What readCrl needs of a candidate issuer, computed once per certificate. */
interface IssuerFacts {
  readonly subject: Buffer;
  readonly mayCrlSign: boolean;
}
const issuerFacts = new WeakMap<X509Certificate, IssuerFacts>();

function factsOf(issuer: X509Certificate): IssuerFacts {
  const known = issuerFacts.get(issuer);
  if (known !== undefined) return known;
  const { subject, extensions } = certificateParts(issuer.raw);
  const keyUsage = extensions.find((e) => oidOf(issuer.raw, e.id) === id_ce_keyUsage);
  const facts: IssuerFacts = {
    subject: Buffer.from(subject),
    // RFC 5280 §4.2.1.3: without the extension the key may sign anything.
    mayCrlSign: keyUsage === undefined || (AsnParser.parse(contentOf(issuer.raw, keyUsage.value), KeyUsage).toNumber() & KeyUsageFlags.cRLSign) !== 0,
  };
  issuerFacts.set(issuer, facts);
  return facts;
}

function signerOf(received: ReceivedCrl, issuers: readonly X509Certificate[]): X509Certificate {
  const named = issuers.filter((issuer) => factsOf(issuer).subject.equals(received.issuerName));
  if (named.length === 0) throw new RevocationError('wrong_certificate', 'no configured issuer has the CRL issuer name');
  const signers = named.filter((issuer) => verifySignature(received.algorithm, received.tbs, received.signature, issuer.publicKey));
  const signer = signers.find((issuer) => factsOf(issuer).mayCrlSign);
  if (signer !== undefined) return signer;
  throw new RevocationError('bad_signature', signers.length > 0 ? 'the issuer key usage lacks cRLSign' : 'the CRL signature does not verify');
}

function contentsOf(received: ReceivedCrl, issuer: X509Certificate): Crl {
  const scope = scopeOf(received.extensions);
  const revoked = serialsOf(received.der, received.list);
  const nextUpdate = received.nextUpdate?.getTime().getTime();
  return Object.freeze({
    issuer,
    thisUpdate: received.thisUpdate.getTime().getTime(),
    ...(nextUpdate === undefined ? {} : { nextUpdate }),
    size: revoked.size,
    ...(scope === undefined ? {} : { scope }),
    has: (serial: string) => revoked.has(serial),
  });
}

/** Judges the CRL extensions; returns the issuingDistributionPoint's URIs when it names some. */
function scopeOf(extensions: readonly Extension[]): readonly string[] | undefined {
  let scope: readonly string[] | undefined;
  for (const extension of extensions) {
    if (extension.extnID === id_ce_deltaCRLIndicator) throw unsupported('a delta CRL');
    if (extension.extnID === id_ce_issuingDistributionPoint) scope = scopeOfIdp(extension);
    else if (extension.critical && !UNDERSTOOD_CRL_EXTENSIONS.has(extension.extnID)) throw unsupported(`critical CRL extension ${extension.extnID}`);
  }
  return scope;
}

function scopeOfIdp(extension: Extension): readonly string[] | undefined {
  let idp: IssuingDistributionPoint;
  try {
    idp = AsnParser.parse(extension.extnValue, IssuingDistributionPoint);
  } catch {
    throw malformed('unreadable issuingDistributionPoint');
  }
  if (idp.indirectCRL) throw unsupported('an indirect CRL');
  if (idp.onlySomeReasons !== undefined) throw unsupported('a CRL limited to some reasons');
  // Such a CRL says nothing of end-entity certificates, which are all certbound asks about.
  if (idp.onlyContainsCACerts || idp.onlyContainsAttributeCerts) throw unsupported('a CRL for CA or attribute certificates only');
  const point = idp.distributionPoint;
  if (point === undefined) return undefined;
  const uris = urisOf(point.fullName ?? []);
  if (uris.length === 0) throw unsupported('an issuingDistributionPoint naming no URI');
  return uris;
}

function urisOf(names: readonly GeneralName[]): string[] {
  return names.flatMap((name) => (name.uniformResourceIdentifier === undefined ? [] : [name.uniformResourceIdentifier]));
}
