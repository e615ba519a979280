import t from 'tap';
import fc from 'fast-check';
import { createHeaderCertificateReader, type HeaderCertificateReader } from '../../src/certificate/header.js';
import type { CertificateVerifyConfig, ClientCertificateConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import type { Issued } from '../fixtures/pki.js';
import {
  PROXY, albEscape, apacheSpaces, b64, caFile, config, createCa, createChain, hexSha256, nginxEscape, pemOf, queryEscape,
  rfc9440, wso2OneLine, xfccElement,
} from './fixtures/helpers.js';

interface Entry {
  readonly der: Buffer;
  readonly thumbprint: string;
  /** Issuers after the leaf, as a proxy forwarding the chain would send them. */
  readonly chain: readonly Buffer[];
}

const ca = await createCa({ commonName: 'Property CA' });
const issued: Issued[] = await Promise.all([
  ...Array.from({ length: 17 }, (_, i) => ca.issue({ commonName: `TPP ${i}`, organization: 'Property Bank', kind: 'client' })),
  ca.issue({ commonName: 'TPP RSA 1', kind: 'client', keyAlgorithm: 'rsa' }),
  ca.issue({ commonName: 'TPP RSA 2', kind: 'client', keyAlgorithm: 'rsa' }),
]);
const chained = await createChain('TPP Property Chain');
const outsider = await ca.issue({ commonName: 'Nearer hop', kind: 'client' });
const POOL: Entry[] = [
  ...issued.map((c) => ({ der: c.der, thumbprint: c.thumbprint, chain: [] })),
  { der: chained.leaf.der, thumbprint: chained.leaf.thumbprint, chain: [chained.intermediate.der] },
];
/** Every certificate any value could contain: a mutation must never yield one of the others. */
const KNOWN = new Set([...POOL.map((e) => e.thumbprint), chained.root.thumbprint, outsider.thumbprint]);

interface Encoder {
  readonly name: string;
  readonly config: Partial<ClientCertificateConfig>;
  /** Header values as the load balancer sends them. */
  encode(entry: Entry): Record<string, string>;
}

const pems = (e: Entry): string => [e.der, ...e.chain].map(pemOf).join('');
const ENCODERS: Encoder[] = [
  { name: 'nginx escaped PEM', config: { format: 'pem', encoded: true }, encode: (e) => ({ 'x-client-cert': nginxEscape(pems(e)) }) },
  { name: 'WSO2 one-line PEM', config: { format: 'pem', encoded: true }, encode: (e) => ({ 'x-client-cert': wso2OneLine(e.der) }) },
  { name: 'Apache PEM with spaces', config: { format: 'pem', encoded: false }, encode: (e) => ({ 'x-client-cert': apacheSpaces(pemOf(e.der)) }) },
  { name: 'der-base64', config: { format: 'der-base64' }, encode: (e) => ({ 'x-client-cert': b64(e.der) }) },
  {
    name: 'RFC 9440 with chain',
    config: { format: 'rfc9440', chainHeader: 'x-chain' },
    encode: (e) => ({ 'x-client-cert': rfc9440(e.der), 'x-chain': e.chain.map(rfc9440).join(', ') }),
  },
  { name: 'Traefik', config: { format: 'traefik' }, encode: (e) => ({ 'x-client-cert': [e.der, ...e.chain].map(b64).join(',') }) },
  { name: 'Traefik QueryEscape', config: { format: 'traefik' }, encode: (e) => ({ 'x-client-cert': [e.der, ...e.chain].map((d) => queryEscape(b64(d))).join(',') }) },
  { name: 'AWS ALB', config: { format: 'aws-alb' }, encode: (e) => ({ 'x-client-cert': albEscape(pems(e)) }) },
  {
    name: 'Envoy XFCC, two elements',
    config: { format: 'xfcc', xfccMaxElements: 2 },
    encode: (e) => ({
      'x-client-cert': [
        xfccElement({ by: 'spiffe://edge', hash: hexSha256(outsider.der), cert: outsider.der, subject: 'CN=Nearer hop' }),
        xfccElement({ by: 'spiffe://mesh', hash: hexSha256(e.der), cert: e.der, chain: [e.der, ...e.chain], subject: 'CN=a\\"b,O=x;y', uri: 'spiffe://tpp', dns: ['a', 'b'] }),
      ].join(','),
    }),
  },
];
const xfccFirst: Encoder = { ...ENCODERS[8]!, name: 'Envoy XFCC, first element', config: { format: 'xfcc', xfccElement: 'first', xfccMaxElements: 2 } };

function reader(encoder: Encoder, verify: Partial<CertificateVerifyConfig> = {}): HeaderCertificateReader {
  return createHeaderCertificateReader(config({ ...encoder.config, cacheSize: 0, verify: { checkValidity: true, requireClientAuthEku: false, ...verify } }));
}
const distinct = (headers: Record<string, string>): NodeJS.Dict<string[]> =>
  Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]]));

/** The outcome of one read, reduced to what the properties talk about. */
function outcome(r: HeaderCertificateReader, headers: NodeJS.Dict<string[]>): { thumbprint?: string; error?: string } {
  try {
    const result = r.read(headers, PROXY);
    return result.present ? { thumbprint: result.certificate.thumbprint } : {};
  } catch (e) {
    if (e instanceof GatewayError) return { error: e.code };
    throw e; // any other exception fails the property
  }
}

t.test('every pool certificate has + and / somewhere in its base64', async (t) => {
  t.ok(POOL.filter((e) => /\+/.test(b64(e.der)) && /\//.test(b64(e.der))).length >= 15);
});

t.test('encode then read gives the same thumbprint, in every format', async (t) => {
  const readers = ENCODERS.map((e) => [e, reader(e)] as const);
  fc.assert(
    fc.property(fc.constantFrom(...POOL), fc.constantFrom(...readers), (entry, [encoder, r]) => {
      return outcome(r, distinct(encoder.encode(entry))).thumbprint === entry.thumbprint;
    }),
    { numRuns: 400 },
  );
  const first = reader(xfccFirst);
  t.equal(outcome(first, distinct(xfccFirst.encode(POOL[0]!))).thumbprint, outsider.thumbprint, 'first element is the edge hop');
});

type Mutation =
  | { kind: 'substitute' | 'insert'; at: number; text: string }
  | { kind: 'delete' | 'truncate'; at: number }
  | { kind: 'duplicate'; separator: string }
  | { kind: 'duplicate-slice'; at: number; length: number };

const character = fc.oneof(
  fc.constantFrom(...'AZaz09+/=%,;:"\\ \t\n-.'.split(''), '%2B', '%0A', '%3D', '%00', '\u00e9', '\u{1F600}'),
  fc.string({ minLength: 1, maxLength: 2, unit: 'binary' }),
);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('substitute' as const, 'insert' as const), at: fc.nat(), text: character }),
  fc.record({ kind: fc.constantFrom('delete' as const, 'truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), separator: fc.constantFrom('', ',', ', ', ';', ' ', '\n') }),
  fc.record({ kind: fc.constant('duplicate-slice' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 80 }) }),
);

function mutate(value: string, m: Mutation): string {
  const at = 'at' in m ? m.at % (value.length + 1) : 0;
  switch (m.kind) {
    case 'substitute':
      return value.slice(0, at) + m.text + value.slice(at + 1);
    case 'insert':
      return value.slice(0, at) + m.text + value.slice(at);
    case 'delete':
      return value.slice(0, at) + value.slice(at + 1);
    case 'truncate':
      return value.slice(0, at);
    case 'duplicate':
      return value + m.separator + value;
    case 'duplicate-slice':
      return value.slice(0, at) + value.slice(at, at + m.length) + value.slice(at);
  }
}

t.test('a mutated value gives the original thumbprint, no certificate, or a GatewayError (CA verification on)', async (t) => {
  // The intermediate is an anchor too, so leaf-only encodings of the chained certificate verify.
  const verify = { ca: caFile(ca.certPem, chained.root.certPem, chained.intermediate.certPem) };
  for (const encoder of [...ENCODERS, xfccFirst]) {
    const r = reader(encoder, verify);
    const original = (entry: Entry): string | undefined => outcome(r, distinct(encoder.encode(entry))).thumbprint;
    t.equal(original(POOL[0]!), encoder === xfccFirst ? outsider.thumbprint : POOL[0]!.thumbprint, `${encoder.name}: unmutated`);
    fc.assert(
      fc.property(fc.constantFrom(...POOL), fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), (entry, mutations, onChain) => {
        const headers = encoder.encode(entry);
        const name = onChain && 'x-chain' in headers ? 'x-chain' : 'x-client-cert';
        headers[name] = mutations.reduce(mutate, headers[name] ?? '');
        const result = outcome(r, distinct(headers));
        // A multi-element XFCC value names two certificates: a mutation can leave a well-formed
        // header whose selected element is the other one (e.g. "A,B" doubled then cut to "A,B,A").
        // That is position, not a misread: the thumbprint is still of bytes the header carried.
        const carried = encoder.config.format === 'xfcc' ? [outsider.thumbprint, entry.thumbprint] : [];
        return result.thumbprint === undefined || result.thumbprint === original(entry) || carried.includes(result.thumbprint);
      }),
      { numRuns: 600 },
    );
  }
});

t.test('without CA verification a mutation still never throws anything but GatewayError', async (t) => {
  for (const encoder of ENCODERS) {
    const r = reader(encoder);
    fc.assert(
      fc.property(fc.constantFrom(...POOL), fc.array(mutation, { minLength: 1, maxLength: 3 }), (entry, mutations) => {
        const headers = encoder.encode(entry);
        headers['x-client-cert'] = mutations.reduce(mutate, headers['x-client-cert'] ?? '');
        const result = outcome(r, distinct(headers));
        // A byte changed inside the signature still parses: another (unverifiable) certificate, never a known one.
        // The two-element XFCC value carries the nearer hop's certificate too: cut right after its
        // element, the header is a well-formed one-element value naming it (CI seed 1361168566).
        const carried = encoder.config.format === 'xfcc' ? [outsider.thumbprint] : [];
        return result.thumbprint === undefined || result.thumbprint === entry.thumbprint || carried.includes(result.thumbprint) || !KNOWN.has(result.thumbprint);
      }),
      { numRuns: 300 },
    );
  }
  t.pass();
});

t.test('a two-element XFCC value cut at the element boundary names the nearer hop; one byte either side is malformed', async (t) => {
  const encoder = ENCODERS[8]!;
  const r = reader(encoder);
  const value = encoder.encode(POOL[0]!)['x-client-cert']!;
  const boundary = value.indexOf(',By=spiffe://mesh');
  t.ok(boundary > 0);
  t.same(outcome(r, { 'x-client-cert': [value.slice(0, boundary)] }), { thumbprint: outsider.thumbprint });
  t.same(outcome(r, { 'x-client-cert': [value.slice(0, boundary - 1)] }), { error: 'certificate_malformed' });
  t.same(outcome(r, { 'x-client-cert': [value.slice(0, boundary + 1)] }), { error: 'certificate_malformed' });
});

t.test('arbitrary strings, unicode and header shapes never throw anything but GatewayError', async (t) => {
  const formats = ['pem', 'der-base64', 'rfc9440', 'xfcc', 'traefik', 'aws-alb'] as const;
  const readers = formats.flatMap((format) =>
    [true, false].map((encoded) =>
      createHeaderCertificateReader(
        config({ format, encoded, chainHeader: 'x-chain', verifyHeader: { name: 'x-verify', success: ['SUCCESS'] }, cacheSize: 10 }),
      ),
    ),
  );
  const value = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    fc.string({ unit: fc.constantFrom(...'-BEGIN CERTIFICATE:%0A+/=,;"\\MIIAQ'.split('')), maxLength: 200 }),
    fc.base64String({ maxLength: 400 }),
  );
  const values = fc.option(fc.array(value, { minLength: 0, maxLength: 3 }), { nil: undefined });
  const peer = fc.oneof(fc.constant(PROXY), fc.constant('::ffff:10.0.0.1'), fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 20 }), fc.constant(undefined));
  fc.assert(
    fc.property(fc.constantFrom(...readers), values, values, fc.option(fc.constantFrom('SUCCESS', 'NONE', 'FAILED:x'), { nil: undefined }), peer, (r, cert, chain, verify, p) => {
      const headers: NodeJS.Dict<string[]> = { 'x-client-cert': cert, 'x-chain': chain, 'x-verify': verify === undefined ? undefined : [verify] };
      outcome({ read: (h) => r.read(h, p), headerNames: r.headerNames }, headers);
    }),
    { numRuns: 3000 },
  );
  t.pass();
});
