// The certificate-trust stage (PSD2 roles, then revocation) on plain values: where it runs in
// each auth mode, what it refuses, and that it runs before any token is validated.
import t from 'tap';
import { ClientCertificate, type CertificateResult } from '../../src/certificate/types.js';
import type { RouteConfig } from '../../src/config/types.js';
import type { RequestView } from '../../src/gateway.js';
import { GatewayError } from '../../src/errors.js';
import { errorResponse } from '../../src/respond.js';
import type { RevocationChecker } from '../../src/revocation/checker.js';
import { claimsOf } from '../../src/token/claims.js';
import type { TokenClaims, TokenValidator } from '../../src/token/types.js';
import { parseTarget } from '../../src/route.js';
import { authorizerFor, trustStageFor } from '../../src/stages.js';
import { codeOf } from '../helpers/codes.js';
import { createOpensslCa, psd2QcStatements } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('Stage QTSP');
t.teardown(() => ca.remove());
const aisp = new ClientCertificate(ca.issue('AISP', { qcStatements: psd2QcStatements(['PSP_AI']), organizationIdentifier: 'PSDGB-FCA-123456' }).x509);
const pisp = new ClientCertificate(ca.issue('PISP', { qcStatements: psd2QcStatements(['PSP_PI']) }).x509);
const plain = new ClientCertificate(ca.issue('No QC').x509);

const route = (auth: RouteConfig['auth'], psd2Roles: RouteConfig['psd2Roles'] = []): RouteConfig => ({
  name: 'r', pathPrefix: '/', methods: ['GET'], upstream: 'u', auth, scopes: [], forwardAuthorization: false, allowDoubleEncoding: false, psd2Roles,
});
const view: RequestView = { headers: { authorization: ['Bearer tok'] }, socket: {} as RequestView['socket'], connection: {}, method: 'GET' };
const target = parseTarget('/accounts');

/** A revocation checker answering from a set of revoked thumbprints, synchronously or not. */
function revocation(revoked: ReadonlySet<string>, async = false) {
  const checked: string[] = [];
  const checker: RevocationChecker = {
    check: (c) => {
      checked.push(c.thumbprint);
      const verdict = () => {
        if (revoked.has(c.thumbprint)) throw new GatewayError('certificate_revoked', 'client certificate revoked');
      };
      return async ? Promise.resolve().then(verdict) : verdict();
    },
    start: () => undefined,
    ready: () => true,
    close: () => undefined,
  };
  return { checker, checked };
}
function tokens(bound: TokenClaims) {
  const calls = { cached: 0, validated: 0 };
  const validator: TokenValidator = {
    cached: () => (calls.cached++, undefined),
    validate: async () => (calls.validated++, bound),
    ready: () => true,
    start: () => undefined,
    close: async () => undefined,
  };
  return { validator, calls };
}
const boundTo = (c: ClientCertificate): TokenClaims => claimsOf({ scope: 'accounts', client_id: 'tpp', cnf: { 'x5t#S256': c.thumbprint } }, (m) => new Error(m));
const present = (c: ClientCertificate): CertificateResult => ({ present: true, certificate: c });

t.test('a route that asks neither roles nor revocation has no trust stage at all', async (t) => {
  t.equal(trustStageFor(route('mtls'), undefined), undefined);
  t.type(trustStageFor(route('mtls', ['PSP_AI']), undefined), 'function');
  t.type(trustStageFor(route('mtls'), revocation(new Set()).checker), 'function');
});

t.test('psd2_roles: at least one of the listed roles, else 403 insufficient_role with the exact body', async (t) => {
  const stage = trustStageFor(route('certificate_bound_token', ['PSP_AI']), undefined);
  t.equal(stage?.(aisp), undefined);
  t.equal(codeOf(() => stage?.(pisp)), 'insufficient_role');
  t.equal(codeOf(() => stage?.(plain)), 'insufficient_role', 'no qcStatements: no role');
  const either = trustStageFor(route('mtls', ['PSP_AI', 'PSP_PI']), undefined);
  t.equal(either?.(pisp), undefined);
  t.equal(codeOf(() => either?.(plain)), 'insufficient_role');
  try {
    stage?.(pisp);
  } catch (e) {
    const response = errorResponse(e as GatewayError, 'certificate_bound_token', 'certbound');
    t.equal(response.status, 403);
    t.equal(response.body, '{"error":"insufficient_role","error_description":"client certificate lacks PSD2 role PSP_AI"}');
    t.equal(response.headers['www-authenticate'], undefined, 'not an RFC 6750 code: no Bearer challenge');
  }
  try {
    either?.(plain);
  } catch (e) {
    t.equal((e as GatewayError).description, 'client certificate lacks PSD2 role PSP_AI or PSP_PI');
  }
});

t.test('certificate_bound_token: roles and revocation run before the token is validated', async (t) => {
  const revoked = revocation(new Set([pisp.thumbprint]));
  const wrongRole = tokens(boundTo(pisp));
  const authorize = authorizerFor(route('certificate_bound_token', ['PSP_AI']), { readCertificate: () => present(pisp), tokens: wrongRole.validator, revocation: revoked.checker });
  t.equal(codeOf(() => authorize(view, target)), 'insufficient_role');
  t.same(wrongRole.calls, { cached: 0, validated: 0 }, 'no cache lookup, no introspection');
  t.same(revoked.checked, [], 'the role check comes before revocation');

  const noRoles = authorizerFor(route('certificate_bound_token'), { readCertificate: () => present(pisp), tokens: wrongRole.validator, revocation: revoked.checker });
  t.equal(codeOf(() => noRoles(view, target)), 'certificate_revoked');
  t.same(wrongRole.calls, { cached: 0, validated: 0 });

  const good = tokens(boundTo(aisp));
  const fine = authorizerFor(route('certificate_bound_token', ['PSP_AI']), { readCertificate: () => present(aisp), tokens: good.validator, revocation: revoked.checker });
  const identity = await fine(view, target);
  t.equal(identity.certificate, aisp);
  t.same(good.calls, { cached: 1, validated: 1 });

  const later = revocation(new Set([aisp.thumbprint]), true);
  const pending = authorizerFor(route('certificate_bound_token'), { readCertificate: () => present(aisp), tokens: good.validator, revocation: later.checker })(view, target);
  t.ok(pending instanceof Promise, 'a status being looked up makes the stage asynchronous');
  await t.rejects(Promise.resolve(pending), { code: 'certificate_revoked' });
  t.same(good.calls, { cached: 1, validated: 1 }, 'a revoked certificate costs no token validation');
});

t.test('mtls (the token filter): a revoked certificate never passes, and is invalid_client', async (t) => {
  const revoked = revocation(new Set([pisp.thumbprint]));
  const filter = authorizerFor(route('mtls'), { readCertificate: () => present(pisp), tokens: undefined, revocation: revoked.checker });
  t.equal(codeOf(() => filter(view, target)), 'certificate_revoked');
  const response = errorResponse(new GatewayError('certificate_revoked', 'client certificate revoked'), 'mtls', 'certbound');
  t.equal(response.status, 401);
  t.equal(response.body, '{"error":"invalid_client","error_description":"client certificate revoked"}');
  t.equal(response.headers['www-authenticate'], undefined);
  const api = errorResponse(new GatewayError('certificate_revoked', 'client certificate revoked'), 'certificate_bound_token', 'certbound');
  t.equal(api.status, 401);
  t.equal(api.headers['www-authenticate'], 'Bearer realm="certbound", error="invalid_token", error_description="client certificate revoked"');
  const unavailable = errorResponse(new GatewayError('revocation_unavailable', 'client certificate revocation status unavailable', { retryAfter: 5 }), 'mtls', 'certbound');
  t.same([unavailable.status, unavailable.headers['retry-after']], [503, '5']);

  const fine = authorizerFor(route('mtls'), { readCertificate: () => present(aisp), tokens: undefined, revocation: revocation(new Set(), true).checker });
  t.same(await fine(view, target), { certificate: aisp });
});

t.test('the certificate reads its PSD2 identity once', async (t) => {
  t.same(aisp.psd2.roles, ['PSP_AI']);
  t.equal(aisp.psd2.organizationId, 'PSDGB-FCA-123456');
  t.equal(aisp.psd2, aisp.psd2, 'the same object on every request');
  t.same(plain.psd2.roles, []);
});

t.test('a DPoP request with a token also bound to a certificate: that certificate is checked for revocation too', async (t) => {
  const { proof, proofKey } = await import('../dpop/fixtures.js');
  const { createDpopParts } = await import('../../src/dpop/stage.js');
  const key = proofKey('ES256');
  const both = (c: ClientCertificate): TokenClaims => claimsOf({ scope: 'accounts', client_id: 'tpp', cnf: { 'x5t#S256': c.thumbprint, jkt: key.jkt } }, (m) => new Error(m));
  const dpop = createDpopParts({ algorithms: ['ES256'], iatLeewaySeconds: 60, nonce: 'off', nonceLifetimeSeconds: 300, nonceSecret: Buffer.alloc(32), replayCacheEntries: 10 }, { clock: Date.now });
  const dpopRoute: RouteConfig = { ...route('dpop_bound_token'), publicOrigin: 'https://api.example' };
  const dpopView = (): RequestView => ({ ...view, headers: { authorization: ['DPoP tok'], dpop: [proof(key, 'GET', 'https://api.example/accounts', 'tok')] } });
  for (const async of [false, true]) {
    const { checker, checked } = revocation(new Set([pisp.thumbprint]), async);
    const authorize = (c: ClientCertificate) => authorizerFor(dpopRoute, { readCertificate: () => present(c), tokens: tokens(both(c)).validator, revocation: checker, dpop });
    const identity = await authorize(aisp)(dpopView(), target);
    t.equal(identity.certificate?.thumbprint, aisp.thumbprint, `async ${async}: a good certificate passes`);
    t.equal(identity.jkt, key.jkt);
    await t.rejects(Promise.resolve().then(() => authorize(pisp)(dpopView(), target)), { code: 'certificate_revoked' }, `async ${async}: a revoked one is refused`);
    t.same(checked, [aisp.thumbprint, pisp.thumbprint]);
  }
  const { checker, checked } = revocation(new Set());
  const keyOnly = claimsOf({ scope: 'accounts', cnf: { jkt: key.jkt } }, (m) => new Error(m));
  await authorizerFor(dpopRoute, { readCertificate: () => present(aisp), tokens: tokens(keyOnly).validator, revocation: checker, dpop })(dpopView(), target);
  t.same(checked, [], 'a token bound to the key only needs no certificate, so none is checked');
});
