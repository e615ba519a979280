// certbound's token validation against a real authorization server (oidc-provider on loopback).
import t, { type Test } from 'tap';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AuthorizationServerConfig, ClientAuthMethod, TokenValidationMode } from '../../src/config/types.js';
import { createCa, type Ca, type Issued } from '../fixtures/pki.js';
import { GatewayError } from '../../src/errors.js';
import { createTokenValidator } from '../../src/token/index.js';
import {
  BANK_API_RESOURCE,
  CERTBOUND_CLIENT_ID,
  CERTBOUND_CLIENT_SECRET,
  forwardedCertificate,
  startAuthorizationServer,
  type AuthorizationServerFixture,
  type ClientMetadata,
} from '../fixtures/authorization-server.js';
import { config, metrics, valueOf, type AsOptions } from './fixtures/fake-as.js';

type Tap = Test;
const file = (text: string) => ({ path: 'test.pem', contents: Buffer.from(text) });
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof GatewayError ? e.code : String(e)));

let ca: Ca;
let tpp: Issued;
let certboundCert: Issued;
let proxyCert: Issued;
t.before(async () => {
  ca = await createCa({ commonName: 'Real AS Test CA' });
  tpp = await ca.issue({ commonName: 'TPP A', organization: 'Certbound Test', kind: 'client' });
  certboundCert = await ca.issue({ commonName: 'certbound', organization: 'Certbound Test', kind: 'client' });
  proxyCert = await ca.issue({ commonName: '127.0.0.1', kind: 'server', ipAddresses: ['127.0.0.1'] });
});

/** The TPP that gets tokens: tls_client_auth through the certificate header, certificate-bound tokens. */
const tppClient = (): ClientMetadata => ({
  client_id: 'tpp-a',
  token_endpoint_auth_method: 'tls_client_auth',
  tls_client_auth_subject_dn: tpp.subject,
  tls_client_certificate_bound_access_tokens: true,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'accounts payments',
});

const certboundClient = (metadata: Partial<ClientMetadata>): ClientMetadata => ({
  client_id: CERTBOUND_CLIENT_ID,
  grant_types: [],
  response_types: [],
  redirect_uris: [],
  introspection_signed_response_alg: 'ES256',
  ...metadata,
});

async function startAs(t: Tap, certbound: ClientMetadata): Promise<AuthorizationServerFixture> {
  const as = await startAuthorizationServer({ clients: [tppClient(), certbound] });
  t.teardown(as.close);
  return as;
}

/** A client_credentials token for tpp-a, bound to its certificate; a JWT when a resource is named. */
async function tokenFor(as: AuthorizationServerFixture, resource?: string): Promise<string> {
  const res = await fetch(`${as.url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-client-cert': forwardedCertificate(tpp) },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts', ...(resource ? { resource } : {}) }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return body.access_token;
}

function asConfig(as: AuthorizationServerFixture, overrides: Partial<AsOptions>, mode: TokenValidationMode = 'introspection'): AuthorizationServerConfig {
  return config({
    issuer: as.issuer,
    introspectionEndpoint: `${as.url}/token/introspection`,
    jwksUri: `${as.url}/jwks`,
    clientId: CERTBOUND_CLIENT_ID,
    assertionAudience: as.issuer,
    timeoutMs: 5000,
    ...overrides,
  }, mode);
}

async function introspects(t: Tap, as: AuthorizationServerFixture, overrides: Partial<AsOptions>) {
  const m = metrics();
  const v = createTokenValidator(asConfig(as, overrides, 'introspection'), { metrics: m });
  t.teardown(() => v.close());
  const claims = await v.validate(await tokenFor(as));
  t.equal(claims.clientId, 'tpp-a');
  t.same([...claims.scopes], ['accounts']);
  t.equal(claims.x5tS256, tpp.thumbprint, 'cnf.x5t#S256 of the TPP certificate');
  t.equal(claims.iss, as.issuer);
  t.ok(claims.exp !== undefined && claims.exp > Date.now() / 1000);
  t.equal(await codeOf(v.validate('not-a-token-the-as-issued')), 'inactive');
  t.equal(await valueOf(m, 'introspections', { result: 'active' }), 1);
  return v;
}

const methods: ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post'];
for (const method of methods) {
  t.test(`${method} introspects a real token`, async (t) => {
    const as = await startAs(t, certboundClient({ token_endpoint_auth_method: method, client_secret: CERTBOUND_CLIENT_SECRET }));
    await introspects(t, as, { clientAuthMethod: method, clientSecret: CERTBOUND_CLIENT_SECRET });
    const wrong = createTokenValidator(asConfig(as, { clientAuthMethod: method, clientSecret: 'wrong' }, 'introspection'), {});
    t.teardown(() => wrong.close());
    t.equal(await codeOf(wrong.validate(await tokenFor(as))), 'as_unavailable', 'wrong credentials: the AS says 401, the client sees as_unavailable');
  });
}

t.test('private_key_jwt introspects a real token', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const as = await startAs(t, certboundClient({
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'certbound', use: 'sig' }] },
  }));
  await introspects(t, as, {
    clientAuthMethod: 'private_key_jwt',
    privateKey: file(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
  });
});

t.test('tls_client_auth introspects a real token (through a TLS terminator)', async (t) => {
  const as = await startAs(t, certboundClient({ token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: certboundCert.subject }));
  // The fixture speaks plain HTTP and reads the client certificate from x-client-cert, as it would
  // behind a TLS-terminating proxy. This is that proxy: mutual TLS in front, the header behind.
  const proxy = createHttpsServer(
    { cert: proxyCert.certPem, key: proxyCert.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const headers = { ...req.headers, 'x-client-cert': encodeURIComponent(new X509Certificate(peer.raw).toString()) };
      const upstream = httpRequest(`${as.url}${req.url ?? '/'}`, { method: req.method, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      req.pipe(upstream);
    },
  );
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    proxy.closeAllConnections();
    proxy.close(() => resolve());
  }));
  const endpoint = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}/token/introspection`;
  await introspects(t, as, {
    introspectionEndpoint: endpoint,
    clientAuthMethod: 'tls_client_auth',
    clientCert: file(certboundCert.certPem),
    clientKey: file(certboundCert.keyPem),
    ca: file(ca.certPem),
  });
  // Another certificate of the same CA, another subject: the AS refuses certbound (401) → as_unavailable.
  const other = await ca.issue({ commonName: 'not certbound', kind: 'client' });
  const impostor = createTokenValidator(
    asConfig(as, { introspectionEndpoint: endpoint, clientAuthMethod: 'tls_client_auth', clientCert: file(other.certPem), clientKey: file(other.keyPem), ca: file(ca.certPem) }, 'introspection'),
    {},
  );
  t.teardown(() => impostor.close());
  t.equal(await codeOf(impostor.validate(await tokenFor(as))), 'as_unavailable');
});

t.test('JWT access tokens (resource indicator) verified through the real jwks_uri', async (t) => {
  const as = await startAs(t, certboundClient({ token_endpoint_auth_method: 'client_secret_basic', client_secret: CERTBOUND_CLIENT_SECRET }));
  const m = metrics();
  const v = createTokenValidator(asConfig(as, { audience: BANK_API_RESOURCE, clientSecret: CERTBOUND_CLIENT_SECRET }, 'auto'), { metrics: m });
  t.teardown(() => v.close());
  const jwt = await tokenFor(as, BANK_API_RESOURCE);
  t.equal(jwt.split('.').length, 3, 'the AS issued a JWT');
  const claims = await v.validate(jwt);
  t.equal(claims.clientId, 'tpp-a');
  t.equal(claims.x5tS256, tpp.thumbprint);
  t.same([...claims.scopes], ['accounts']);
  t.ok(v.ready());
  t.equal(await valueOf(m, 'jwksFetches', { result: 'success' }), 1);
  t.equal(await valueOf(m, 'introspections', { result: 'active' }), 0, 'verified locally');
  // auto: an opaque token of the same AS is introspected.
  t.equal((await v.validate(await tokenFor(as))).x5tS256, tpp.thumbprint);
  t.equal(await valueOf(m, 'introspections', { result: 'active' }), 1);

  const otherAudience = createTokenValidator(asConfig(as, { audience: 'https://other.example' }, 'jwt'), {});
  t.teardown(() => otherAudience.close());
  t.equal(await codeOf(otherAudience.validate(jwt)), 'invalid_token', 'another resource refuses it');
});

t.test('signed introspection (RFC 9701) against the real AS', async (t) => {
  const as = await startAs(t, certboundClient({ token_endpoint_auth_method: 'client_secret_basic', client_secret: CERTBOUND_CLIENT_SECRET }));
  const v = await introspects(t, as, { clientSecret: CERTBOUND_CLIENT_SECRET, signedIntrospection: true });
  t.ok(v.ready());
  const seen = as.requests.filter((r) => r.path === '/token/introspection');
  t.ok(seen.length > 0 && seen.every((r) => r.headers.accept === 'application/token-introspection+jwt'));
});
