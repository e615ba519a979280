// src/config/resolve-dpop.ts on data, with a real Problems: the dpop: section, public_url origins.
import t from 'tap';
import { MIN_NONCE_SECRET_BYTES, publicOriginOf, resolveDpop, routeOrigin, takesDpop } from '../../src/config/resolve-dpop.js';
import { Problems } from '../../src/config/problems.js';
import { AUTH_MODES } from '../../src/config/schema.js';
import type { Document } from '../../src/config/types.js';

type DpopDocument = Document['dpop'];
type RouteDocument = Document['routes'][number];

const dpop = (over: Partial<DpopDocument> = {}): DpopDocument => ({
  algorithms: ['ES256', 'PS256', 'EdDSA'],
  iatLeewaySeconds: 60,
  nonce: 'off',
  nonceLifetimeSeconds: 300,
  replayCacheEntries: 100_000,
  ...over,
});
const route = (over: Partial<RouteDocument> = {}): RouteDocument => ({
  name: 'r',
  pathPrefix: '/r',
  methods: ['GET'],
  upstream: 'u',
  auth: 'dpop_bound_token',
  scopes: [],
  allowDoubleEncoding: false,
  psd2Roles: [],
  ...over,
});
const problems = (): Problems => new Problems('/');
const SUPPORTED = 'ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512, EdDSA, Ed25519';

t.test('resolveDpop: the section as it is, with a secret', async (t) => {
  const p = problems();
  const { nonceSecret, ...rest } = resolveDpop(dpop(), p);
  t.strictSame(p.list, []);
  t.strictSame(rest, dpop());
  t.ok(Buffer.isBuffer(nonceSecret));
  t.equal(nonceSecret.length, MIN_NONCE_SECRET_BYTES);
  t.equal(MIN_NONCE_SECRET_BYTES, 32);
});

t.test('resolveDpop: every supported algorithm is accepted', async (t) => {
  const p = problems();
  resolveDpop(dpop({ algorithms: SUPPORTED.split(', ') }), p);
  t.strictSame(p.list, []);
});

t.test('resolveDpop: none, symmetric and unknown algorithms, each with its index', async (t) => {
  const p = problems();
  const algorithms = ['ES256', 'none', 'HS256', 'NONE', 'hs512', 'HS384', 'XYZ', 'es256', 'HS', 'constructor', '__proto__', 'RSA-OAEP', 'ES256K'];
  resolveDpop(dpop({ algorithms }), p);
  t.strictSame(p.list, [
    'dpop.algorithms[1]: "none" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[2]: "HS256" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[3]: "NONE" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[4]: "hs512" is not allowed: a DPoP proof must be signed with an asymmetric key',
    'dpop.algorithms[5]: "HS384" is not allowed: a DPoP proof must be signed with an asymmetric key',
    `dpop.algorithms[6]: "XYZ" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[7]: "es256" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[8]: "HS" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[9]: "constructor" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[10]: "__proto__" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[11]: "RSA-OAEP" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
    `dpop.algorithms[12]: "ES256K" is not a supported JWS algorithm (supported: ${SUPPORTED})`,
  ]);
});

t.test('resolveDpop: the configured secret, as bytes, trailing whitespace trimmed', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['s'.repeat(32), Buffer.from('s'.repeat(32))],
    [`${'s'.repeat(32)}\n`, Buffer.from('s'.repeat(32))],
    [`${'s'.repeat(32)} \t\r\n`, Buffer.from('s'.repeat(32))],
    [` ${'s'.repeat(32)}`, Buffer.from(` ${'s'.repeat(32)}`)],
    ['s'.repeat(100), Buffer.from('s'.repeat(100))],
    ['é'.repeat(16), Buffer.from('é'.repeat(16))],
  ];
  for (const [nonceSecret, expected] of cases) {
    const p = problems();
    const resolved = resolveDpop(dpop({ nonceSecret }), p);
    t.strictSame(p.list, [], JSON.stringify(nonceSecret));
    t.ok(resolved.nonceSecret.equals(expected), JSON.stringify(nonceSecret));
  }
  t.equal(Buffer.from('é'.repeat(16)).length, 32, 'counted in bytes, not characters');
});

t.test('resolveDpop: a secret shorter than 32 bytes is refused', async (t) => {
  const cases: Array<[string, number]> = [
    ['short', 5],
    ['s'.repeat(31), 31],
    [`${'s'.repeat(31)}\n`, 31],
    [`${'s'.repeat(31)}${' '.repeat(10)}`, 31],
    ['é'.repeat(15), 30],
    [' '.repeat(40), 0],
  ];
  for (const [nonceSecret, bytes] of cases) {
    const p = problems();
    resolveDpop(dpop({ nonceSecret }), p);
    t.strictSame(p.list, [`dpop.nonce_secret: must hold at least 32 bytes (it has ${bytes})`], JSON.stringify(nonceSecret));
  }
  const both = problems();
  resolveDpop(dpop({ algorithms: ['none'], nonceSecret: 'x' }), both);
  t.equal(both.list.length, 2, 'every problem reported');
});

t.test('resolveDpop: without a secret, one generated per process', async (t) => {
  const a = resolveDpop(dpop(), problems()).nonceSecret;
  const b = resolveDpop(dpop({ nonce: 'required', algorithms: ['ES256'] }), problems()).nonceSecret;
  t.equal(a.length, 32);
  t.ok(a.equals(b), 'the same on every call');
  t.not(a.toString('hex'), '00'.repeat(32));
  const configured = resolveDpop(dpop({ nonceSecret: 'k'.repeat(32) }), problems()).nonceSecret;
  t.notOk(configured.equals(a), 'a configured secret is not the generated one');
  t.ok(resolveDpop(dpop(), problems()).nonceSecret.equals(a), 'and does not replace it');
});

t.test('publicOriginOf: the origin, lower-cased, default port dropped', async (t) => {
  const cases: Record<string, string> = {
    'https://api.bank.example': 'https://api.bank.example',
    'https://api.bank.example/': 'https://api.bank.example',
    'https://Host:443': 'https://host',
    'HTTPS://API.BANK.EXAMPLE:443/': 'https://api.bank.example',
    'https://api.bank.example:8443': 'https://api.bank.example:8443',
    'https://api.bank.example:08443': 'https://api.bank.example:8443',
    'https://127.0.0.1:8443': 'https://127.0.0.1:8443',
    'https://[::1]': 'https://[::1]',
    'https://bücher.example': 'https://xn--bcher-kva.example',
  };
  for (const [value, origin] of Object.entries(cases)) {
    const p = problems();
    t.equal(publicOriginOf('listen.public_url', value, p), origin, value);
    t.strictSame(p.list, [], value);
  }
});

t.test('publicOriginOf: no https origin', async (t) => {
  const notUrl = (v: string): string => `listen.public_url: "${v}" is not an origin (https://host[:port], no path, query or credentials)`;
  const notOrigin = (v: string): string => `listen.public_url: "${v}" is not an origin (https://host[:port], no path, query or credentials)`;
  const cases: Array<[string, string]> = [
    ['api.bank.example', notUrl('api.bank.example')],
    ['not a url', notUrl('not a url')],
    ['', notUrl('')],
    ['https://', notUrl('https://')],
    ['https://api.bank.example:99999', notUrl('https://api.bank.example:99999')],
    ['http://api.bank.example', notOrigin('http://api.bank.example')],
    ['HTTP://api.bank.example', notOrigin('HTTP://api.bank.example')],
    ['wss://api.bank.example', notOrigin('wss://api.bank.example')],
    ['https://api.bank.example/v1', notOrigin('https://api.bank.example/v1')],
    ['https://api.bank.example/v1/', notOrigin('https://api.bank.example/v1/')],
    ['https://api.bank.example//', notOrigin('https://api.bank.example//')],
    ['https://api.bank.example?x=1', notOrigin('https://api.bank.example?x=1')],
    ['https://api.bank.example/?', notOrigin('https://api.bank.example/?')],
    ['https://api.bank.example?', notOrigin('https://api.bank.example?')],
    ['https://api.bank.example#', notOrigin('https://api.bank.example#')],
    ['https://api.bank.example#f', notOrigin('https://api.bank.example#f')],
    ['https://user@api.bank.example', notOrigin('https://user@api.bank.example')],
    ['https://user:pw@api.bank.example', notOrigin('https://user:pw@api.bank.example')],
    ['https://:pw@api.bank.example', notOrigin('https://:pw@api.bank.example')],
  ];
  for (const [value, problem] of cases) {
    const p = problems();
    t.equal(publicOriginOf('listen.public_url', value, p), undefined, value);
    t.strictSame(p.list, [problem], value);
  }
});

// The URL parser reads these as the origin alone; written so, they are no "https://host[:port], no path".
t.test('publicOriginOf: values the URL parser repairs', async (t) => {
  for (const value of ['https://api.bank.example/.', 'https://api.bank.example/..', 'https://api.bank.example/%2e', 'https://api.bank.example\\', 'https:api.bank.example', 'https:/api.bank.example']) {
    const p = problems();
    t.equal(publicOriginOf('listen.public_url', value, p), undefined, value);
    t.strictSame(p.list, [`listen.public_url: "${value}" is not an origin (https://host[:port], no path, query or credentials)`], value);
  }
});

t.test('takesDpop', async (t) => {
  t.strictSame(AUTH_MODES.filter(takesDpop), ['sender_constrained_token', 'dpop_bound_token']);
});

t.test('routeOrigin: the route\'s own public_url, else listen.public_url', async (t) => {
  const listen = { set: true, origin: 'https://api.bank.example' } as const;
  const none = { set: false, origin: undefined } as const;
  const origin = (r: RouteDocument, l: { readonly set: boolean; readonly origin: string | undefined }): { origin: string | undefined; problems: string[] } => {
    const p = problems();
    return { origin: routeOrigin(r, 'routes[0]', l, p), problems: p.list };
  };
  t.strictSame(origin(route({ publicUrl: 'https://Pay.Bank.Example:443' }), listen), { origin: 'https://pay.bank.example', problems: [] }, 'its own');
  t.strictSame(origin(route({ publicUrl: 'http://pay.bank.example' }), listen), { origin: undefined, problems: ['routes[0].public_url: "http://pay.bank.example" is not an origin (https://host[:port], no path, query or credentials)'] });
  t.strictSame(origin(route({ publicUrl: 'https://pay.bank.example', auth: 'certificate_bound_token' }), none), { origin: 'https://pay.bank.example', problems: [] }, 'any route may name one');
  t.strictSame(origin(route(), listen), { origin: 'https://api.bank.example', problems: [] }, 'listen.public_url');
  t.strictSame(origin(route({ auth: 'sender_constrained_token' }), listen), { origin: 'https://api.bank.example', problems: [] });
  for (const auth of ['dpop_bound_token', 'sender_constrained_token'] as const) {
    t.strictSame(origin(route({ auth }), none), {
      origin: undefined,
      problems: [`routes[0].public_url: is required with auth: ${auth} when listen.public_url is not set (a DPoP proof's htu is checked against it, never against Host)`],
    }, `${auth} without any public_url`);
  }
  t.strictSame(origin(route(), { set: true, origin: undefined }), { origin: undefined, problems: [] }, 'listen.public_url set but invalid: its own problem, not another');
  for (const auth of ['certificate_bound_token', 'mtls', 'none'] as const) {
    t.strictSame(origin(route({ auth }), listen), { origin: undefined, problems: [] }, `${auth}: no origin`);
    t.strictSame(origin(route({ auth }), none), { origin: undefined, problems: [] }, `${auth}: none needed`);
  }
});
