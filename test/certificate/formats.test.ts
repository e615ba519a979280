import t from 'tap';
import { codeOf } from '../helpers/codes.js';
import { createHeaderCertificateReader } from '../../src/certificate/header.js';
import type { ClientCertificateConfig } from '../../src/config/types.js';
import {
  PROXY, VECTOR_DER, VECTOR_PEM, VECTOR_THUMBPRINT, VECTOR_TIME, albEscape, apacheSpaces, b64, config, createCa, createChain,
  envoyElement, issueWithPlusAndSlash, nginxEscape, pemOf, queryEscape, rfc9440, wso2OneLine,
} from './fixtures/helpers.js';

const ca = await createCa({ commonName: 'Formats CA' });
const tpp = await issueWithPlusAndSlash(ca, 'TPP Plus');
const chained = await createChain('TPP Formats');

/** Reads one request carrying `headers` from the trusted proxy; returns the thumbprint or throws. */
function thumbprint(overrides: Partial<ClientCertificateConfig>, headers: Record<string, string>, now = Date.now()): string {
  const reader = createHeaderCertificateReader(config({ cacheSize: 0, ...overrides }), () => now);
  const distinct = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]]));
  const result = reader.read(distinct, PROXY);
  if (!result.present) throw new Error(`no certificate: ${result.why ?? ''}`);
  return result.certificate.thumbprint;
}

const code = codeOf;

t.test('the test certificates carry + and / in their base64', async (t) => {
  t.match(b64(tpp.der), /\+/);
  t.match(b64(tpp.der), /\//);
  t.match(b64(VECTOR_DER), /\+.*\//s);
});

t.test('pem, URL-encoded (nginx $ssl_client_escaped_cert, Azure App Gateway, Kong)', async (t) => {
  const pem = { format: 'pem', encoded: true } as const;
  t.equal(thumbprint(pem, { 'x-client-cert': nginxEscape(tpp.certPem) }), tpp.thumbprint);
  t.equal(thumbprint(pem, { 'x-client-cert': encodeURIComponent(tpp.certPem) }), tpp.thumbprint, 'encodeURIComponent spelling');
  t.equal(thumbprint(pem, { 'x-client-cert': albEscape(tpp.certPem) }), tpp.thumbprint, '+ kept literal, never a space');
  t.equal(thumbprint(pem, { 'x-client-cert': nginxEscape(tpp.certPem.replaceAll('\n', '\r\n')) }), tpp.thumbprint, 'CRLF');
  t.equal(thumbprint(pem, { 'x-client-cert': b64(tpp.der) }), tpp.thumbprint, 'bare base64 DER');
  t.equal(thumbprint(pem, { 'x-client-cert': nginxEscape(VECTOR_PEM) }, VECTOR_TIME), VECTOR_THUMBPRINT, 'RFC 8705 vector');
  t.equal(code(() => thumbprint(pem, { 'x-client-cert': nginxEscape(tpp.certPem).replaceAll('%2B', '+').replaceAll('%2F', ' ') })), 'certificate_malformed');
});

t.test('pem, one line (WSO2)', async (t) => {
  t.equal(thumbprint({ format: 'pem', encoded: true }, { 'x-client-cert': wso2OneLine(tpp.der) }), tpp.thumbprint);
  t.equal(thumbprint({ format: 'pem', encoded: true }, { 'x-client-cert': wso2OneLine(VECTOR_DER) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  t.equal(thumbprint({ format: 'pem', encoded: false }, { 'x-client-cert': decodeURIComponent(wso2OneLine(tpp.der)) }), tpp.thumbprint, 'not encoded');
});

t.test('pem, raw with spaces or tabs (Apache, WSO2 unencoded, nginx legacy)', async (t) => {
  const raw = { format: 'pem', encoded: false } as const;
  t.equal(thumbprint(raw, { 'x-client-cert': apacheSpaces(tpp.certPem) }), tpp.thumbprint);
  t.equal(thumbprint(raw, { 'x-client-cert': apacheSpaces(VECTOR_PEM) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  t.equal(thumbprint(raw, { 'x-client-cert': tpp.certPem.trimEnd().replaceAll('\n', '\t') }), tpp.thumbprint, 'tabs');
  t.equal(thumbprint(raw, { 'x-client-cert': tpp.certPem.trimEnd().replaceAll('\n', '\n\t') }), tpp.thumbprint, 'folded');
  t.equal(code(() => thumbprint(raw, { 'x-client-cert': nginxEscape(tpp.certPem) })), 'certificate_malformed', 'escaped value when not configured so');
});

t.test('pem with a chain: the thumbprint is the leaf only', async (t) => {
  const value = nginxEscape(chained.leaf.certPem + chained.intermediate.certPem);
  t.equal(thumbprint({ format: 'pem' }, { 'x-client-cert': value }), chained.leaf.thumbprint);
});

t.test('der-base64 (HAProxy, Caddy, Azure App Service, Cloudflare Cf-Client-Cert-Der-Base64)', async (t) => {
  t.equal(thumbprint({ format: 'der-base64' }, { 'x-client-cert': b64(tpp.der) }), tpp.thumbprint);
  t.equal(thumbprint({ format: 'der-base64' }, { 'x-client-cert': b64(VECTOR_DER) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  t.equal(code(() => thumbprint({ format: 'der-base64' }, { 'x-client-cert': tpp.certPem })), 'certificate_malformed', 'PEM is not der-base64');
  t.equal(code(() => thumbprint({ format: 'der-base64' }, { 'x-client-cert': b64(tpp.der).replaceAll('+', ' ') })), 'certificate_malformed', 'form-decoded');
});

t.test('rfc9440 (Google Cloud, Cloudflare) with and without chain', async (t) => {
  const gcp = { format: 'rfc9440', chainHeader: 'x-client-cert-chain' } as const;
  t.equal(thumbprint(gcp, { 'x-client-cert': rfc9440(tpp.der) }), tpp.thumbprint);
  t.equal(thumbprint(gcp, { 'x-client-cert': rfc9440(VECTOR_DER) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  t.equal(
    thumbprint(gcp, { 'x-client-cert': rfc9440(chained.leaf.der), 'x-client-cert-chain': `${rfc9440(chained.intermediate.der)}, ${rfc9440(chained.root.der)}` }),
    chained.leaf.thumbprint,
  );
  t.equal(thumbprint(gcp, { 'x-client-cert': rfc9440(tpp.der), 'x-client-cert-chain': '' }), tpp.thumbprint, 'empty chain (Google past 16 KB)');
  t.equal(code(() => thumbprint(gcp, { 'x-client-cert': b64(tpp.der) })), 'certificate_malformed', 'no colons');
  t.equal(code(() => thumbprint(gcp, { 'x-client-cert': `${rfc9440(tpp.der)};a=1` })), 'certificate_malformed', 'parameters');
  t.equal(code(() => thumbprint(gcp, { 'x-client-cert': ':' })), 'certificate_malformed');
  t.equal(code(() => thumbprint(gcp, { 'x-client-cert': rfc9440(tpp.der), 'x-client-cert-chain': `${rfc9440(chained.intermediate.der)},` })), 'certificate_malformed', 'empty chain item');
  t.equal(code(() => thumbprint(gcp, { 'x-client-cert': rfc9440(tpp.der), 'x-client-cert-chain': b64(chained.intermediate.der) })), 'certificate_malformed', 'chain item not a byte sequence');
});

t.test('traefik: comma-separated base64 DER, leaf first; older url-escaped items', async (t) => {
  const traefik = { format: 'traefik' } as const;
  t.equal(thumbprint(traefik, { 'x-client-cert': b64(tpp.der) }), tpp.thumbprint);
  t.equal(thumbprint(traefik, { 'x-client-cert': b64(VECTOR_DER) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  t.equal(thumbprint(traefik, { 'x-client-cert': `${b64(chained.leaf.der)},${b64(chained.intermediate.der)}` }), chained.leaf.thumbprint);
  t.equal(thumbprint(traefik, { 'x-client-cert': `${queryEscape(b64(chained.leaf.der))},${queryEscape(b64(chained.intermediate.der))}` }), chained.leaf.thumbprint, 'QueryEscape of base64');
  t.equal(thumbprint(traefik, { 'x-client-cert': queryEscape(tpp.certPem) }), tpp.thumbprint, 'QueryEscape of a whole PEM (+ for spaces)');
  t.equal(code(() => thumbprint(traefik, { 'x-client-cert': `${b64(tpp.der)},` })), 'certificate_malformed');
  t.equal(code(() => thumbprint(traefik, { 'x-client-cert': Array(11).fill(b64(tpp.der)).join(',') })), 'certificate_malformed', 'too many');
});

t.test('aws-alb: percent-encoded PEM with + = / literal; passthrough chain, leaf first', async (t) => {
  const alb = { format: 'aws-alb' } as const;
  t.equal(thumbprint(alb, { 'x-client-cert': albEscape(tpp.certPem) }), tpp.thumbprint);
  t.equal(thumbprint(alb, { 'x-client-cert': albEscape(VECTOR_PEM) }, VECTOR_TIME), VECTOR_THUMBPRINT);
  const chain = albEscape(chained.leaf.certPem + chained.intermediate.certPem + chained.root.certPem);
  t.equal(thumbprint(alb, { 'x-client-cert': chain }), chained.leaf.thumbprint);
  t.equal(thumbprint(alb, { 'x-client-cert': nginxEscape(tpp.certPem) }), tpp.thumbprint, 'fully escaped also decodes');
  t.equal(code(() => thumbprint(alb, { 'x-client-cert': albEscape(tpp.certPem).replaceAll('+', ' ') })), 'certificate_malformed', 'form-decoded on the way');
});

t.test('xfcc (Envoy, Istio)', async (t) => {
  const xfcc = { format: 'xfcc' } as const;
  t.equal(thumbprint(xfcc, { 'x-client-cert': envoyElement(tpp.der) }), tpp.thumbprint);
  t.equal(thumbprint(xfcc, { 'x-client-cert': envoyElement(VECTOR_DER) }, VECTOR_TIME), VECTOR_THUMBPRINT);
});

t.test('nothing but the first certificate is ever hashed', async (t) => {
  const other = await ca.issue({ commonName: 'Other', kind: 'client' });
  const value = nginxEscape(tpp.certPem + other.certPem);
  t.equal(thumbprint({ format: 'pem' }, { 'x-client-cert': value }), tpp.thumbprint);
  t.equal(thumbprint({ format: 'traefik' }, { 'x-client-cert': `${b64(other.der)},${b64(tpp.der)}` }), other.thumbprint);
});

t.test('pemOf is the canonical PEM the proxies produce', async (t) => {
  t.equal(pemOf(tpp.der), tpp.certPem);
});

t.test('a chain header in the same encoding as the certificate header; ten certificates at most in all', async (t) => {
  const pem = { format: 'pem', chainHeader: 'x-chain' } as const;
  t.equal(thumbprint(pem, { 'x-client-cert': nginxEscape(chained.leaf.certPem), 'x-chain': nginxEscape(chained.intermediate.certPem) }), chained.leaf.thumbprint);
  t.equal(thumbprint(pem, { 'x-client-cert': nginxEscape(tpp.certPem), 'x-chain': '(null)' }), tpp.thumbprint, 'no-certificate shape in the chain header');
  const five = nginxEscape(tpp.certPem.repeat(5));
  t.equal(code(() => thumbprint({ ...pem, maxHeaderBytes: 65536 }, { 'x-client-cert': five, 'x-chain': nginxEscape(tpp.certPem.repeat(6)) })), 'certificate_malformed');
  t.equal(thumbprint({ ...pem, maxHeaderBytes: 65536 }, { 'x-client-cert': five, 'x-chain': five }), tpp.thumbprint, 'exactly ten');
  t.equal(code(() => thumbprint(pem, { 'x-client-cert': nginxEscape(tpp.certPem), 'x-chain': '%%' })), 'certificate_malformed', 'bad chain');
});
