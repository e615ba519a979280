import t from 'tap';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { execFileSync } from 'node:child_process';
import { webcrypto, X509Certificate } from 'node:crypto';
import { hasAnyRole, headerSafe, readPsd2, readPsd2Statement, type Psd2Identity } from '../../src/certificate/psd2.js';
import { PSD2_ROLES } from '../../src/config/schema.js';
import { createOpensslCa, oid, psd2QcStatements, seq, tlv, utf8, type Leaf } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

x509.cryptoProvider.set(webcrypto);

const ca = createOpensslCa('PSD2 Test QTSP');
t.teardown(() => ca.remove());

const FCA = ['Financial Conduct Authority', 'GB-FCA'] as const;
const OID: Record<string, string> = { PSP_AS: '0.4.0.19495.1.1', PSP_PI: '0.4.0.19495.1.2', PSP_AI: '0.4.0.19495.1.3', PSP_IC: '0.4.0.19495.1.4' };

// Statements the fixture's psd2QcStatements cannot make, from its DER helpers.
const printable = (text: string): Buffer => tlv(0x13, Buffer.from(text, 'latin1'));
const PSD2_ID = oid('0.4.0.19495.2');
const role = (name: string, label = name): Buffer => seq(oid(OID[name] ?? name), utf8(label));
const psd2Info = (roles: Buffer[], ncaName = utf8(FCA[0]), ncaId = utf8(FCA[1])): Buffer => seq(seq(...roles), ncaName, ncaId);
const psd2Statement = (info?: Buffer): Buffer => (info ? seq(PSD2_ID, info) : seq(PSD2_ID));
const qcCompliance = seq(oid('0.4.0.1862.1.1'));
const qcTypeWeb = seq(oid('0.4.0.1862.1.6'), seq(oid('0.4.0.1862.1.6.3')));

/** `openssl asn1parse` of the leaf's qcStatements extension value, one `d<depth> TYPE value` per line; [] without one. */
function opensslQcStatements(leaf: Leaf): string[] {
  const der = execFileSync('openssl', ['x509', '-in', leaf.certPath, '-outform', 'DER']);
  const whole = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: der, encoding: 'utf8' });
  const offset = /:qcStatements *\n *(\d+):d=\d+ +hl= *\d+ +l= *\d+ +prim: OCTET STRING/.exec(whole)?.[1];
  if (offset === undefined) return [];
  return asn1Lines(execFileSync('openssl', ['asn1parse', '-inform', 'DER', '-strparse', offset], { input: der, encoding: 'utf8' }));
}
/** `openssl asn1parse` of the whole certificate, in the same form. */
function opensslCertificate(leaf: Leaf): string[] {
  return asn1Lines(execFileSync('openssl', ['asn1parse', '-in', leaf.certPath], { encoding: 'utf8' }));
}
function asn1Lines(out: string): string[] {
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const m = /^ *\d+:d=(\d+) +hl= *\d+ +l= *\d+ +(?:prim|cons): *([^:]*?) *(?::(.*))?$/.exec(line);
      if (!m) throw new Error(`unexpected asn1parse line: ${line}`);
      return `d${m[1]} ${m[2]}${m[3] === undefined ? '' : ` ${m[3]}`}`;
    });
}
/** What asn1parse should print for one PSD2QcType statement (ETSI TS 119 495 Annex A). */
function expectedPsd2(roles: readonly (readonly [string, string])[], ncaName: string = FCA[0], ncaId: string = FCA[1]): string[] {
  return [
    'd0 SEQUENCE',
    'd1 SEQUENCE',
    'd2 OBJECT 0.4.0.19495.2',
    'd2 SEQUENCE',
    'd3 SEQUENCE',
    ...roles.flatMap(([roleOid, name]) => ['d4 SEQUENCE', `d5 OBJECT ${roleOid}`, `d5 UTF8STRING ${name}`]),
    `d3 UTF8STRING ${ncaName}`,
    `d3 UTF8STRING ${ncaId}`,
  ];
}

t.test('openssl-issued QWACs: the fixture is a real PSD2QcType, and readPsd2 reads it', async (t) => {
  t.test('PSP_AI only', async (t) => {
    const leaf = ca.issue('AISP', { qcStatements: psd2QcStatements(['PSP_AI']) });
    t.same(opensslQcStatements(leaf), expectedPsd2([['0.4.0.19495.1.3', 'PSP_AI']]));
    t.same(readPsd2(leaf.x509), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });
  });
  t.test('PSP_PI only', async (t) => {
    const leaf = ca.issue('PISP', { qcStatements: psd2QcStatements(['PSP_PI']) });
    t.same(opensslQcStatements(leaf), expectedPsd2([['0.4.0.19495.1.2', 'PSP_PI']]));
    t.same(readPsd2(leaf.x509), { roles: ['PSP_PI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });
  });
  t.test('all four, listed out of order: PSD2_ROLES order', async (t) => {
    const leaf = ca.issue('All roles', { qcStatements: psd2QcStatements(['PSP_IC', 'PSP_AI', 'PSP_AS', 'PSP_PI']) });
    t.same(
      opensslQcStatements(leaf),
      expectedPsd2([
        ['0.4.0.19495.1.4', 'PSP_IC'],
        ['0.4.0.19495.1.3', 'PSP_AI'],
        ['0.4.0.19495.1.1', 'PSP_AS'],
        ['0.4.0.19495.1.2', 'PSP_PI'],
      ]),
    );
    t.same(readPsd2(leaf.x509), { roles: ['PSP_AS', 'PSP_PI', 'PSP_AI', 'PSP_IC'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });
  });
  t.test('an empty rolesOfPSP', async (t) => {
    const leaf = ca.issue('No roles', { qcStatements: psd2QcStatements([]) });
    t.same(opensslQcStatements(leaf), expectedPsd2([]));
    t.same(readPsd2(leaf.x509), { roles: [], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });
  });
  t.test('no qcStatements extension at all', async (t) => {
    const leaf = ca.issue('Plain TPP');
    t.same(opensslQcStatements(leaf), []);
    t.notOk(opensslCertificate(leaf).some((line) => line.includes('qcStatements')));
    t.same(readPsd2(leaf.x509), { roles: [] });
  });
  t.test('organizationIdentifier PSDGB-FCA-123456, with nCAName and nCAId', async (t) => {
    const leaf = ca.issue('UK TPP', { qcStatements: psd2QcStatements(['PSP_AI', 'PSP_PI'], 'Financial Conduct Authority', 'GB-FCA'), organizationIdentifier: 'PSDGB-FCA-123456' });
    const certificate = opensslCertificate(leaf);
    const at = certificate.indexOf('d5 OBJECT organizationIdentifier');
    t.ok(at > 0, 'the subject has an organizationIdentifier');
    t.equal(certificate[at + 1], 'd5 UTF8STRING PSDGB-FCA-123456');
    t.same(opensslQcStatements(leaf), expectedPsd2([['0.4.0.19495.1.3', 'PSP_AI'], ['0.4.0.19495.1.2', 'PSP_PI']], 'Financial Conduct Authority', 'GB-FCA'));
    t.same(readPsd2(leaf.x509), { roles: ['PSP_PI', 'PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA', organizationId: 'PSDGB-FCA-123456' });
  });
  t.test('an organizationIdentifier without a PSD2 statement (OBWAC-like)', async (t) => {
    const leaf = ca.issue('OB TPP', { organizationIdentifier: 'PSDGB-OB-0015800001041RHAAY' });
    t.same(opensslQcStatements(leaf), []);
    t.same(readPsd2(leaf.x509), { roles: [], organizationId: 'PSDGB-OB-0015800001041RHAAY' });
  });
  t.test('a non-ASCII nCAName (UTF-8)', async (t) => {
    const leaf = ca.issue('DE TPP', { qcStatements: psd2QcStatements(['PSP_IC'], 'Bundesanstalt für Finanzdienstleistungsaufsicht', 'DE-BAFIN'), organizationIdentifier: 'PSDDE-BAFIN-123456' });
    const lines = opensslQcStatements(leaf);
    t.same(lines.slice(0, 8), expectedPsd2([['0.4.0.19495.1.4', 'PSP_IC']]).slice(0, 8));
    t.equal(lines.length, 10);
    t.match(lines[8], /^d3 UTF8STRING Bundesanstalt f.+r Finanzdienstleistungsaufsicht$/);
    t.equal(lines[9], 'd3 UTF8STRING DE-BAFIN');
    t.same(readPsd2(leaf.x509), { roles: ['PSP_IC'], ncaName: 'Bundesanstalt für Finanzdienstleistungsaufsicht', ncaId: 'DE-BAFIN', organizationId: 'PSDDE-BAFIN-123456' });
  });
  t.test('duplicate and unknown role OIDs: deduplicated, unknown ignored', async (t) => {
    const leaf = ca.issue('Odd roles', { qcStatements: psd2QcStatements(['PSP_AI', '0.4.0.19495.1.5', 'PSP_AI', '1.2.3.4']) });
    t.same(
      opensslQcStatements(leaf),
      expectedPsd2([
        ['0.4.0.19495.1.3', 'PSP_AI'],
        ['0.4.0.19495.1.5', '0.4.0.19495.1.5'],
        ['0.4.0.19495.1.3', 'PSP_AI'],
        ['1.2.3.4', '1.2.3.4'],
      ]),
    );
    t.same(readPsd2(leaf.x509), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });
  });
  t.test('the OID decides the role, not roleOfPspName', async (t) => {
    const leaf = ca.issue('Mislabelled', { qcStatements: seq(psd2Statement(psd2Info([role('PSP_PI', 'PSP_AI')]))) });
    t.same(opensslQcStatements(leaf), expectedPsd2([['0.4.0.19495.1.2', 'PSP_AI']]));
    t.same(readPsd2(leaf.x509).roles, ['PSP_PI']);
  });
});

t.test('other QC statements beside the PSD2 one', async (t) => {
  const both = ca.issue('Compliant QWAC', { qcStatements: seq(qcCompliance, qcTypeWeb, psd2Statement(psd2Info([role('PSP_AI')]))) });
  const lines = opensslQcStatements(both);
  t.same(lines.slice(0, 7), ['d0 SEQUENCE', 'd1 SEQUENCE', 'd2 OBJECT 0.4.0.1862.1.1', 'd1 SEQUENCE', 'd2 OBJECT 0.4.0.1862.1.6', 'd2 SEQUENCE', 'd3 OBJECT 0.4.0.1862.1.6.3']);
  t.same(lines.slice(7), expectedPsd2([['0.4.0.19495.1.3', 'PSP_AI']]).slice(1));
  t.same(readPsd2(both.x509), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' });

  const others = ca.issue('QSCD only', { qcStatements: seq(qcCompliance, qcTypeWeb) });
  t.same(opensslQcStatements(others), ['d0 SEQUENCE', 'd1 SEQUENCE', 'd2 OBJECT 0.4.0.1862.1.1', 'd1 SEQUENCE', 'd2 OBJECT 0.4.0.1862.1.6', 'd2 SEQUENCE', 'd3 OBJECT 0.4.0.1862.1.6.3']);
  t.same(readPsd2(others.x509), { roles: [] });
});

t.test('a malformed PSD2 statement gives roles [] without throwing', async (t) => {
  const ai = role('PSP_AI');
  const cases: Record<string, Buffer> = {
    'nCAName a PrintableString': seq(psd2Statement(psd2Info([ai], printable(FCA[0])))),
    'roleOfPspName a PrintableString': seq(psd2Statement(psd2Info([seq(oid('0.4.0.19495.1.3'), printable('PSP_AI'))]))),
    'a role without its name': seq(psd2Statement(psd2Info([seq(oid('0.4.0.19495.1.3'))]))),
    'a role that is a string': seq(psd2Statement(psd2Info([utf8('PSP_AI')]))),
    'one good role and one broken': seq(psd2Statement(psd2Info([ai, seq(utf8('PSP_PI'), utf8('PSP_PI'))]))),
    'rolesOfPSP a SET': seq(psd2Statement(seq(tlv(0x31, ai), utf8(FCA[0]), utf8(FCA[1])))),
    'nCAId missing': seq(psd2Statement(seq(seq(ai), utf8(FCA[0])))),
    'an element after nCAId': seq(psd2Statement(seq(seq(ai), utf8(FCA[0]), utf8(FCA[1]), utf8('extra')))),
    'an element after roleOfPspName': seq(psd2Statement(psd2Info([seq(oid('0.4.0.19495.1.3'), utf8('PSP_AI'), utf8('extra'))]))),
    'a long-form length (BER, not DER)': seq(psd2Statement(Buffer.concat([Buffer.from([0x30, 0x81]), psd2Info([ai]).subarray(1)]))),
    'statementInfo a string': seq(psd2Statement(utf8('PSP_AI'))),
    'no statementInfo': seq(psd2Statement()),
    'statementInfo explicitly tagged': seq(psd2Statement(tlv(0xa0, psd2Info([ai])))),
    'two PSD2 statements': seq(psd2Statement(psd2Info([ai])), psd2Statement(psd2Info([role('PSP_PI')]))),
    'bytes after QCStatements': Buffer.concat([seq(psd2Statement(psd2Info([ai]))), Buffer.from([0x05, 0x00])]),
    'QCStatements a SET': tlv(0x31, psd2Statement(psd2Info([ai]))),
    'a statement that is not a SEQUENCE': seq(utf8('0.4.0.19495.2')),
    'not DER at all': Buffer.from('deadbeef', 'hex'),
  };
  for (const [name, value] of Object.entries(cases)) {
    const leaf = ca.issue(`Malformed ${name}`, { qcStatements: value, organizationIdentifier: 'PSDGB-FCA-123456' });
    t.same(opensslCertificate(leaf).filter((line) => line.includes('qcStatements')), ['d5 OBJECT qcStatements'], `${name}: the extension is there`);
    t.same(readPsd2(leaf.x509), { roles: [], organizationId: 'PSDGB-FCA-123456' }, name);
  }
});

t.test('organizationIdentifier: only when safe as a header value', async (t) => {
  const controls = [
    ['SOH', 'PSDGB\x01FCA-123456', 'PSDGB\\01FCA-123456'],
    ['TAB', 'PSDGB-FCA\t123456', 'PSDGB-FCA\\09123456'],
    ['DEL', 'PSDGB-FCA-123456\x7f', 'PSDGB-FCA-123456\\7F'],
  ] as const;
  for (const [name, value, escaped] of controls) {
    const leaf = ca.issue(`Control ${name}`, { qcStatements: psd2QcStatements(['PSP_AI']), organizationIdentifier: value });
    t.equal(leaf.x509.subject.split('\n').at(-1), `organizationIdentifier=${escaped}`, `${name}: openssl wrote it`);
    t.same(readPsd2(leaf.x509), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA' }, name);
  }

  t.equal(headerSafe('PSDGB-FCA-123456'), 'PSDGB-FCA-123456');
  t.equal(headerSafe('A'.repeat(256)), 'A'.repeat(256));
  t.equal(headerSafe('a b'), 'a b');
  t.equal(headerSafe('~!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}'), '~!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}');
  for (const bad of [undefined, '', 'A'.repeat(257), ' PSDGB', 'PSDGB ', ' ', 'PSD\r\nX-Evil: 1', 'PSD\0', 'PSDGB-FCA-12345\u00e9', 'PSD\u2028', 'PSD\u0085']) {
    t.equal(headerSafe(bad), undefined, String(JSON.stringify(bad)).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  }
});

t.test('certificates openssl cannot make here (@peculiar/x509)', async (t) => {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(algorithm, false, ['sign', 'verify']);
  const make = async (name: x509.JsonNameParams, qcStatements: readonly Buffer[] = []): Promise<X509Certificate> => {
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      name: new x509.Name(name),
      keys,
      signingAlgorithm: algorithm,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      extensions: qcStatements.map((value) => new x509.Extension('1.3.6.1.5.5.7.1.3', false, value)),
    });
    return new X509Certificate(Buffer.from(certificate.rawData));
  };
  const ai = psd2QcStatements(['PSP_AI']);
  t.same(readPsd2(await make([{ CN: ['TPP'] }, { '2.5.4.97': [{ printableString: 'PSDGB-FCA-123456' }] }], [ai])), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority', ncaId: 'GB-FCA', organizationId: 'PSDGB-FCA-123456' }, 'PrintableString');
  t.same(readPsd2(await make([{ '2.5.4.97': [{ ia5String: 'PSDGB-FCA-123456' }] }])), { roles: [] }, 'IA5String is not a DirectoryString');
  t.same(readPsd2(await make([{ '2.5.4.97': [{ bmpString: 'PSDGB-FCA-123456' }] }])), { roles: [] }, 'BMPString (RFC 5280 §4.1.2.4: PrintableString or UTF8String)');
  t.same(readPsd2(await make([{ '2.5.4.97': [{ utf8String: 'PSDGB-FCA-1' }] }, { '2.5.4.97': [{ utf8String: 'PSDGB-FCA-2' }] }])), { roles: [] }, 'two organizationIdentifiers');
  t.same(readPsd2(await make([{ '2.5.4.97': [{ utf8String: 'PSDGB-FCA-1' }], CN: [{ utf8String: 'TPP' }] }, { '2.5.4.97': [{ utf8String: 'PSDGB-FCA-1' }] }])), { roles: [] }, 'the same one twice, one in a multi-valued RDN');
  t.same(readPsd2(await make([{ CN: [{ utf8String: 'TPP' }], '2.5.4.97': [{ utf8String: 'PSDGB-FCA-123456' }] }])), { roles: [], organizationId: 'PSDGB-FCA-123456' }, 'in a multi-valued RDN');
  t.same(readPsd2(await make([{ '2.5.4.97': [{ utf8String: 'PSDGB-FCA-123456' }] }], [ai, psd2QcStatements(['PSP_PI'])])), { roles: [], organizationId: 'PSDGB-FCA-123456' }, 'two qcStatements extensions');
});

t.test('a v1 certificate (no extensions at all), made by openssl x509 -req', async (t) => {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: ca.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'v1.key', '-out', 'v1.csr', '-subj', '/CN=V1 TPP/organizationIdentifier=PSDGB-FCA-123456');
  run('x509', '-req', '-in', 'v1.csr', '-key', 'v1.key', '-days', '1', '-out', 'v1.crt');
  const v1 = new X509Certificate(run('x509', '-in', 'v1.crt', '-outform', 'DER'));
  t.notOk(run('x509', '-in', 'v1.crt', '-noout', '-text').toString().includes('X509v3 extensions'));
  t.same(readPsd2(v1), { roles: [], organizationId: 'PSDGB-FCA-123456' });
});

t.test('not a certificate: roles []', async (t) => {
  t.same(readPsd2({ raw: Buffer.from('3000', 'hex') }), { roles: [] });
  t.same(readPsd2({ raw: Buffer.alloc(0) }), { roles: [] });
});

t.test('nCAName and nCAId: text only; the roles do not depend on them', async (t) => {
  const read = (ncaName: string, ncaId: string) => readPsd2Statement(psd2QcStatements(['PSP_AI'], ncaName, ncaId));
  t.same(read('Financial\nConduct Authority', 'GB-FCA'), { roles: ['PSP_AI'], ncaId: 'GB-FCA' });
  t.same(read('Financial Conduct Authority', 'GB\x00FCA'), { roles: ['PSP_AI'], ncaName: 'Financial Conduct Authority' });
  t.same(read('', 'GB-FCA\u009b'), { roles: ['PSP_AI'] });
  t.same(read('N'.repeat(256), 'I'.repeat(257)), { roles: ['PSP_AI'], ncaName: 'N'.repeat(256) });
});

t.test('results are frozen, so a cached one cannot be changed', async (t) => {
  const identity = readPsd2(ca.issue('Frozen', { qcStatements: psd2QcStatements(['PSP_AI']), organizationIdentifier: 'PSDGB-FCA-123456' }).x509);
  t.ok(Object.isFrozen(identity));
  t.ok(Object.isFrozen(identity.roles));
  t.ok(Object.isFrozen(readPsd2(ca.issue('Frozen too').x509).roles));
  t.ok(Object.isFrozen(readPsd2Statement(Buffer.from('00', 'hex'))));
});

t.test('hasAnyRole', async (t) => {
  const aisp: Psd2Identity = { roles: ['PSP_AI'] };
  const both: Psd2Identity = { roles: ['PSP_PI', 'PSP_AI'] };
  const none: Psd2Identity = { roles: [] };
  t.equal(hasAnyRole(aisp, ['PSP_AI']), true);
  t.equal(hasAnyRole(aisp, ['PSP_PI']), false);
  t.equal(hasAnyRole(aisp, ['PSP_PI', 'PSP_AI']), true, 'one of several is enough');
  t.equal(hasAnyRole(both, ['PSP_IC']), false);
  t.equal(hasAnyRole(both, ['PSP_PI']), true);
  t.equal(hasAnyRole(none, ['PSP_AI']), false);
  t.equal(hasAnyRole(none, PSD2_ROLES), false);
  t.equal(hasAnyRole(none, []), true, 'nothing required');
  t.equal(hasAnyRole(aisp, []), true);
});
