import t from 'tap';
import { SignJWT } from 'jose';
import { GatewayError } from '../../src/errors.js';
import { createTokenValidator } from '../../src/token/index.js';
import { CLIENT_ID, config, fakeServer, ISSUER, json, metrics, signingKey, valueOf } from './fixtures/fake-as.js';

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof GatewayError ? e.code : String(e)));

t.test('RFC 9701 signed introspection responses', async (t) => {
  const key = await signingKey('as-1');
  const stranger = await signingKey('as-1');
  const now = Math.floor(Date.now() / 1000);
  const body = { active: true, scope: 'accounts', client_id: 'tpp-a', exp: now + 300, iss: ISSUER };
  let reply: { jwt?: Promise<string>; json?: unknown; contentType?: string; jwksDown?: boolean } = {};
  const respond = (claims: Record<string, unknown>, header: Record<string, string> = {}, signer = key) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'as-1', typ: 'token-introspection+jwt', ...header }).setIssuedAt().sign(signer.privateKey);
  const server = await fakeServer(async (req, res) => {
    if (req.url === '/jwks') return reply.jwksDown ? json(res, {}, 500) : json(res, { keys: [key.jwk] });
    if (reply.json !== undefined) return json(res, reply.json);
    return json(res, await (reply.jwt ?? Promise.resolve('')), 200, reply.contentType ?? 'application/token-introspection+jwt; charset=utf-8');
  });
  t.teardown(server.close);
  const m = metrics();
  const v = createTokenValidator(
    config({ introspectionEndpoint: `${server.url}/introspect`, jwksUri: `${server.url}/jwks`, signedIntrospection: true, cache: { maxEntries: 0, maxTtlSeconds: 60, negativeTtlSeconds: 0 } }, 'introspection'),
    { metrics: m, jwks: { cooldownMs: 0, cacheMaxAgeMs: 0 } },
  );
  t.teardown(() => v.close());

  reply = { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: body }) };
  const claims = await v.validate('tok');
  t.equal(claims.clientId, 'tpp-a');
  t.same([...claims.scopes], ['accounts']);
  const introspect = server.seen.find((r) => r.url === '/introspect');
  t.equal(introspect?.headers.accept, 'application/token-introspection+jwt');
  t.ok(v.ready(), 'ready once the JWKS has loaded');

  reply = { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: { active: false } }) };
  t.equal(await codeOf(v.validate('tok')), 'inactive');

  const unusable: Array<[string, typeof reply]> = [
    ['typ at+jwt', { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: body }, { typ: 'at+jwt' }) }],
    ['other aud', { jwt: respond({ iss: ISSUER, aud: 'someone-else', token_introspection: body }) }],
    ['other iss', { jwt: respond({ iss: 'https://evil.example', aud: CLIENT_ID, token_introspection: body }) }],
    ['signed by another key', { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: body }, {}, stranger) }],
    ['no token_introspection', { jwt: respond({ ...body, iss: ISSUER, aud: CLIENT_ID }) }],
    ['token_introspection not an object', { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: 'yes' }) }],
    ['plain JSON answer', { json: body }],
    ['JWT with a JSON content type', { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: body }), contentType: 'application/json' }],
    ['JWKS down', { jwt: respond({ iss: ISSUER, aud: CLIENT_ID, token_introspection: body }), jwksDown: true }],
  ];
  for (const [name, r] of unusable) {
    reply = r;
    t.equal(await codeOf(v.validate('tok')), 'as_unavailable', name);
  }
  t.equal(await valueOf(m, 'introspections', { result: 'error' }), unusable.length);
});
