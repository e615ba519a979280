import t from 'tap';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { codeOf } from '../helpers/codes.js';
import { ClientCertificate, type CertificateResult } from '../../src/certificate/types.js';
import type { RouteConfig } from '../../src/config/types.js';
import type { RequestView } from '../../src/gateway.js';
import { GatewayError } from '../../src/errors.js';
import { claimsOf } from '../../src/token/claims.js';
import type { TokenClaims, TokenValidator } from '../../src/token/types.js';
import { parseTarget } from '../../src/route.js';
import { NO_IDENTITY, authorizerFor, outcomeOf, routeOf, type Identity } from '../../src/stages.js';

// The stages on plain values: no server, no socket. A RequestView is data; the certificate
// reader and the token validator are the stage's inputs, given here as small functions.
const vector = new X509Certificate(readFileSync(new URL('../vectors/rfc8705-appendix-a.pem', import.meta.url)));
const certificate = new ClientCertificate(vector);
const present: CertificateResult = { present: true, certificate };
const view = (headers: NodeJS.Dict<string[]> = {}): RequestView => ({ headers, socket: {} as RequestView['socket'], connection: {}, method: 'GET' });
const route = (auth: RouteConfig['auth'], scopes: string[] = []): RouteConfig => ({
  name: 'r', pathPrefix: '/', methods: ['GET'], upstream: 'u', auth, scopes, forwardAuthorization: false, allowDoubleEncoding: false, psd2Roles: [],
});
const claims = (thumbprint: string | undefined, scope = 'accounts'): TokenClaims =>
  claimsOf({ scope, client_id: 'tpp-a', ...(thumbprint ? { cnf: { 'x5t#S256': thumbprint } } : {}) }, (m) => new Error(m));

function parts(cert: CertificateResult, opts: { cached?: TokenClaims; validated?: TokenClaims } = {}) {
  const calls = { reads: 0, cached: 0, validated: 0 };
  const tokens: TokenValidator = {
    cached: () => (calls.cached++, opts.cached),
    validate: async () => {
      calls.validated++;
      if (!opts.validated) throw new GatewayError('inactive', 'the access token is not active');
      return opts.validated;
    },
    ready: () => true,
    start: () => undefined,
    close: async () => undefined,
  };
  return { calls, parts: { readCertificate: () => (calls.reads++, cert), tokens } };
}
const bearer = { authorization: ['Bearer tok'] };
const target = parseTarget('/accounts');

t.test('none: nothing read, nothing checked', async (t) => {
  const { calls, parts: p } = parts(present);
  t.equal(authorizerFor(route('none'), p)(view(bearer), target), NO_IDENTITY);
  t.same(calls, { reads: 0, cached: 0, validated: 0 });
});

t.test('mtls: the certificate is required, no token looked at', async (t) => {
  t.same(authorizerFor(route('mtls'), parts(present).parts)(view(), target), { certificate });
  t.equal(codeOf(() => authorizerFor(route('mtls'), parts({ present: false }).parts)(view(), target)), 'transport_certificate_missing');
});

t.test('certificate_bound_token: credentials, then token, binding, policy', async (t) => {
  const bound = claims(certificate.thumbprint);
  // Credentials first: no token → missing_token before the certificate is even read.
  const none = parts(present, { cached: bound });
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), none.parts)(view(), target)), 'missing_token');
  t.equal(none.calls.reads, 0);
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), none.parts)(view(bearer), parseTarget('/a?access_token=x'))), 'token_in_query');
  // No certificate: refused before any validation is spent.
  const noCert = parts({ present: false, why: 'connection is not TLS' }, { validated: bound });
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), noCert.parts)(view(bearer), target)), 'certificate_missing');
  t.same([noCert.calls.cached, noCert.calls.validated], [0, 0]);
  // A cached token: answered synchronously, no promise.
  const hit = parts(present, { cached: bound });
  const identity = authorizerFor(route('certificate_bound_token', ['accounts']), hit.parts)(view(bearer), target);
  t.notOk(identity instanceof Promise, 'a cache hit costs no promise');
  t.same(identity, { claims: bound, certificate });
  t.equal(hit.calls.validated, 0);
  // A miss: validated, then the same checks.
  const miss = parts(present, { validated: bound });
  const later = authorizerFor(route('certificate_bound_token'), miss.parts)(view(bearer), target);
  t.ok(later instanceof Promise);
  t.same(await later, { claims: bound, certificate });
  // Binding and policy.
  const other = parts(present, { cached: claims('B4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0') });
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), other.parts)(view(bearer), target)), 'certificate_mismatch');
  const unbound = parts(present, { cached: claims(undefined) });
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), unbound.parts)(view(bearer), target)), 'unbound_token');
  const narrow = parts(present, { cached: bound });
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token', ['payments']), narrow.parts)(view(bearer), target)), 'insufficient_scope');
  const rejected = await (authorizerFor(route('certificate_bound_token'), parts(present).parts)(view(bearer), target) as Promise<Identity>).catch((e: unknown) => e);
  t.equal((rejected as GatewayError).code, 'inactive');
  t.equal(codeOf(() => authorizerFor(route('certificate_bound_token'), { readCertificate: () => present, tokens: undefined })(view(bearer), target)), 'as_unavailable');
});

t.test('route: the router\'s findings become their refusals', async (t) => {
  const r = { name: 'r', config: route('none') } as Parameters<typeof routeOf>[0] extends { route: infer R } ? R : never;
  t.equal(codeOf(() => routeOf({ kind: 'no_route', target }, 'GET')), 'no_route');
  try {
    routeOf({ kind: 'method_not_allowed', route: r, target }, 'DELETE');
    t.fail('no throw');
  } catch (e) {
    t.equal((e as GatewayError).code, 'method_not_allowed');
    t.same((e as GatewayError).details.allow, ['GET']);
  }
  t.equal(routeOf({ kind: 'match', route: r, target }, 'GET'), r);
});

t.test('outcome of a record', async (t) => {
  t.equal(outcomeOf(200, undefined), 'forwarded');
  t.equal(outcomeOf(503, undefined), 'forwarded', 'an upstream 5xx passed through is still forwarded');
  t.equal(outcomeOf(401, 'inactive'), 'rejected');
  t.equal(outcomeOf(503, 'as_unavailable'), 'error');
  t.equal(outcomeOf(500, 'internal'), 'error');
  t.equal(outcomeOf(499, 'client_closed'), 'client_closed');
});
