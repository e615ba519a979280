import t from 'tap';
import { codeOf } from '../helpers/codes.js';
import { createHeaderCertificateReader } from '../../src/certificate/header.js';
import { parseXfcc } from '../../src/certificate/xfcc.js';
import type { CertificateResult } from '../../src/certificate/types.js';
import { GatewayError } from '../../src/errors.js';
import { PROXY, config, createCa, createChain, envoyElement, hexSha256, pemOf, xfccElement } from './fixtures/helpers.js';

const ca = await createCa({ commonName: 'XFCC CA' });
const client = await ca.issue({ commonName: 'TPP Client', kind: 'client' });
const mesh = await ca.issue({ commonName: 'Mesh Proxy', kind: 'client' });
const attacker = await ca.issue({ commonName: 'Attacker', kind: 'client' });
const chained = await createChain('TPP XFCC');

function read(value: string, element: 'first' | 'last' = 'last', xfccMaxElements = 1): CertificateResult {
  const reader = createHeaderCertificateReader(config({ format: 'xfcc', header: 'x-forwarded-client-cert', xfccElement: element, xfccMaxElements, cacheSize: 0 }));
  return reader.read({ 'x-forwarded-client-cert': [value] }, PROXY);
}
const thumbprintOf = (value: string, element: 'first' | 'last' = 'last', xfccMaxElements = 1): string | undefined => {
  const result = read(value, element, xfccMaxElements);
  return result.present ? result.certificate.thumbprint : undefined;
};
const code = codeOf;

t.test('the grammar', async (t) => {
  const elements = parseXfcc('By=spiffe://a;By=spiffe://b;hash=abc;URI=u1;DNS=d1;DNS=d2,by="x;y,z=\\"q\\"\\\\";Subject=""');
  t.equal(elements.length, 2);
  t.same(elements[0]?.get('by'), ['spiffe://a', 'spiffe://b'], 'By may repeat');
  t.same(elements[0]?.get('dns'), ['d1', 'd2'], 'DNS may repeat');
  t.same(elements[0]?.get('hash'), ['abc'], 'keys are case-insensitive');
  t.same(elements[1]?.get('by'), ['x;y,z="q"\\'], 'quoted value with separators and escapes');
  t.same(elements[1]?.get('subject'), [''], 'empty quoted value');
  for (const bad of ['', 'Cert', '=x', 'Hash=a;', 'Hash=a,', 'Hash=a,,Hash=b', 'Ce rt=x', 'By="x', 'By="x"y', 'By=x"y', 'By="x\\', 'By=a;;By=b']) {
    t.equal(code(() => parseXfcc(bad)), 'certificate_malformed', JSON.stringify(bad));
  }
  for (const key of ['Hash', 'Cert', 'Chain', 'Subject', 'hash', 'CERT']) {
    t.equal(code(() => parseXfcc(`${key}=a;By=b;${key}=c`)), 'certificate_malformed', `repeated ${key}`);
  }
  t.equal(parseXfcc('Hash=a,Hash=b').length, 2, 'the same key in two elements is fine');
});

t.test('Envoy element with By, Hash, Cert, Subject, URI', async (t) => {
  t.equal(thumbprintOf(envoyElement(client.der)), client.thumbprint);
  t.equal(thumbprintOf(xfccElement({ cert: client.der })), client.thumbprint, 'Cert alone');
  t.equal(thumbprintOf(envoyElement(client.der, { hash: hexSha256(client.der).toUpperCase() })), client.thumbprint, 'upper-case Hash');
  t.equal(thumbprintOf(envoyElement(client.der, { dns: ['a.example', 'b.example'] })), client.thumbprint, 'repeated DNS');
});

t.test('multi-element, with xfcc_max_elements: last is the hop nearest certbound, first is configurable', async (t) => {
  const value = `${envoyElement(client.der)},${envoyElement(mesh.der)}`;
  t.equal(thumbprintOf(value, 'last', 2), mesh.thumbprint);
  t.equal(thumbprintOf(value, 'first', 2), client.thumbprint);
  const three = `${envoyElement(client.der)},By=spiffe://hop2;Hash=${hexSha256(mesh.der)};Cert="${encodeURIComponent(mesh.certPem)}",${envoyElement(attacker.der)}`;
  t.equal(thumbprintOf(three, 'last', 3), attacker.thumbprint);
  t.equal(thumbprintOf(three, 'first', 3), client.thumbprint);
  t.equal(code(() => read(three, 'last', 2)), 'certificate_malformed', 'more elements than xfcc_max_elements');
});

t.test('by default exactly one element: a URI SAN cannot add an element (Envoy writes URI unquoted)', async (t) => {
  // tpp-b's certificate carries the URI SAN `spiffe://x/y,Cert=<victim PEM, URL-encoded>`; Envoy
  // writes it as is, and a comma-splitting reader sees the victim's certificate as a second element.
  const injected = `${envoyElement(attacker.der, { uri: `spiffe://x/y,Cert=${encodeURIComponent(client.certPem)}` })}`;
  t.equal(parseXfcc(injected).length, 2, 'the grammar does read two elements');
  try {
    read(injected);
    t.fail('two elements accepted by default');
  } catch (e) {
    t.ok(e instanceof GatewayError && e.code === 'certificate_malformed');
    t.match((e as GatewayError).description, /2 elements.*xfcc_max_elements/);
  }
  t.equal(code(() => read(`${envoyElement(client.der)},${envoyElement(mesh.der)}`)), 'certificate_malformed', 'two genuine elements too');
  t.equal(thumbprintOf(envoyElement(attacker.der, { uri: 'spiffe://x/y' })), attacker.thumbprint, 'one element passes');
});

t.test('Chain: leaf first, intermediates available; Cert and Chain must agree', async (t) => {
  const chain = [chained.leaf.der, chained.intermediate.der];
  t.equal(thumbprintOf(xfccElement({ cert: chained.leaf.der, chain })), chained.leaf.thumbprint);
  t.equal(thumbprintOf(xfccElement({ chain, hash: hexSha256(chained.leaf.der) })), chained.leaf.thumbprint, 'Chain without Cert');
  t.equal(code(() => read(xfccElement({ cert: client.der, chain }))), 'certificate_malformed', 'Chain starts with another certificate');
  const two = `Cert="${encodeURIComponent(client.certPem + mesh.certPem)}"`;
  t.equal(code(() => read(two)), 'certificate_malformed', 'Cert with two certificates');
});

t.test('Hash and Cert must agree; Hash alone is refused', async (t) => {
  t.equal(code(() => read(envoyElement(client.der, { hash: hexSha256(attacker.der) }))), 'certificate_malformed');
  t.equal(code(() => read(envoyElement(client.der, { hash: 'xyz' }))), 'certificate_malformed');
  t.equal(code(() => read(envoyElement(client.der, { hash: hexSha256(client.der).slice(2) }))), 'certificate_malformed');
  try {
    read(`By=spiffe://x;Hash=${hexSha256(client.der)};Subject="CN=x";URI=spiffe://tpp`);
    t.fail('Hash-only accepted');
  } catch (e) {
    t.ok(e instanceof GatewayError && e.code === 'certificate_malformed' && /set_current_client_cert_details/.test(e.description));
  }
});

t.test('an element without a certificate is no certificate', async (t) => {
  t.same(read('By=spiffe://x;URI=spiffe://client'), { present: false, why: 'XFCC element carries no client certificate' });
  t.same(read(`${envoyElement(client.der)},By=spiffe://x;URI=spiffe://client`, 'last', 2), { present: false, why: 'XFCC element carries no client certificate' });
});

t.test('a Subject holding ";Cert=" cannot smuggle a certificate', async (t) => {
  const smuggled = `CN=evil";Cert="${encodeURIComponent(pemOf(attacker.der))}`;
  // As Envoy writes it: the subject's quotes escaped inside the quoted value.
  const escaped = xfccElement({ hash: hexSha256(client.der), cert: client.der, subject: smuggled });
  t.match(escaped, /Subject="CN=evil\\";Cert=\\"-----BEGIN/);
  t.equal(thumbprintOf(escaped), client.thumbprint, 'the Subject stays a Subject');
  const beforeCert = `By=x;Subject="${smuggled.replaceAll('"', '\\"')}";Cert="${encodeURIComponent(client.certPem)}"`;
  t.equal(thumbprintOf(beforeCert), client.thumbprint, 'Subject ahead of Cert');
  // Unescaped (a proxy that does not escape): the smuggled Cert collides with the real one.
  const raw = `Hash=${hexSha256(client.der)};Cert="${encodeURIComponent(client.certPem)}";Subject="${smuggled}"`;
  t.equal(code(() => read(raw)), 'certificate_malformed');
  // Unescaped and without a real Cert: the Hash still pins the proxy's view of the certificate.
  const noCert = `Hash=${hexSha256(client.der)};Subject="${smuggled}"`;
  t.equal(code(() => read(noCert)), 'certificate_malformed');
  // Smuggling a new element through a Subject.
  const element = `Hash=${hexSha256(client.der)};Cert="${encodeURIComponent(client.certPem)}";Subject="CN=a\\",Cert=\\"${encodeURIComponent(attacker.certPem)}"`;
  t.equal(thumbprintOf(element), client.thumbprint);
});

t.test('Cert encoding errors', async (t) => {
  t.equal(code(() => read('Cert="%ZZ"')), 'certificate_malformed');
  t.equal(code(() => read('Cert=""')), 'certificate_malformed');
  t.equal(code(() => read(`Cert="${encodeURIComponent(client.certPem)}junk"`)), 'certificate_malformed');
  t.equal(code(() => read(`Cert="${encodeURIComponent(client.certPem + 'junk')}"`)), 'certificate_malformed', 'trailing garbage after END');
});

t.test('hostile input of a million characters is refused (a parser worse than linear would not finish)', async (t) => {
  // No wall-clock budget: at this size a quadratic parser runs for hours and the file times out.
  t.equal(code(() => parseXfcc(`By="${'\\\\'.repeat(500000)}`)), 'certificate_malformed');
  t.equal(code(() => parseXfcc(`By="${'\\"'.repeat(500000)}"x`)), 'certificate_malformed');
  t.equal(parseXfcc('By=x;'.repeat(200000).slice(0, -1)).length, 1);
  t.equal(code(() => parseXfcc('By=x;'.repeat(200000))), 'certificate_malformed');
});
