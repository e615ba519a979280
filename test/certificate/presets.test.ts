import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHeaderCertificateReader } from '../../src/certificate/header.js';
import { PRESETS } from '../../src/certificate/presets.js';
import { buildConfig } from '../../src/config/load.js';
import {
  PROXY, albEscape, apacheSpaces, b64, createCa, createChain, envoyElement, nginxEscape, rfc9440, wso2OneLine,
} from './fixtures/helpers.js';

const ca = await createCa({ commonName: 'Preset CA' });
const tpp = await ca.issue({ commonName: 'TPP', kind: 'client' });
const chained = await createChain('TPP Preset');

/** Each preset: what it expects, and what that load balancer sends for `tpp` (chains use `chained`). */
const EXPECTED: Record<string, { header: string; format: string; encoded: boolean; chainHeader?: string; verify?: string; send: Record<string, string>; leaf: string }> = {
  'ingress-nginx': { header: 'ssl-client-cert', format: 'pem', encoded: true, verify: 'ssl-client-verify', send: { 'ssl-client-cert': nginxEscape(tpp.certPem), 'ssl-client-verify': 'SUCCESS' }, leaf: tpp.thumbprint },
  nginx: { header: 'ssl-client-cert', format: 'pem', encoded: true, verify: 'ssl-client-verify', send: { 'ssl-client-cert': nginxEscape(tpp.certPem), 'ssl-client-verify': 'SUCCESS' }, leaf: tpp.thumbprint },
  envoy: { header: 'x-forwarded-client-cert', format: 'xfcc', encoded: true, send: { 'x-forwarded-client-cert': envoyElement(tpp.der) }, leaf: tpp.thumbprint },
  istio: { header: 'x-forwarded-client-cert', format: 'xfcc', encoded: true, send: { 'x-forwarded-client-cert': envoyElement(tpp.der) }, leaf: tpp.thumbprint },
  'aws-alb': { header: 'x-amzn-mtls-clientcert-leaf', format: 'aws-alb', encoded: true, send: { 'x-amzn-mtls-clientcert-leaf': albEscape(tpp.certPem) }, leaf: tpp.thumbprint },
  'aws-alb-passthrough': {
    header: 'x-amzn-mtls-clientcert', format: 'aws-alb', encoded: true,
    send: { 'x-amzn-mtls-clientcert': albEscape(chained.leaf.certPem + chained.intermediate.certPem) }, leaf: chained.leaf.thumbprint,
  },
  gcp: {
    header: 'x-client-cert-leaf', format: 'rfc9440', encoded: false, chainHeader: 'x-client-cert-chain',
    send: { 'x-client-cert-leaf': rfc9440(chained.leaf.der), 'x-client-cert-chain': rfc9440(chained.intermediate.der) }, leaf: chained.leaf.thumbprint,
  },
  cloudflare: {
    header: 'client-cert', format: 'rfc9440', encoded: false, chainHeader: 'client-cert-chain',
    send: { 'client-cert': rfc9440(chained.leaf.der), 'client-cert-chain': rfc9440(chained.intermediate.der) }, leaf: chained.leaf.thumbprint,
  },
  'azure-app-gateway': { header: 'x-arr-clientcert', format: 'pem', encoded: true, send: { 'x-arr-clientcert': nginxEscape(tpp.certPem) }, leaf: tpp.thumbprint },
  'azure-app-service': { header: 'x-arr-clientcert', format: 'der-base64', encoded: false, send: { 'x-arr-clientcert': b64(tpp.der) }, leaf: tpp.thumbprint },
  traefik: {
    header: 'x-forwarded-tls-client-cert', format: 'traefik', encoded: false,
    send: { 'x-forwarded-tls-client-cert': `${b64(chained.leaf.der)},${b64(chained.intermediate.der)}` }, leaf: chained.leaf.thumbprint,
  },
  haproxy: { header: 'x-ssl-client-der', format: 'der-base64', encoded: false, send: { 'x-ssl-client-der': b64(tpp.der) }, leaf: tpp.thumbprint },
  caddy: { header: 'x-client-cert-der', format: 'der-base64', encoded: false, send: { 'x-client-cert-der': b64(tpp.der) }, leaf: tpp.thumbprint },
  apache: { header: 'ssl-client-cert', format: 'pem', encoded: false, send: { 'ssl-client-cert': apacheSpaces(tpp.certPem) }, leaf: tpp.thumbprint },
  kong: { header: 'x-client-cert', format: 'pem', encoded: true, send: { 'x-client-cert': nginxEscape(tpp.certPem) }, leaf: tpp.thumbprint },
  wso2: { header: 'x-wso2-client-certificate', format: 'pem', encoded: true, send: { 'x-wso2-client-certificate': wso2OneLine(tpp.der) }, leaf: tpp.thumbprint },
};

/** The config a user writes: `preset:` and `trusted_proxies:`, nothing else. */
function configFor(preset: string) {
  return buildConfig({
    client_certificate: { source: 'header', preset, trusted_proxies: ['10.0.0.0/8'] },
    upstreams: { bank: 'http://127.0.0.1:8080' },
    routes: [{ name: 'open', path_prefix: '/', upstream: 'bank', auth: 'none' }],
  }).clientCertificate;
}

t.test('the preset list', async (t) => {
  t.same(Object.keys(PRESETS).sort(), Object.keys(EXPECTED).sort());
  t.equal(PRESETS.istio, PRESETS.envoy, 'istio is an alias');
});

for (const [name, expected] of Object.entries(EXPECTED)) {
  t.test(`preset ${name}`, async (t) => {
    const c = configFor(name);
    t.equal(c.header, expected.header);
    t.equal(c.format, expected.format);
    t.equal(c.encoded, expected.encoded);
    t.equal(c.chainHeader, expected.chainHeader);
    t.equal(c.verifyHeader?.name, expected.verify);
    const reader = createHeaderCertificateReader(c);
    t.same([...reader.headerNames].sort(), [expected.header, expected.chainHeader, expected.verify].filter((h) => h !== undefined).sort());
    const headers = Object.fromEntries(Object.entries(expected.send).map(([k, v]) => [k, [v]]));
    const result = reader.read(headers, PROXY);
    t.ok(result.present && result.certificate.thumbprint === expected.leaf, 'reads what the load balancer sends');
  });
}

t.test('docs/load-balancers.md names every preset with its header', async (t) => {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/load-balancers.md', import.meta.url)), 'utf8');
  for (const [name, preset] of Object.entries(PRESETS)) {
    t.match(doc, `preset: ${name}`, name);
    t.match(doc.toLowerCase(), preset.header, `${name}: ${preset.header}`);
  }
});
