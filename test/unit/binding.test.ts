import t from 'tap';
import { codeOf } from '../helpers/codes.js';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { checkBinding } from '../../src/binding.js';
import { checkScopes } from '../../src/policy.js';
import { ClientCertificate } from '../../src/certificate/types.js';
import { claimsOf } from '../../src/token/claims.js';
import { createSelfSigned } from '../fixtures/pki.js';
import { sameBytes, thumbprintOf } from '../../src/certificate/thumbprint.js';
import { GatewayError } from '../../src/errors.js';
import type { TokenClaims } from '../../src/token/types.js';

const vector = JSON.parse(readFileSync(new URL('../vectors/rfc8705-appendix-a.json', import.meta.url), 'utf8')) as { 'x5t#S256': string };
const x509 = new X509Certificate(readFileSync(new URL('../vectors/rfc8705-appendix-a.pem', import.meta.url)));
const certificate = new ClientCertificate(x509);
/** Claims as the token stage builds them (claimsOf derives the thumbprint's bytes). */
const claims = (over: { x5tS256?: string | undefined } = {}): TokenClaims => {
  const thumbprint = 'x5tS256' in over ? over.x5tS256 : vector['x5t#S256'];
  return claimsOf({ scope: 'accounts', ...(thumbprint === undefined ? {} : { cnf: { 'x5t#S256': thumbprint } }) }, (m) => new Error(m));
};
const code = codeOf;

t.test('RFC 8705 Appendix A thumbprint', async (t) => {
  t.equal(thumbprintOf(x509.raw), 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0');
  t.equal(thumbprintOf(x509.raw), vector['x5t#S256']);
});

t.test('binding fails closed', async (t) => {
  t.equal(checkBinding(claims(), { present: true, certificate }), certificate);
  t.equal(code(() => checkBinding(claims({ x5tS256: undefined }), { present: true, certificate })), 'unbound_token');
  t.equal(code(() => checkBinding(claims(), { present: false })), 'certificate_missing');
  t.equal(code(() => checkBinding(claims({ x5tS256: 'B4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0' }), { present: true, certificate })), 'certificate_mismatch');
  t.equal(code(() => checkBinding(claims({ x5tS256: 'short' }), { present: true, certificate })), 'certificate_mismatch');
  try {
    checkBinding(claims(), { present: false, why: 'client certificate not verified (CERT_HAS_EXPIRED)' });
  } catch (e) {
    t.equal((e as GatewayError).description, 'client certificate required: client certificate not verified (CERT_HAS_EXPIRED)');
  }
});

t.test('sameBytes', async (t) => {
  const b = (s: string) => Buffer.from(s);
  t.ok(sameBytes(b('abc'), b('abc')));
  t.notOk(sameBytes(b('abc'), b('abd')));
  t.notOk(sameBytes(b('abc'), b('abcd')));
  t.notOk(sameBytes(b('abcd'), b('abc')));
});

t.test('the same claims and certificate objects, checked again in other pairings, give the same answers', async (t) => {
  const bound = claims();
  const other = new ClientCertificate(new X509Certificate((await createSelfSigned({ commonName: 'Other', kind: 'client' })).certPem));
  for (let i = 0; i < 2; i++) {
    t.equal(checkBinding(bound, { present: true, certificate }), certificate);
    t.equal(code(() => checkBinding(bound, { present: true, certificate: other })), 'certificate_mismatch');
    t.equal(checkBinding(claims({ x5tS256: other.thumbprint }), { present: true, certificate: other }), other);
    t.equal(code(() => checkBinding(claims({ x5tS256: other.thumbprint }), { present: true, certificate })), 'certificate_mismatch');
  }
});

t.test('scopes: every required scope must be granted', async (t) => {
  t.equal(code(() => checkScopes(claims(), ['accounts'])), 'no error');
  t.equal(code(() => checkScopes(claims(), [])), 'no error');
  t.equal(code(() => checkScopes(claims(), ['accounts', 'payments'])), 'insufficient_scope');
});
