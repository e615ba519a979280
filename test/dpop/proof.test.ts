// RFC 9449 §4.3: the checks of one DPoP proof, as data in and data out (no server, frozen clock).
import t from 'tap';
import { generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { CompactSign, calculateJwkThumbprint, type JWK } from 'jose';
import { createProofVerifier, type Proof, type ProofInput, type ProofVerifier } from '../../src/dpop/proof.js';
import { DPOP_ALGORITHMS } from '../../src/dpop/algorithms.js';
import { GatewayError } from '../../src/errors.js';
import { codeOf } from '../helpers/codes.js';
import { ath, encodePart, proof, proofKey, signParts, signProof, thumbprintOf, type ProofKey, type ProofParts } from './fixtures.js';

const NOW_S = 1_700_000_000;
const NOW_MS = NOW_S * 1000;
const clock = (): number => NOW_MS;
const LEEWAY = 60;
const ORIGIN = 'https://api.example.com';
const PATH = '/accounts/1';
const HTU = `${ORIGIN}${PATH}`;
const TOKEN = 'the-access-token';

const verify = createProofVerifier({ algorithms: ['ES256', 'PS256', 'EdDSA'], iatLeewaySeconds: LEEWAY, clock });

const es = proofKey('ES256');
const ps = proofKey('PS256');
const ed = proofKey('EdDSA');
const es384 = proofKey('ES384');
const rs = proofKey('RS256');

/** A valid proof for GET HTU at NOW_S, with `changes`. */
const make = (key: ProofKey = es, changes: ProofParts & { readonly nowSeconds?: number } = {}): string => proof(key, 'GET', HTU, TOKEN, { nowSeconds: NOW_S, ...changes });
const inputOf = (proofs: readonly string[] | undefined, over: Partial<ProofInput> = {}): ProofInput => ({ proofs, method: 'GET', origin: ORIGIN, encodedPath: PATH, accessToken: TOKEN, ...over });
const one = (jws: string, over: Partial<ProofInput> = {}): ProofInput => inputOf([jws], over);

interface Failure {
  readonly code: string;
  readonly description: string;
}
/** The GatewayError's code and description (so a refusal is pinned to the check that made it), or 'no error'. */
function failure(run: () => unknown): Failure {
  try {
    run();
  } catch (e) {
    if (e instanceof GatewayError) return { code: e.code, description: e.description };
    throw e;
  }
  return { code: 'no error', description: '' };
}
const refused = (jws: string, over: Partial<ProofInput> = {}, verifier: ProofVerifier = verify): Failure => failure(() => verifier(one(jws, over)));
const parts = (jws: string): [string, string, string] => {
  const [h, p, s] = jws.split('.');
  return [h as string, p as string, s as string];
};
const INVALID = 'invalid_dpop_proof';

t.test('a valid proof: what it proves', async (t) => {
  const jws = make(es, { payload: { jti: 'jti-1' } });
  const result = verify(one(jws));
  t.strictSame(result, { jkt: es.jkt, jktBytes: Buffer.from(es.jkt), jti: 'jti-1', replayableUntilMs: (NOW_S + LEEWAY) * 1000 + 1 });
  t.notOk('nonce' in result, 'no nonce member without a nonce claim');
  t.equal(result.jkt, thumbprintOf(es.jwk));
  t.equal(result.jkt, await calculateJwkThumbprint(es.jwk as JWK, 'sha256'));
  t.ok(result.jktBytes.equals(Buffer.from(result.jkt)));
});

t.test('ES256, PS256 and EdDSA (Ed25519): jkt is the RFC 7638 thumbprint', async (t) => {
  for (const key of [es, ps, ed]) {
    const result = verify(one(make(key)));
    t.equal(result.jkt, key.jkt, key.alg);
    t.equal(result.jkt, await calculateJwkThumbprint(key.jwk as JWK, 'sha256'), `${key.alg} (jose)`);
  }
});

t.test('RFC 7638 §3.1 example key', async (t) => {
  // The RSA key of RFC 7638 §3.1, whose thumbprint the RFC gives: the canonical form is the RFC's.
  const jwk = {
    kty: 'RSA',
    n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB',
    alg: 'RS256',
    kid: '2011-04-29',
  };
  const jws = make(ps, { header: { jwk } });
  // Signed with ps's key, so the signature fails: but the thumbprint is computed first and is the RFC's.
  t.equal(thumbprintOf(jwk), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  t.match(refused(jws), { code: INVALID, description: /signature/ });
});

t.test('RS256 and ES384 when configured; refused when not', async (t) => {
  const verifier = createProofVerifier({ algorithms: ['RS256', 'ES384'], iatLeewaySeconds: LEEWAY, clock });
  for (const key of [rs, es384]) {
    t.equal(verifier(one(make(key))).jkt, key.jkt, `${key.alg} configured`);
    t.match(refused(make(key)), { code: INVALID, description: /alg must be one of ES256, PS256, EdDSA/ }, `${key.alg} not configured`);
  }
  t.match(refused(make(es), {}, verifier), { code: INVALID, description: /alg must be one of RS256, ES384/ }, 'ES256 not configured');
  // An RS256 (PKCS#1 v1.5) signature is no PS256 signature, with the same key.
  t.match(refused(make(rs, { header: { alg: 'PS256' } })), { code: INVALID, description: /signature/ });
  // An RSASSA-PSS signature is no RS256 signature.
  t.match(refused(make(ps, { header: { alg: 'RS256' } }), {}, verifier), { code: INVALID, description: /signature/ });
});

t.test('every algorithm of the table, signed by jose (an independent implementation)', async (t) => {
  const keyFor = (alg: string): { privateKey: KeyObject; publicKey: KeyObject } => {
    if (alg.startsWith('ES')) return generateKeyPairSync('ec', { namedCurve: { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[alg] as string });
    if (alg === 'EdDSA' || alg === 'Ed25519') return generateKeyPairSync('ed25519');
    return generateKeyPairSync('rsa', { modulusLength: 2048 });
  };
  const algorithms = Object.keys(DPOP_ALGORITHMS);
  t.strictSame(algorithms, ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA', 'Ed25519']);
  const verifier = createProofVerifier({ algorithms, iatLeewaySeconds: LEEWAY, clock });
  for (const alg of algorithms) {
    const { privateKey, publicKey } = keyFor(alg);
    const jwk = publicKey.export({ format: 'jwk' });
    const payload = Buffer.from(JSON.stringify({ jti: `jose-${alg}`, htm: 'GET', htu: HTU, iat: NOW_S, ath: ath(TOKEN) }));
    const jws = await new CompactSign(payload).setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: jwk as JWK }).sign(privateKey);
    const result = verifier(one(jws));
    t.equal(result.jkt, await calculateJwkThumbprint(jwk as JWK, 'sha256'), alg);
    t.equal(result.jti, `jose-${alg}`);
  }
});

t.test('EdDSA takes Ed25519 and Ed448 keys; Ed25519 (RFC 9864) only Ed25519', async (t) => {
  const pair = generateKeyPairSync('ed448');
  const jwk = pair.publicKey.export({ format: 'jwk' });
  const ed448: ProofKey = { alg: 'EdDSA', privateKey: pair.privateKey, jwk, jkt: thumbprintOf(jwk) };
  t.equal(verify(one(make(ed448))).jkt, ed448.jkt);
  const fully = createProofVerifier({ algorithms: ['Ed25519'], iatLeewaySeconds: LEEWAY, clock });
  t.equal(fully(one(make(ed, { header: { alg: 'Ed25519' } }))).jkt, ed.jkt);
  t.match(refused(make(ed448, { header: { alg: 'Ed25519' } }), {}, fully), { code: INVALID, description: /does not fit its alg/ });
  t.match(refused(make(ed)), { code: 'no error' });
  t.match(refused(make(ed, { header: { alg: 'Ed25519' } })), { code: INVALID, description: /alg must be one of/ }, 'Ed25519 not configured');
});

t.test('how many proofs', async (t) => {
  t.match(failure(() => verify(inputOf(undefined))), { code: INVALID, description: 'DPoP proof required' });
  t.match(failure(() => verify(inputOf([]))), { code: INVALID, description: 'DPoP proof required' });
  const jws = make();
  t.match(failure(() => verify(inputOf([jws, jws]))), { code: INVALID, description: /exactly one/ });
  t.match(failure(() => verify(inputOf([jws, make()]))), { code: INVALID, description: /exactly one/ });
});

t.test('not a compact JWS', async (t) => {
  const [h, p, s] = parts(make());
  const cases: Record<string, string> = {
    'empty': '',
    'one part': h,
    'two parts': `${h}.${p}`,
    'four parts': `${h}.${p}.${s}.${s}`,
    'five parts': `${h}.${p}.${s}..`,
    'only dots': '..',
    'empty header': `.${p}.${s}`,
    'empty signature': `${h}.${p}.`,
    'header with padding': `${h}=.${p}.${s}`,
    'header in standard base64': `${h.replace(/_/g, '/').replace(/-/g, '+')}+.${p}.${s}`,
    'signature with padding': `${h}.${p}.${s}==`,
    'signature with a space': `${h}.${p}.${s.slice(0, 4)} ${s.slice(4)}`,
    'header not JSON': `${encodePart('not json')}.${p}.${s}`,
    'header an array': `${encodePart('[{"typ":"dpop+jwt"}]')}.${p}.${s}`,
    'header a string': `${encodePart('"dpop+jwt"')}.${p}.${s}`,
    'header null': `${encodePart('null')}.${p}.${s}`,
    'header a number': `${encodePart('1')}.${p}.${s}`,
  };
  for (const [name, jws] of Object.entries(cases)) t.match(refused(jws), { code: INVALID, description: 'DPoP proof is not a compact JWS' }, name);
});

t.test('a payload that is no base64url JSON object, correctly signed', async (t) => {
  const header = encodePart({ typ: 'dpop+jwt', alg: 'ES256', jwk: es.jwk });
  const cases: Record<string, string> = {
    'not base64url': 'a+b/c',
    'padded': `${encodePart({ jti: 'x' })}=`,
    'empty': '',
    'not JSON': encodePart('{"jti":'),
    'an array': encodePart([{ jti: 'x' }]),
    'null': encodePart('null'),
    'a string': encodePart('"jti"'),
  };
  for (const [name, payload] of Object.entries(cases)) {
    t.match(refused(signParts(es, header, payload)), { code: INVALID, description: 'DPoP proof payload is not a JSON object' }, name);
  }
});

t.test('typ', async (t) => {
  for (const typ of ['dpop+jwt', 'DPoP+JWT', 'application/dpop+jwt', 'Application/DPoP+JWT', 'APPLICATION/DPOP+JWT']) {
    t.equal(verify(one(make(es, { header: { typ } }))).jkt, es.jkt, `accepted: ${typ}`);
  }
  for (const typ of [undefined, 'JWT', 'jwt', 'dpop', 'dpop+jwt ', ' dpop+jwt', 'dpop+jwt; charset=utf-8', 'application/jwt', 'text/dpop+jwt', 'application/dpop+jwtx', 'xdpop+jwt', '', 1, null, ['dpop+jwt']]) {
    t.match(refused(make(es, { header: { typ } })), { code: INVALID, description: 'DPoP proof typ must be dpop+jwt' }, `refused: ${JSON.stringify(typ)}`);
  }
});

t.test('alg', async (t) => {
  for (const alg of [undefined, 'none', 'None', 'HS256', 'HS512', 'ES384', 'RS256', 'es256', 'ES256 ', '', 256, null, ['ES256'], 'constructor', '__proto__', 'toString']) {
    t.match(refused(make(es, { header: { alg } })), { code: INVALID, description: 'DPoP proof alg must be one of ES256, PS256, EdDSA' }, `refused: ${JSON.stringify(alg)}`);
  }
  // A configured name certbound cannot verify is refused too (config refuses it first: resolve-dpop).
  const odd = createProofVerifier({ algorithms: ['ES256', 'XS1'], iatLeewaySeconds: LEEWAY, clock });
  t.match(refused(make(es, { header: { alg: 'XS1' } }), {}, odd), { code: INVALID, description: /alg must be one of ES256, XS1/ });
  t.equal(odd(one(make(es))).jkt, es.jkt);
});

t.test('crit', async (t) => {
  for (const crit of [['exp'], [], 'b64', ['b64']]) {
    t.match(refused(make(es, { header: { crit, b64: true } })), { code: INVALID, description: /critical/ }, JSON.stringify(crit));
  }
});

t.test('extra header members and claims are ignored', async (t) => {
  const jws = make(es, { header: { kid: 'k1', x5u: 'https://example.com/x', jku: 'https://example.com/jwks', cty: 'x', b64: false }, payload: { exp: NOW_S + 10, foo: { bar: [1] }, sub: 'me' } });
  t.equal(verify(one(jws)).jkt, es.jkt);
  // Members a public JWK may carry besides the required ones do not change the thumbprint.
  const decorated = make(es, { header: { jwk: { ...es.jwk, alg: 'ES256', use: 'sig', kid: 'client-key', key_ops: ['verify'], ext: true } } });
  t.equal(verify(one(decorated)).jkt, es.jkt);
});

t.test('jwk', async (t) => {
  for (const jwk of [undefined, 'key', 1, null, [es.jwk], true]) {
    t.match(refused(make(es, { header: { jwk } })), { code: INVALID, description: 'DPoP proof has no jwk header' }, `refused: ${JSON.stringify(jwk)}`);
  }
});

t.test('a jwk with private members', async (t) => {
  const privateJwk = es.privateKey.export({ format: 'jwk' });
  t.match(refused(make(es, { header: { jwk: privateJwk } })), { code: INVALID, description: 'DPoP proof jwk must be a public key' }, 'the private EC key');
  const rsaPrivate = ps.privateKey.export({ format: 'jwk' });
  t.match(refused(make(ps, { header: { jwk: rsaPrivate } })), { code: INVALID, description: 'DPoP proof jwk must be a public key' }, 'the private RSA key');
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']) {
    for (const value of ['AQAB', '', 0, null, []]) {
      t.match(refused(make(es, { header: { jwk: { ...es.jwk, [member]: value } } })), { code: INVALID, description: 'DPoP proof jwk must be a public key' }, `${member}: ${JSON.stringify(value)}`);
    }
  }
});

t.test('a jwk that does not fit the alg', async (t) => {
  const cases: Record<string, ProofParts> = {
    'EC P-384 key with ES256': { header: { jwk: es384.jwk } },
    'EC P-256 key with ES384': { header: { alg: 'ES384' } },
    'RSA key with ES256': { header: { jwk: ps.jwk } },
    'OKP key with ES256': { header: { jwk: ed.jwk } },
    'EC key with PS256': { header: { alg: 'PS256' } },
    'OKP key with PS256': { header: { alg: 'PS256', jwk: ed.jwk } },
    'EC key with EdDSA': { header: { alg: 'EdDSA' } },
    'RSA key with EdDSA': { header: { alg: 'EdDSA', jwk: ps.jwk } },
    'kty in lower case': { header: { jwk: { ...es.jwk, kty: 'ec' } } },
    'kty missing': { header: { jwk: { ...es.jwk, kty: undefined } } },
    'kty oct': { header: { jwk: { kty: 'oct' } } },
    'crv missing': { header: { jwk: { ...es.jwk, crv: undefined } } },
    'crv in lower case': { header: { jwk: { ...es.jwk, crv: 'p-256' } } },
    'crv a number': { header: { jwk: { ...es.jwk, crv: 256 } } },
    'OKP X25519 with EdDSA': { header: { alg: 'EdDSA', jwk: { ...ed.jwk, crv: 'X25519' } } },
  };
  const verifier = createProofVerifier({ algorithms: ['ES256', 'ES384', 'PS256', 'EdDSA'], iatLeewaySeconds: LEEWAY, clock });
  for (const [name, changes] of Object.entries(cases)) {
    t.match(refused(make(es, changes), {}, verifier), { code: INVALID, description: 'DPoP proof jwk does not fit its alg' }, name);
  }
});

t.test('jwk members missing or not base64url', async (t) => {
  const cases: Record<string, ProofParts & { readonly key: ProofKey }> = {
    'EC x missing': { key: es, header: { jwk: { ...es.jwk, x: undefined } } },
    'EC y missing': { key: es, header: { jwk: { ...es.jwk, y: undefined } } },
    'EC x with +': { key: es, header: { jwk: { ...es.jwk, x: `${es.jwk.x as string}+` } } },
    'EC y padded': { key: es, header: { jwk: { ...es.jwk, y: `${es.jwk.y as string}=` } } },
    'EC x empty': { key: es, header: { jwk: { ...es.jwk, x: '' } } },
    'EC x a number': { key: es, header: { jwk: { ...es.jwk, x: 1 } } },
    'EC x with a quote': { key: es, header: { jwk: { ...es.jwk, x: 'a","kty":"RSA' } } },
    'RSA n missing': { key: ps, header: { jwk: { ...ps.jwk, n: undefined } } },
    'RSA e missing': { key: ps, header: { jwk: { ...ps.jwk, e: undefined } } },
    'RSA e padded': { key: ps, header: { jwk: { ...ps.jwk, e: 'AQAB=' } } },
    'RSA n an array': { key: ps, header: { jwk: { ...ps.jwk, n: [ps.jwk.n] } } },
    'OKP x missing': { key: ed, header: { jwk: { ...ed.jwk, x: undefined } } },
    'OKP x with /': { key: ed, header: { jwk: { ...ed.jwk, x: `/${ed.jwk.x as string}` } } },
  };
  for (const [name, { key, ...changes }] of Object.entries(cases)) {
    t.match(refused(make(key, changes)), { code: INVALID, description: /^DPoP proof jwk member (x|y|n|e) is missing or malformed$/ }, name);
  }
});

t.test('a jwk that is no usable public key', async (t) => {
  const zero = Buffer.alloc(32).toString('base64url');
  const cases: Record<string, ProofParts & { readonly key: ProofKey }> = {
    'EC point not on the curve': { key: es, header: { jwk: { ...es.jwk, x: zero, y: zero } } },
    'EC x too short': { key: es, header: { jwk: { ...es.jwk, x: 'AQ' } } },
    'OKP x too short': { key: ed, header: { jwk: { ...ed.jwk, x: 'AQ' } } },
  };
  for (const [name, { key, ...changes }] of Object.entries(cases)) {
    t.match(refused(make(key, changes)), { code: INVALID, description: /^DPoP proof jwk is not (a usable public key|canonically encoded)$/ }, name);
  }
});

// RFC 7518 §6.2.1.2-3: an EC coordinate is exactly the curve's size; §2 (Base64urlUInt): n and e in the
// fewest octets; base64url without bits beyond the octets. Otherwise one key has several RFC 7638
// thumbprints (the canonical form is built from the members as written).
t.test('a jwk whose members are not in their one RFC 7518 form', async (t) => {
  const octets = (text: string): Buffer => Buffer.from(text, 'base64url');
  const padded = (text: string): string => Buffer.concat([Buffer.alloc(1), octets(text)]).toString('base64url');
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const x = es.jwk.x as string;
  const otherBits = `${x.slice(0, -1)}${ALPHABET[ALPHABET.indexOf(x.slice(-1)) ^ 1] as string}`;
  t.ok(octets(otherBits).equals(octets(x)), 'the same 32 octets');
  const cases: Record<string, ProofParts & { readonly key: ProofKey }> = {
    'EC x with a leading zero octet (33 octets)': { key: es, header: { jwk: { ...es.jwk, x: padded(x) } } },
    'EC y with a leading zero octet': { key: es, header: { jwk: { ...es.jwk, y: padded(es.jwk.y as string) } } },
    'EC x with non-zero unused bits': { key: es, header: { jwk: { ...es.jwk, x: otherBits } } },
    'RSA e with a leading zero octet': { key: ps, header: { jwk: { ...ps.jwk, e: 'AAEAAQ' } } },
    'RSA n with a leading zero octet': { key: ps, header: { jwk: { ...ps.jwk, n: padded(ps.jwk.n as string) } } },
  };
  for (const [name, { key, ...changes }] of Object.entries(cases)) {
    const outcome = failure(() => verify(one(make(key, changes))));
    t.equal(outcome.code, INVALID, name);
    t.equal(outcome.description, 'DPoP proof jwk is not canonically encoded', name);
  }
});

t.test('RSA keys of 2048 to 8192 bits only', async (t) => {
  const SIZE = 'DPoP proof RSA key must have 2048 to 8192 bits';
  const short = proofKey('PS256', 1024);
  t.match(refused(make(short)), { code: INVALID, description: SIZE }, '1024 bits (PS256)');
  // Not kept by the key cache: refused again.
  t.match(refused(make(short)), { code: INVALID, description: SIZE }, 'again');
  const shortRs = proofKey('RS256', 2040);
  const verifier = createProofVerifier({ algorithms: ['RS256'], iatLeewaySeconds: LEEWAY, clock });
  t.match(refused(make(shortRs), {}, verifier), { code: INVALID, description: SIZE }, '2040 bits (RS256)');
  t.equal(verify(one(make(ps))).jkt, ps.jkt, '2048 bits');
  // A public key of any size needs no private one: a modulus of `bits` bits (top bit set, odd).
  const modulus = (bits: number): string => {
    const bytes = Buffer.alloc(Math.ceil(bits / 8), 0x5a);
    bytes[0] = 1 << ((bits - 1) % 8) | ((bits - 1) % 8 === 0 ? 0 : 1);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) | 1;
    return bytes.toString('base64url');
  };
  const sized = (bits: number): Failure => refused(make(ps, { header: { jwk: { kty: 'RSA', e: 'AQAB', n: modulus(bits) } } }));
  t.match(sized(2047), { code: INVALID, description: SIZE }, '2047 bits');
  t.match(sized(2048), { code: INVALID, description: 'DPoP proof signature does not verify' }, '2048 bits: imported (the signature is ps\'s)');
  t.match(sized(8192), { code: INVALID, description: 'DPoP proof signature does not verify' }, '8192 bits: imported');
  t.match(sized(8193), { code: INVALID, description: SIZE }, '8193 bits');
  t.match(sized(16384), { code: INVALID, description: SIZE }, '16384 bits');
});

t.test('signatures that do not verify', async (t) => {
  const other = proofKey('ES256');
  const valid = make(es);
  const [h, p, s] = parts(valid);
  const [, otherPayload] = parts(make(es, { payload: { jti: 'another' } }));
  const flipped = `${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
  const cases: Record<string, string> = {
    'signed with another key': make(es, { signWith: other.privateKey }),
    'another key than the jwk (RSA)': make(ps, { signWith: proofKey('PS256').privateKey }),
    'another key than the jwk (EdDSA)': make(ed, { signWith: proofKey('EdDSA').privateKey }),
    'payload swapped': `${h}.${otherPayload}.${s}`,
    'header changed': `${encodePart({ typ: 'dpop+jwt', alg: 'ES256', jwk: es.jwk, kid: 'x' })}.${p}.${s}`,
    'signature changed': `${h}.${p}.${flipped}`,
    'signature truncated': `${h}.${p}.${s.slice(0, 40)}`,
    'signature doubled': `${h}.${p}.${s}${s}`,
    'signature in DER': `${h}.${p}.${Buffer.concat([Buffer.from([0x30, 0x44, 0x02, 0x20]), Buffer.from(s, 'base64url').subarray(0, 32), Buffer.from([0x02, 0x20]), Buffer.from(s, 'base64url').subarray(32)]).toString('base64url')}`,
    'another proof\'s signature': `${h}.${p}.${parts(make(es))[2]}`,
  };
  for (const [name, jws] of Object.entries(cases)) t.match(refused(jws), { code: INVALID, description: 'DPoP proof signature does not verify' }, name);
  t.equal(verify(one(valid)).jkt, es.jkt, 'the untouched proof verifies');
});

t.test('claims missing', async (t) => {
  for (const claim of ['jti', 'htm', 'htu', 'iat', 'ath']) {
    t.match(refused(make(es, { payload: { [claim]: undefined } })), { code: INVALID, description: `DPoP proof lacks the ${claim} claim` }, claim);
  }
});

t.test('claims of the wrong type', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['jti', 1], ['jti', ''], ['jti', null], ['jti', ['a']], ['jti', { a: 1 }], ['jti', true],
    ['htm', 1], ['htm', ''], ['htm', null], ['htm', ['GET']],
    ['htu', ''], ['htu', { href: HTU }], ['htu', null], ['htu', 0],
    ['iat', String(NOW_S)], ['iat', null], ['iat', [NOW_S]], ['iat', true], ['iat', { t: NOW_S }],
    ['ath', ''], ['ath', 1], ['ath', null], ['ath', [ath(TOKEN)]],
  ];
  for (const [claim, value] of cases) {
    t.match(refused(make(es, { payload: { [claim]: value } })), { code: INVALID, description: `DPoP proof ${claim} claim is malformed` }, `${claim}: ${JSON.stringify(value)}`);
  }
  // Non-finite numbers cannot be written in JSON; a huge one is finite and outside the window.
  t.match(refused(make(es, { payload: { iat: 1e308 } })), { code: INVALID, description: /iat is outside/ });
});

t.test('jti length', async (t) => {
  t.equal(verify(one(make(es, { payload: { jti: 'j'.repeat(256) } }))).jti, 'j'.repeat(256), '256 characters');
  t.equal(verify(one(make(es, { payload: { jti: 'j' } }))).jti, 'j', 'one character');
  t.match(refused(make(es, { payload: { jti: 'j'.repeat(257) } })), { code: INVALID, description: 'DPoP proof jti is longer than 256 characters' }, '257 characters');
  t.match(refused(make(es, { payload: { jti: 'j'.repeat(10_000) } })), { code: INVALID, description: /jti is longer/ });
});

t.test('nonce claim', async (t) => {
  t.equal(verify(one(make(es, { payload: { nonce: 'n-1' } }))).nonce, 'n-1');
  const empty = verify(one(make(es, { payload: { nonce: '' } })));
  t.ok('nonce' in empty, 'an empty nonce is returned (the nonce check refuses it)');
  t.equal(empty.nonce, '');
  for (const nonce of [1, null, ['n'], { n: 1 }, false]) {
    t.match(refused(make(es, { payload: { nonce } })), { code: INVALID, description: 'DPoP proof nonce claim is malformed' }, JSON.stringify(nonce));
  }
});

t.test('htm', async (t) => {
  t.match(refused(make(es), { method: 'POST' }), { code: INVALID, description: 'DPoP proof htm does not match the request method' }, 'GET proof on POST');
  t.match(refused(proof(es, 'get', HTU, TOKEN, { nowSeconds: NOW_S })), { code: INVALID, description: /htm/ }, 'get for GET: case matters');
  t.match(refused(proof(es, 'GET ', HTU, TOKEN, { nowSeconds: NOW_S })), { code: INVALID, description: /htm/ }, 'trailing space');
  t.equal(verify(one(proof(es, 'POST', HTU, TOKEN, { nowSeconds: NOW_S }), { method: 'POST' })).jkt, es.jkt, 'POST proof on POST');
  t.equal(verify(one(proof(es, 'DELETE', HTU, TOKEN, { nowSeconds: NOW_S }), { method: 'DELETE' })).jkt, es.jkt);
});

t.test('htu accepted: the same URI written otherwise', async (t) => {
  const accepted = [
    HTU,
    `${HTU}?a=1`,
    `${HTU}#f`,
    `${HTU}?a=1&b=2#f`,
    `${HTU}?`,
    'https://API.EXAMPLE.COM/accounts/1',
    'https://Api.Example.Com/accounts/1',
    'HTTPS://api.example.com/accounts/1',
    'HtTpS://API.example.com/accounts/1',
    'https://api.example.com:443/accounts/1',
    'HTTPS://API.EXAMPLE.COM:443/accounts/1?x#y',
    'https://api.example.com/%61ccounts/1',
    'https://api.example.com/accounts/%31',
    'https://api.example.com/./accounts/1',
    'https://api.example.com/x/../accounts/1',
    'https://api.example.com/accounts/./1',
    'https://api.example.com/accounts/x/y/../../1',
    'https://api.example.com/../accounts/1',
    'https://api.example.com/%2e/accounts/1',
    'https://api.example.com/x/%2E%2e/accounts/1',
  ];
  for (const htu of accepted) t.equal(verify(one(proof(es, 'GET', htu, TOKEN, { nowSeconds: NOW_S }))).jkt, es.jkt, htu);
});

t.test('htu accepted: percent-encoding case and unreserved characters', async (t) => {
  const path = '/~alice/caf%C3%A9';
  for (const written of ['/~alice/caf%C3%A9', '/%7ealice/caf%c3%a9', '/%7Ealice/caf%C3%a9', '/~alice/café']) {
    t.equal(verify(one(proof(es, 'GET', `${ORIGIN}${written}`, TOKEN, { nowSeconds: NOW_S }), { encodedPath: path })).jkt, es.jkt, written);
  }
});

t.test('htu refused', async (t) => {
  const refusedHtus = [
    'https://other.example.com/accounts/1',
    'https://api.example.com.evil.com/accounts/1',
    'https://api.example.co/accounts/1',
    'https://api.example.com/accounts/2',
    'https://api.example.com/accounts',
    'https://api.example.com/accounts/1/',
    'https://api.example.com/accounts/1/x',
    'https://api.example.com/Accounts/1',
    'https://api.example.com/',
    'https://api.example.com',
    'http://api.example.com/accounts/1',
    'wss://api.example.com/accounts/1',
    'ftp://api.example.com/accounts/1',
    'https://api.example.com:8443/accounts/1',
    'https://api.example.com:80/accounts/1',
    'https://user@api.example.com/accounts/1',
    'https://user:secret@api.example.com/accounts/1',
    'https://:secret@api.example.com/accounts/1',
    '/accounts/1',
    'api.example.com/accounts/1',
    'not a url',
    'https://',
    'https://api.example.com/accounts%2F1',
    'https://api.example.com/accounts%2f1',
    'https://api.example.com/accounts/1;jsessionid=x',
    'https://api.example.com/accounts/%ff',
    'https://api.example.com/accounts/1%00',
    'https://api.example.com/accounts%5C1',
  ];
  for (const htu of refusedHtus) {
    t.match(refused(proof(es, 'GET', htu, TOKEN, { nowSeconds: NOW_S })), { code: INVALID, description: 'DPoP proof htu does not match the request URI' }, htu);
  }
});

t.test('htu against an origin with a port', async (t) => {
  const origin = 'https://api.example.com:8443';
  t.equal(verify(one(proof(es, 'GET', `${origin}${PATH}`, TOKEN, { nowSeconds: NOW_S }), { origin })).jkt, es.jkt);
  t.equal(verify(one(proof(es, 'GET', `HTTPS://API.EXAMPLE.COM:8443${PATH}`, TOKEN, { nowSeconds: NOW_S }), { origin })).jkt, es.jkt);
  t.match(refused(proof(es, 'GET', HTU, TOKEN, { nowSeconds: NOW_S }), { origin }), { code: INVALID, description: /htu/ });
});

t.test('iat window', async (t) => {
  const accepted = [0, LEEWAY, -LEEWAY, 10, -10, 0.5, -0.5, LEEWAY - 0.001, -(LEEWAY - 0.001)];
  for (const offset of accepted) {
    const result = verify(one(make(es, { nowSeconds: NOW_S + offset })));
    t.equal(result.replayableUntilMs, (NOW_S + offset + LEEWAY) * 1000 + 1, `iat now${offset >= 0 ? '+' : ''}${offset}s accepted`);
  }
  for (const offset of [LEEWAY + 1, -(LEEWAY + 1), LEEWAY + 0.01, -(LEEWAY + 0.01), 3600, -3600, -NOW_S]) {
    t.match(refused(make(es, { nowSeconds: NOW_S + offset })), { code: INVALID, description: 'DPoP proof iat is outside the accepted window' }, `iat now${offset >= 0 ? '+' : ''}${offset}s refused`);
  }
});

t.test('iat window: another leeway, and the clock is read per proof', async (t) => {
  let now = NOW_MS;
  const verifier = createProofVerifier({ algorithms: ['ES256'], iatLeewaySeconds: 5, clock: () => now });
  const jws = make(es);
  t.equal(verifier(one(jws)).replayableUntilMs, (NOW_S + 5) * 1000 + 1);
  now = NOW_MS + 5000;
  t.equal(verifier(one(jws)).jkt, es.jkt, 'exactly at the end of the window');
  now = NOW_MS + 5001;
  t.match(refused(jws, {}, verifier), { code: INVALID, description: /iat is outside/ }, 'one millisecond later');
  now = NOW_MS - 5000;
  t.equal(verifier(one(jws)).jkt, es.jkt, 'exactly at the start of the window (iat ahead of the clock)');
  now = NOW_MS - 5001;
  t.match(refused(jws, {}, verifier), { code: INVALID, description: /iat is outside/ });
});

t.test('ath', async (t) => {
  t.match(refused(proof(es, 'GET', HTU, 'another-token', { nowSeconds: NOW_S })), { code: 'dpop_ath_mismatch', description: 'DPoP proof ath does not match the access token' });
  t.match(refused(make(es), { accessToken: `${TOKEN} ` }), { code: 'dpop_ath_mismatch' });
  t.match(refused(make(es, { payload: { ath: ath(TOKEN).toUpperCase() } })), { code: 'dpop_ath_mismatch' });
  t.match(refused(make(es, { payload: { ath: `${ath(TOKEN)}=` } })), { code: 'dpop_ath_mismatch' }, 'padded');
  t.match(refused(make(es, { payload: { ath: Buffer.from(ath(TOKEN), 'base64url').toString('base64') } })), { code: 'dpop_ath_mismatch' }, 'standard base64 (with / or +)');
  t.match(refused(make(es, { payload: { ath: Buffer.from(ath(TOKEN), 'base64url').toString('hex') } })), { code: 'dpop_ath_mismatch' }, 'hex');
});

t.test('the defect of the proof is reported before the token mismatch', async (t) => {
  // A proof that is bad in itself and names another token: invalid_dpop_proof, not dpop_ath_mismatch.
  t.match(refused(proof(es, 'GET', HTU, 'another-token', { nowSeconds: NOW_S + 3600 })), { code: INVALID, description: /iat/ });
  t.match(refused(proof(es, 'POST', HTU, 'another-token', { nowSeconds: NOW_S })), { code: INVALID, description: /htm/ });
  t.match(refused(proof(es, 'GET', 'https://other.example/', 'another-token', { nowSeconds: NOW_S })), { code: INVALID, description: /htu/ });
  t.equal(codeOf(() => verify(one(make(es, { payload: { ath: undefined } })))), INVALID);
});

t.test('the key cache', async (t) => {
  const verifier = createProofVerifier({ algorithms: ['ES256', 'PS256', 'EdDSA'], iatLeewaySeconds: LEEWAY, clock });
  const first: Proof = verifier(one(make(es)));
  const second: Proof = verifier(one(make(es)));
  t.equal(first.jkt, es.jkt);
  t.equal(second.jkt, first.jkt, 'the same key twice: the same jkt');
  t.not(second.jti, first.jti);
  const other = proofKey('ES256');
  t.not(other.jkt, es.jkt);
  t.equal(verifier(one(make(other))).jkt, other.jkt, 'another key of the same kty: another jkt');
  t.equal(verifier(one(make(es))).jkt, es.jkt, 'the first key still');
  // The cached key is the jwk's: a proof naming the cached jwk but signed by another key still fails.
  t.match(refused(make(es, { signWith: other.privateKey }), {}, verifier), { code: INVALID, description: /signature/ });
  t.match(refused(make(other, { signWith: es.privateKey }), {}, verifier), { code: INVALID, description: /signature/ });
  // The same key written with other optional members and member order: one cache entry, one jkt.
  const reordered: JsonWebKey = { y: es.jwk.y, x: es.jwk.x, kid: 'k', crv: es.jwk.crv, kty: 'EC' };
  t.equal(verifier(one(make(es, { header: { jwk: reordered } }))).jkt, es.jkt);
  // Each verifier has its own cache and its own window.
  const strict = createProofVerifier({ algorithms: ['ES256'], iatLeewaySeconds: 1, clock });
  t.match(refused(make(es, { nowSeconds: NOW_S - 2 }), {}, strict), { code: INVALID, description: /iat/ });
  t.equal(verifier(one(make(es, { nowSeconds: NOW_S - 2 }))).jkt, es.jkt);
});

t.test('node:crypto throwing while verifying: refused, not an exception', async (t) => {
  const crypto = await import('node:crypto');
  const { createProofVerifier: mocked } = await t.mockImport<typeof import('../../src/dpop/proof.js')>('../../src/dpop/proof.js', {
    'node:crypto': {
      ...crypto,
      verify: () => {
        throw new Error('error:1C80007A:Provider routines::invalid digest');
      },
    },
  });
  const throwing = mocked({ algorithms: ['ES256'], iatLeewaySeconds: LEEWAY, clock });
  t.match(refused(make(es), {}, throwing), { code: INVALID, description: 'DPoP proof signature does not verify' });
});

t.test('signProof with exactly the given members', async (t) => {
  // The fixture's raw signer: a header and payload built here, without the proof() defaults.
  const jws = signProof(es, { typ: 'dpop+jwt', alg: 'ES256', jwk: es.jwk }, { jti: 'raw', htm: 'GET', htu: HTU, iat: NOW_S, ath: ath(TOKEN) });
  t.equal(verify(one(jws)).jti, 'raw');
});
