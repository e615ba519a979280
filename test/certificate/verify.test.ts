import t from 'tap';
import { createHeaderCertificateReader } from '../../src/certificate/header.js';
import type { CertificateResult } from '../../src/certificate/types.js';
import type { CertificateVerifyConfig, ClientCertificateConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { PROXY, albEscape, b64, caFile, config, createCa, createChain, rfc9440, xfccElement } from './fixtures/helpers.js';

const ca = await createCa({ commonName: 'Verify CA' });
const otherCa = await createCa({ commonName: 'Other CA' });
const tpp = await ca.issue({ commonName: 'TPP', kind: 'client' });
const stranger = await otherCa.issue({ commonName: 'Stranger', kind: 'client' });
const selfSigned = await (await import('../fixtures/pki.js')).createSelfSigned({ commonName: 'Self', kind: 'client' });
const serverOnly = await ca.issue({ commonName: 'Server', kind: 'server' });
const noEku = await ca.issue({ commonName: 'No EKU', kind: 'client', extendedKeyUsage: 'none' });
const chained = await createChain('TPP Chain');
const day = 86400_000;
const past = await ca.issue({ commonName: 'Expired', kind: 'client', notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
const future = await ca.issue({ commonName: 'Future', kind: 'client', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) });

function read(verify: Partial<CertificateVerifyConfig>, value: string, overrides: Partial<ClientCertificateConfig> = {}, now = Date.now()): CertificateResult {
  const reader = createHeaderCertificateReader(
    config({ format: 'aws-alb', verify: { checkValidity: true, requireClientAuthEku: false, ...verify }, ...overrides }),
    () => now,
  );
  return reader.read({ 'x-client-cert': [value] }, PROXY);
}
function failure(fn: () => unknown): { code: string; description: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof GatewayError) return { code: e.code, description: e.description };
    throw e;
  }
  return { code: 'no error', description: '' };
}
const alb = (...pems: string[]): string => albEscape(pems.join(''));

t.test('CA verification: leaf issued directly by a configured CA', async (t) => {
  const verify = { ca: caFile(ca.certPem) };
  t.ok(read(verify, alb(tpp.certPem)).present);
  t.equal(failure(() => read(verify, alb(stranger.certPem))).code, 'certificate_untrusted');
  t.equal(failure(() => read(verify, alb(selfSigned.certPem))).code, 'certificate_untrusted');
  t.ok(read({ ca: caFile(otherCa.certPem, '# comment between blocks\n', ca.certPem) }, alb(tpp.certPem)).present, 'bundle');
  t.ok(read({ ca: caFile(selfSigned.certPem) }, alb(selfSigned.certPem)).present, 'a pinned self-signed certificate');
});

t.test('CA verification through an intermediate from the header chain', async (t) => {
  const verify = { ca: caFile(chained.root.certPem) };
  t.ok(read(verify, alb(chained.leaf.certPem, chained.intermediate.certPem)).present, 'aws-alb passthrough chain');
  t.ok(read(verify, alb(chained.leaf.certPem, chained.intermediate.certPem, chained.root.certPem)).present, 'with the root too');
  t.equal(failure(() => read(verify, alb(chained.leaf.certPem))).code, 'certificate_untrusted', 'without the intermediate');
  t.equal(failure(() => read(verify, alb(chained.leaf.certPem, tpp.certPem))).code, 'certificate_untrusted', 'with an unrelated certificate');
  t.ok(read({ ca: caFile(chained.intermediate.certPem) }, alb(chained.leaf.certPem)).present, 'intermediate configured as anchor');
  const rfc = { format: 'rfc9440', chainHeader: 'x-chain' } as const;
  const reader = createHeaderCertificateReader(config({ ...rfc, verify: { checkValidity: true, requireClientAuthEku: true, ...verify } }));
  t.ok(reader.read({ 'x-client-cert': [rfc9440(chained.leaf.der)], 'x-chain': [rfc9440(chained.intermediate.der)] }, PROXY).present, 'rfc9440 chain header');
  t.equal(failure(() => reader.read({ 'x-client-cert': [rfc9440(chained.leaf.der)] }, PROXY)).code, 'certificate_untrusted');
  const xfcc = createHeaderCertificateReader(config({ format: 'xfcc', verify: { checkValidity: true, requireClientAuthEku: false, ...verify } }));
  t.ok(xfcc.read({ 'x-client-cert': [xfccElement({ cert: chained.leaf.der, chain: [chained.leaf.der, chained.intermediate.der] })] }, PROXY).present, 'XFCC Chain');
  t.equal(failure(() => xfcc.read({ 'x-client-cert': [xfccElement({ cert: chained.leaf.der })] }, PROXY)).code, 'certificate_untrusted');
});

t.test('a tampered certificate does not verify', async (t) => {
  const der = Buffer.from(tpp.der);
  der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01; // inside the signature
  const reader = createHeaderCertificateReader(config({ format: 'der-base64', verify: { checkValidity: true, requireClientAuthEku: false, ca: caFile(ca.certPem) } }));
  const result = failure(() => reader.read({ 'x-client-cert': [b64(der)] }, PROXY));
  t.ok(['certificate_untrusted', 'certificate_malformed'].includes(result.code), result.code);
});

t.test('validity window, per request against the clock', async (t) => {
  t.same(failure(() => read({}, alb(past.certPem))), { code: 'certificate_expired', description: 'client certificate expired' });
  t.same(failure(() => read({}, alb(future.certPem))), { code: 'certificate_expired', description: 'client certificate not yet valid' });
  t.ok(read({ checkValidity: false }, alb(past.certPem)).present, 'check_validity: false');
  const reader = createHeaderCertificateReader(config({ format: 'aws-alb' }), () => now);
  let now = Date.now();
  const headers = { 'x-client-cert': [alb(tpp.certPem)] };
  t.ok(reader.read(headers, PROXY).present);
  now += 2 * 365 * day;
  t.equal(failure(() => reader.read(headers, PROXY)).code, 'certificate_expired', 'the cached certificate expires too');
  // Issuers on the verified path count as well.
  const issuerExpired = await createChain('Issuer Window', { notAfter: new Date(Date.now() + 20 * 365 * day) });
  const verify = { ca: caFile(issuerExpired.root.certPem) };
  t.ok(read(verify, alb(issuerExpired.leaf.certPem, issuerExpired.intermediate.certPem)).present);
  t.same(failure(() => read(verify, alb(issuerExpired.leaf.certPem, issuerExpired.intermediate.certPem), {}, Date.now() + 15 * 365 * day)), {
    code: 'certificate_expired',
    description: 'issuing certificate expired',
  });
  t.same(failure(() => read(verify, alb(issuerExpired.leaf.certPem, issuerExpired.intermediate.certPem), {}, Date.now() - 2 * 3600_000)), {
    code: 'certificate_expired',
    description: 'client certificate not yet valid',
  });
});

t.test('issuer not yet valid', async (t) => {
  const early = await createChain('Issuer Early', { notBefore: new Date(Date.now() - 30 * day) });
  t.same(failure(() => read({ ca: caFile(early.root.certPem) }, alb(early.leaf.certPem, early.intermediate.certPem), {}, Date.now() - 10 * day)), {
    code: 'certificate_expired',
    description: 'issuing certificate not yet valid',
  });
});

t.test('clientAuth extended key usage', async (t) => {
  const eku = { requireClientAuthEku: true };
  t.ok(read(eku, alb(tpp.certPem)).present);
  t.equal(failure(() => read(eku, alb(serverOnly.certPem))).code, 'certificate_untrusted', 'serverAuth only');
  t.equal(failure(() => read(eku, alb(noEku.certPem))).code, 'certificate_untrusted', 'no EKU extension');
  t.ok(read({}, alb(noEku.certPem)).present, 'not required');
});

t.test('a CA file without certificates, or with one that does not parse, is a configuration error (parsed once, at load)', async (t) => {
  t.throws(() => caFile('nothing here'), /no PEM certificate/);
  t.throws(() => caFile('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), /does not parse/);
});
