// DPoP proofs (RFC 9449 §4.2) for the benchmark, built here rather than with src/: an ES256 key,
// its RFC 7638 thumbprint, and a signer that makes one valid proof per call (a fresh jti, iat now).
// The load generator and the proof-check micro benchmark share it.
import { createPrivateKey, generateKeyPairSync, hash, randomUUID, sign, type JsonWebKey, type KeyObject } from 'node:crypto';

export interface DpopKey {
  /** The private JWK, as handed to a child process (load generator, micro benchmark). */
  readonly privateJwk: JsonWebKey;
  readonly publicJwk: { readonly kty: string; readonly crv: string; readonly x: string; readonly y: string };
  /** RFC 7638: base64url SHA-256 of {"crv","kty","x","y"} in that order, no whitespace. */
  readonly jkt: string;
}

export interface ProofClaims {
  readonly htm: string;
  /** public_url + path, no query. */
  readonly htu: string;
  readonly accessToken: string;
}

export function newDpopKey(): DpopKey {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateJwk = privateKey.export({ format: 'jwk' });
  const publicJwk = { kty: 'EC', crv: 'P-256', x: privateJwk.x as string, y: privateJwk.y as string };
  const jkt = hash('sha256', JSON.stringify({ crv: publicJwk.crv, kty: publicJwk.kty, x: publicJwk.x, y: publicJwk.y }), 'base64url');
  return { privateJwk, publicJwk, jkt };
}

/** base64url SHA-256 of the access token: the proof's ath (RFC 9449 §4.2). */
export const athOf = (accessToken: string): string => hash('sha256', accessToken, 'base64url');

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * One proof per call: header {typ, alg ES256, jwk}, payload {jti (a UUID), htm, htu, iat (now,
 * seconds), ath}, ES256 (P-256, SHA-256, IEEE P1363 r‖s) signature.
 */
export function proofSigner(privateJwk: JsonWebKey, claims: ProofClaims): () => string {
  const key: KeyObject = createPrivateKey({ key: privateJwk, format: 'jwk' });
  const { kty, crv, x, y } = privateJwk;
  const header = b64({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } });
  const ath = athOf(claims.accessToken);
  return () => {
    const input = `${header}.${b64({ jti: randomUUID(), htm: claims.htm, htu: claims.htu, iat: Math.floor(Date.now() / 1000), ath })}`;
    const signature = sign('sha256', Buffer.from(input, 'latin1'), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  };
}
