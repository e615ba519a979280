// DPoP proofs for tests, built by hand so that every member can be left out, changed or broken.
// (The e2e tests use panva's `dpop` package, an independent implementation.)
import { createHash, generateKeyPairSync, sign, type KeyObject, type JsonWebKey } from 'node:crypto';

export type ProofAlg = 'ES256' | 'PS256' | 'EdDSA' | 'RS256' | 'ES384';

export interface ProofKey {
  readonly alg: ProofAlg;
  readonly privateKey: KeyObject;
  /** The public JWK, as a proof carries it. */
  readonly jwk: JsonWebKey;
  /** RFC 7638 thumbprint of jwk. */
  readonly jkt: string;
}

export function thumbprintOf(jwk: JsonWebKey): string {
  const members = jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : jwk.kty === 'OKP' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

export function proofKey(alg: ProofAlg = 'ES256', rsaBits = 2048): ProofKey {
  const pair =
    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'ES384' ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : alg === 'EdDSA' ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('rsa', { modulusLength: rsaBits });
  const jwk = pair.publicKey.export({ format: 'jwk' });
  return { alg, privateKey: pair.privateKey, jwk, jkt: thumbprintOf(jwk) };
}

export const ath = (token: string): string => createHash('sha256').update(token).digest('base64url');
const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export interface ProofParts {
  readonly header?: Record<string, unknown>;
  readonly payload?: Record<string, unknown>;
  /** Sign with this key instead (a bad signature). */
  readonly signWith?: KeyObject;
}

/** A signed compact JWS with exactly the given header and payload (undefined members left out). */
export function signProof(key: ProofKey, header: Record<string, unknown>, payload: Record<string, unknown>, signWith: KeyObject = key.privateKey): string {
  return signParts(key, b64(header), b64(payload), signWith);
}

/** base64url of a JSON value (a string is taken as the text itself): a JWS part as `signProof` encodes it. */
export const encodePart = b64;

/**
 * A compact JWS over exactly these two parts, already encoded (or not: any text), signed as
 * `key.alg`: for proofs whose header or payload is no base64url JSON object.
 */
export function signParts(key: ProofKey, headerPart: string, payloadPart: string, signWith: KeyObject = key.privateKey): string {
  const input = `${headerPart}.${payloadPart}`;
  const data = Buffer.from(input);
  const signature =
    key.alg === 'EdDSA' ? sign(null, data, signWith)
      : key.alg === 'PS256' ? sign('sha256', data, { key: signWith, padding: 6, saltLength: 32 })
        : key.alg === 'RS256' ? sign('sha256', data, signWith)
          : sign(key.alg === 'ES384' ? 'sha384' : 'sha256', data, { key: signWith, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

let counter = 0;

/** A valid proof for `htm htu` carrying `token`'s ath, with `changes` applied (a member set to undefined is removed). */
export function proof(key: ProofKey, htm: string, htu: string, token: string, changes: ProofParts & { readonly nowSeconds?: number } = {}): string {
  const header = strip({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk, ...changes.header });
  const payload = strip({ jti: `jti-${process.pid}-${++counter}-${Math.random().toString(36).slice(2)}`, htm, htu, iat: changes.nowSeconds ?? Math.floor(Date.now() / 1000), ath: ath(token), ...changes.payload });
  return signProof(key, header, payload, changes.signWith);
}

function strip(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
