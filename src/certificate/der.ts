// DER framing (tag, length, where the contents are), read without building a tree. asn1js
// decodes at tens of µs per node: a CRL of 50,000 entries took 2.5 s, blocking the event loop, and
// a whole certificate ~0.2 ms. Walking tags and lengths finds the part that matters (a CRL's
// revoked list, a certificate's subject and one extension) in microseconds; that part is then
// typed by the @peculiar/asn1-* classes (../revocation/crl.ts, ./psd2.ts).

/** One DER TLV: its tag byte, and where it, its contents and it end in the buffer. */
export interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly body: number;
  readonly end: number;
}

export const TAG = { BOOLEAN: 0x01, INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, OID: 0x06, UTC_TIME: 0x17, GENERALIZED_TIME: 0x18, SEQUENCE: 0x30, CONTEXT_0: 0xa0, CONTEXT_3: 0xa3 } as const;

/** Bytes that are not the DER they should be. */
export class DerError extends Error {
  override readonly name = 'DerError';
}
const malformed = (message: string): DerError => new DerError(message);

/** The TLV at `at`, which must end by `limit`. Low tag numbers and definite lengths (at most 4 bytes) only: all a CRL uses. */
export function tlvAt(buf: Uint8Array, at: number, limit: number = buf.length): Tlv {
  if (at + 2 > limit) throw malformed('truncated DER');
  const tag = buf[at] as number;
  if ((tag & 0x1f) === 0x1f) throw malformed('unexpected high tag number');
  let length = buf[at + 1] as number;
  let body = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || body + bytes > limit) throw malformed('unsupported DER length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + (buf[body++] as number);
  }
  const end = body + length;
  if (end > limit) throw malformed('truncated DER');
  return { tag, start: at, body, end };
}

/** The TLVs inside a constructed one, in order. */
export function childrenOf(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const child = tlvAt(buf, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** The contents of a TLV (without its tag and length). */
export const contentOf = (buf: Uint8Array, tlv: Tlv): Uint8Array => buf.subarray(tlv.body, tlv.end);

/** The bytes of a whole TLV (tag and length included), for a typed parse. */
export const bytesOf = (buf: Uint8Array, tlv: Tlv): Uint8Array => buf.subarray(tlv.start, tlv.end);

/** An OBJECT IDENTIFIER's dotted form. */
export function oidOf(buf: Uint8Array, tlv: Tlv): string {
  if (tlv.tag !== TAG.OID || tlv.end === tlv.body) throw malformed('not an OBJECT IDENTIFIER');
  const arcs: number[] = [];
  let value = 0;
  for (let i = tlv.body; i < tlv.end; i++) {
    const byte = buf[i] as number;
    value = value * 128 + (byte & 0x7f);
    if (byte & 0x80) continue;
    if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
    else arcs.push(value);
    value = 0;
  }
  if ((buf[tlv.end - 1] as number) & 0x80) throw malformed('truncated OBJECT IDENTIFIER');
  return arcs.join('.');
}

/** An Extension (RFC 5280 §4.1): its id (not decoded: most callers compare bytes or need only some), criticality and value. */
export interface FramedExtension {
  readonly id: Tlv;
  readonly critical: boolean;
  /** The OCTET STRING: its contents (contentOf) are the extension's own DER. */
  readonly value: Tlv;
}

/** Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
export function extensionAt(buf: Uint8Array, extension: Tlv): FramedExtension {
  if (extension.tag !== TAG.SEQUENCE) throw malformed('an extension that is not a SEQUENCE');
  const [id, second, third, ...more] = childrenOf(buf, extension);
  if (id?.tag !== TAG.OID || second === undefined || more.length > 0) throw malformed('an unreadable extension');
  const flagged = second.tag === TAG.BOOLEAN;
  const value = flagged ? third : second;
  if (value?.tag !== TAG.OCTET_STRING || (flagged && second.end !== second.body + 1) || (!flagged && third !== undefined)) throw malformed('an unreadable extension');
  return { id, critical: flagged && buf[second.body] !== 0, value };
}

/** Whether an OBJECT IDENTIFIER's TLV is exactly `expected` (its DER, tag and length included). */
export function isOid(buf: Uint8Array, id: Tlv, expected: Uint8Array): boolean {
  if (id.end - id.start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (buf[id.start + i] !== expected[i]) return false;
  return true;
}

/**
 * A certificate's subject Name (its DER) and its extensions, by framing alone.
 * TBSCertificate: [0] version, serial, signature, issuer, validity, subject, spki, [1], [2], [3] extensions.
 */
export function certificateParts(der: Uint8Array): { readonly subject: Uint8Array; readonly extensions: readonly FramedExtension[] } {
  const certificate = tlvAt(der, 0);
  const [tbs] = childrenOf(der, certificate);
  if (certificate.tag !== TAG.SEQUENCE || certificate.end !== der.byteLength || tbs?.tag !== TAG.SEQUENCE) throw malformed('not a certificate');
  const fields = childrenOf(der, tbs);
  const first = fields[0]?.tag === TAG.CONTEXT_0 ? 1 : 0;
  const subject = fields[first + 4];
  if (subject?.tag !== TAG.SEQUENCE) throw malformed('a certificate without a subject');
  const tagged = fields.find((field, i) => i > first + 5 && field.tag === TAG.CONTEXT_3);
  const [list] = tagged ? childrenOf(der, tagged) : [];
  return { subject: bytesOf(der, subject), extensions: list ? childrenOf(der, list).map((e) => extensionAt(der, e)) : [] };
}
