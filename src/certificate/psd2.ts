import type { X509Certificate } from 'node:crypto';
import { AsnArray, AsnConvert, AsnParser, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from '@peculiar/asn1-schema';
import { Name } from '@peculiar/asn1-x509';
import { certificateParts, contentOf, isOid } from './der.js';
import { QCStatements } from '@peculiar/asn1-x509-qualified';
import { fromBER } from 'asn1js';
import { PSD2_ROLES, type Psd2Role } from '../config/schema.js';

/** What a QWAC says about its PSD2 holder (ETSI TS 119 495 §5.1, EN 319 412-1 §5.1.4). */
export interface Psd2Identity {
  /** The known roles found (by OID 0.4.0.19495.1.1–4 → PSP_AS, PSP_PI, PSP_AI, PSP_IC), deduplicated, in PSD2_ROLES order. */
  readonly roles: readonly Psd2Role[];
  readonly ncaName?: string;
  readonly ncaId?: string;
  /** The subject's organizationIdentifier (2.5.4.97), e.g. PSDGB-FCA-123456; only when it is safe as a header value (printable ASCII, no control characters, ≤ 256 chars). */
  readonly organizationId?: string;
}

/** The PSD2QcType statement alone, as read from a qcStatements extension value. */
export type Psd2Statement = Pick<Psd2Identity, 'roles' | 'ncaName' | 'ncaId'>;

export const ID_ETSI_PSD2_STATEMENT = '0.4.0.19495.2';
export const ID_AT_ORGANIZATION_IDENTIFIER = '2.5.4.97';

const ROLE_BY_OID: ReadonlyMap<string, Psd2Role> = new Map([
  ['0.4.0.19495.1.1', 'PSP_AS'],
  ['0.4.0.19495.1.2', 'PSP_PI'],
  ['0.4.0.19495.1.3', 'PSP_AI'],
  ['0.4.0.19495.1.4', 'PSP_IC'],
]);

// ETSI TS 119 495 Annex A. The decorators are called as plain functions (what tslib's __decorate
// does in @peculiar's own build): this repo compiles TC39 decorators, which these are not.

/** RoleOfPSP ::= SEQUENCE { roleOfPspOid RoleOfPspOid, roleOfPspName RoleOfPspName } */
export class RoleOfPsp {
  public roleOfPspOid = '';
  /** UTF8String (SIZE(256)); informative only: the OID decides the role. */
  public roleOfPspName = '';
}
AsnProp({ type: AsnPropTypes.ObjectIdentifier })(RoleOfPsp.prototype, 'roleOfPspOid');
AsnProp({ type: AsnPropTypes.Utf8String })(RoleOfPsp.prototype, 'roleOfPspName');

/** RolesOfPSP ::= SEQUENCE OF RoleOfPSP */
export class RolesOfPsp extends AsnArray<RoleOfPsp> {
  constructor(items?: RoleOfPsp[]) {
    super(items);
    Object.setPrototypeOf(this, RolesOfPsp.prototype);
  }
}
AsnType({ type: AsnTypeTypes.Sequence, itemType: RoleOfPsp })(RolesOfPsp);

/** PSD2QcType ::= SEQUENCE { rolesOfPSP RolesOfPSP, nCAName NCAName, nCAId NCAId } (both UTF8String (SIZE(256))) */
export class Psd2QcType {
  public rolesOfPSP = new RolesOfPsp();
  public nCAName = '';
  public nCAId = '';
}
AsnProp({ type: RolesOfPsp })(Psd2QcType.prototype, 'rolesOfPSP');
AsnProp({ type: AsnPropTypes.Utf8String })(Psd2QcType.prototype, 'nCAName');
AsnProp({ type: AsnPropTypes.Utf8String })(Psd2QcType.prototype, 'nCAId');

const NO_STATEMENT: Psd2Statement = Object.freeze({ roles: Object.freeze([]) });

/** Reads the PSD2 statement (statementId 0.4.0.19495.2) from the qcStatements extension (1.3.6.1.5.5.7.1.3) and the subject's organizationIdentifier. Never throws: a missing or malformed extension gives roles []. */
export function readPsd2(x509: Pick<X509Certificate, 'raw'>): Psd2Identity {
  try {
    // Framed, not parsed whole: the whole certificate through asn1js costs ~0.2 ms, this a few µs.
    const { subject, extensions } = certificateParts(x509.raw);
    // RFC 5280 §4.2: at most one instance of an extension; two are ambiguous, so neither counts.
    const qc = only(extensions.filter((extension) => isOid(x509.raw, extension.id, QC_STATEMENTS_DER)));
    const statement = qc ? readPsd2Statement(contentOf(x509.raw, qc.value)) : NO_STATEMENT;
    // Most certificates have no organizationIdentifier: their Name is not parsed at all.
    const organizationId = Buffer.from(subject).includes(ORGANIZATION_IDENTIFIER_DER) ? organizationIdOf(AsnParser.parse(subject, Name)) : undefined;
    return Object.freeze(organizationId === undefined ? statement : { ...statement, organizationId });
  } catch {
    return NO_STATEMENT;
  }
}

/** 2.5.4.97 as DER: 06 03 55 04 61. */
const ORGANIZATION_IDENTIFIER_DER = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x61]);
/** id_pe_qcStatements (1.3.6.1.5.5.7.1.3) as DER. */
const QC_STATEMENTS_DER = Buffer.from([0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x03]);

/**
 * The PSD2QcType statement in a qcStatements extension value (DER of QCStatements). No PSD2
 * statement, more than one, one without info, or anything that does not parse → roles [].
 */
export function readPsd2Statement(value: Uint8Array): Psd2Statement {
  try {
    const psd2 = only(parseWhole(value, QCStatements).filter((statement) => statement.statementId === ID_ETSI_PSD2_STATEMENT));
    if (!psd2 || psd2.statementInfo.byteLength === 0) return NO_STATEMENT;
    const info = psd2.statementInfo;
    const parsed = AsnConvert.parse(info, Psd2QcType);
    // The schema parser ignores elements past the last field and accepts BER: insist on the DER it re-encodes to.
    if (!Buffer.from(AsnConvert.serialize(parsed)).equals(new Uint8Array(info))) return NO_STATEMENT;
    const found = new Set(parsed.rolesOfPSP.map((role) => ROLE_BY_OID.get(role.roleOfPspOid)));
    const statement: { roles: readonly Psd2Role[]; ncaName?: string; ncaId?: string } = { roles: Object.freeze(PSD2_ROLES.filter((role) => found.has(role))) };
    const ncaName = displayable(parsed.nCAName);
    const ncaId = displayable(parsed.nCAId);
    if (ncaName !== undefined) statement.ncaName = ncaName;
    if (ncaId !== undefined) statement.ncaId = ncaId;
    return Object.freeze(statement);
  } catch {
    return NO_STATEMENT;
  }
}

/** The route check: true when the certificate has at least one of `required` (or nothing is required), false when it lacks them all. */
export function hasAnyRole(identity: Psd2Identity, required: readonly Psd2Role[]): boolean {
  return required.length === 0 || required.some((role) => identity.roles.includes(role));
}

/** The one item of a list, if it has exactly one. */
function only<T>(items: readonly T[]): T | undefined {
  return items.length === 1 ? items[0] : undefined;
}

/** One ASN.1 value filling `bytes` exactly (the schema parser alone ignores trailing bytes). */
function parseWhole<T>(bytes: Uint8Array, type: new () => T): T {
  const { offset, result } = fromBER(bytes);
  if (result.error !== '' || offset !== bytes.byteLength) throw new Error('not exactly one ASN.1 value');
  return AsnParser.fromASN(result, type);
}

/** The subject's one organizationIdentifier, when safe as a header value; none or several → undefined. */
function organizationIdOf(subject: Name): string | undefined {
  const attribute = only(subject.flatMap((rdn) => rdn.filter((candidate) => candidate.type === ID_AT_ORGANIZATION_IDENTIFIER)));
  // DirectoryString; QWACs use PrintableString or UTF8String. Other string types are not read.
  return attribute ? headerSafe(attribute.value.printableString ?? attribute.value.utf8String) : undefined;
}

/** Printable ASCII, 1–256 characters, no space at either end (HTTP trims it): safe as a header value. */
export function headerSafe(value: string | undefined): string | undefined {
  return value !== undefined && value.length <= 256 && /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value) ? value : undefined;
}

/** nCAName / nCAId: UTF-8 text (e.g. "Bundesanstalt für Finanzdienstleistungsaufsicht"), 1–256 characters, no control characters. */
function displayable(value: string): string | undefined {
  return value.length > 0 && value.length <= 256 && !/\p{Cc}/u.test(value) ? value : undefined;
}
