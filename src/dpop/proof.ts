import { createPublicKey, hash, verify, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { GatewayError } from '../errors.js';
import { DPOP_ALGORITHMS, MAX_RSA_BITS, MIN_RSA_BITS, type DpopAlgorithm } from './algorithms.js';
import { htuMatches } from './htu.js';

/**
 * RFC 9449 §4.3: the checks of one DPoP proof, on data (the header values, the method, the
 * normalized path, the access token), synchronously. A defect of the proof is
 * `invalid_dpop_proof`; an `ath` that names another token is `dpop_ath_mismatch` (a token problem,
 * invalid_token). What the proof proves is returned: the key's RFC 7638 thumbprint, for the
 * binding check against cnf.jkt, and the jti and window for the replay store.
 */
export interface ProofInput {
  /** Every `DPoP` header of the request (req.headersDistinct: any case of the name). */
  readonly proofs: readonly string[] | undefined;
  readonly method: string;
  /** The origin htu must name (the route's public URL, normalized). */
  readonly origin: string;
  /** The request's normalized path, as the router encoded it. */
  readonly encodedPath: string;
  readonly accessToken: string;
}

export interface Proof {
  /** base64url SHA-256 of the key's RFC 7638 canonical form. */
  readonly jkt: string;
  readonly jktBytes: Buffer;
  readonly jti: string;
  /** After this, iat is outside the window: the jti need not be remembered longer. */
  readonly replayableUntilMs: number;
  readonly nonce?: string;
}

export interface ProofOptions {
  /** The configured algorithms, in order. */
  readonly algorithms: readonly string[];
  readonly iatLeewaySeconds: number;
  readonly clock: () => number;
}

export type ProofVerifier = (input: ProofInput) => Proof;

const B64URL = /^[A-Za-z0-9_-]+$/;
/** Members a private JWK has and a public one must not (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
/** Longest jti remembered: a bound on what one proof can make the replay store hold. */
const MAX_JTI = 256;
/** Imported keys kept, by canonical JWK: a client signs every proof with the same key. */
const KEY_CACHE_ENTRIES = 10_000;

const invalid = (description: string): GatewayError => new GatewayError('invalid_dpop_proof', description);

type Json = Readonly<Record<string, unknown>>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

function decodeJson(part: string): Json | undefined {
  if (!B64URL.test(part)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

const memberText = (jwk: Json, name: string): string => {
  const value = jwk[name];
  if (typeof value !== 'string' || !B64URL.test(value)) throw invalid(`DPoP proof jwk member ${name} is missing or malformed`);
  return value;
};

/** RFC 7638 §3.2: the required members, in lexicographic order, no whitespace. */
function canonicalJwk(jwk: Json, algorithm: DpopAlgorithm): string {
  if (jwk['kty'] !== algorithm.kty) throw invalid('DPoP proof jwk does not fit its alg');
  if (algorithm.kty === 'RSA') return `{"e":"${memberText(jwk, 'e')}","kty":"RSA","n":"${memberText(jwk, 'n')}"}`;
  const crv = jwk['crv'];
  if (typeof crv !== 'string' || !algorithm.curves?.includes(crv)) throw invalid('DPoP proof jwk does not fit its alg');
  if (algorithm.kty === 'OKP') return `{"crv":"${crv}","kty":"OKP","x":"${memberText(jwk, 'x')}"}`;
  return `{"crv":"${crv}","kty":"EC","x":"${memberText(jwk, 'x')}","y":"${memberText(jwk, 'y')}"}`;
}

interface ProofKey {
  readonly key: KeyObject;
  readonly jkt: string;
  readonly jktBytes: Buffer;
}

/** Bytes of an EC coordinate or an OKP key on each curve (RFC 7518 §6.2.1.2, RFC 8037 §2). */
const KEY_BYTES: Readonly<Record<string, number>> = { 'P-256': 32, 'P-384': 48, 'P-521': 66, Ed25519: 32, Ed448: 57 };

/**
 * One encoding per key, so one key has one jkt: base64url without stray bits, coordinates of
 * their curve's full length, RSA integers without leading zero bytes (RFC 7518 §6.3.1.1).
 */
function encodedCanonically(members: Readonly<Record<string, string>>): boolean {
  for (const [name, value] of Object.entries(members)) {
    if (name === 'kty' || name === 'crv') continue;
    const bytes = Buffer.from(value, 'base64url');
    if (bytes.toString('base64url') !== value) return false;
    if (members['kty'] === 'RSA' ? bytes[0] === 0 : bytes.length !== KEY_BYTES[members['crv'] as string]) return false;
  }
  return true;
}

/** A key seen for the first time: checked and imported once, then cached by its canonical JWK. */
function importKey(canonical: string): ProofKey {
  const members = JSON.parse(canonical) as Record<string, string>;
  if (!encodedCanonically(members)) throw invalid('DPoP proof jwk is not canonically encoded');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: members, format: 'jwk' });
  } catch {
    throw invalid('DPoP proof jwk is not a usable public key');
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType === 'rsa' && (bits === undefined || bits < MIN_RSA_BITS || bits > MAX_RSA_BITS)) {
    throw invalid(`DPoP proof RSA key must have ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`);
  }
  const jkt = hash('sha256', canonical, 'base64url');
  return { key, jkt, jktBytes: Buffer.from(jkt) };
}

const claimText = (payload: Json, name: string): string => {
  const value = payload[name];
  if (value === undefined) throw invalid(`DPoP proof lacks the ${name} claim`);
  if (typeof value !== 'string' || value === '') throw invalid(`DPoP proof ${name} claim is malformed`);
  return value;
};

export function createProofVerifier(options: ProofOptions): ProofVerifier {
  const { clock, iatLeewaySeconds } = options;
  const allowed = new Map(options.algorithms.map((alg) => [alg, DPOP_ALGORITHMS[alg] as DpopAlgorithm]));
  const keys = new LRUCache<string, ProofKey>({ max: KEY_CACHE_ENTRIES });
  const keyOf = (canonical: string): ProofKey => {
    let found = keys.get(canonical);
    if (found === undefined) keys.set(canonical, (found = importKey(canonical)));
    return found;
  };

  return (input) => {
    const { proofs } = input;
    if (proofs === undefined || proofs.length === 0) throw invalid('DPoP proof required');
    if (proofs.length > 1) throw invalid('exactly one DPoP header is allowed');
    const jws = proofs[0] as string;
    const first = jws.indexOf('.');
    const second = first === -1 ? -1 : jws.indexOf('.', first + 1);
    if (second === -1 || jws.indexOf('.', second + 1) !== -1) throw invalid('DPoP proof is not a compact JWS');
    const signature = jws.slice(second + 1);
    const header = decodeJson(jws.slice(0, first));
    if (header === undefined || !B64URL.test(signature)) throw invalid('DPoP proof is not a compact JWS');

    const typ = header['typ'];
    if (typeof typ !== 'string' || !/^(application\/)?dpop\+jwt$/i.test(typ)) throw invalid('DPoP proof typ must be dpop+jwt');
    const alg = header['alg'];
    const algorithm = typeof alg === 'string' ? allowed.get(alg) : undefined;
    if (algorithm === undefined) throw invalid(`DPoP proof alg must be one of ${options.algorithms.join(', ')}`);
    // RFC 7515 §4.1.11: an extension certbound does not know must not be ignored.
    if (header['crit'] !== undefined) throw invalid('DPoP proof has critical header parameters');
    const jwk = header['jwk'];
    if (!isObject(jwk)) throw invalid('DPoP proof has no jwk header');
    if (PRIVATE_MEMBERS.some((m) => jwk[m] !== undefined)) throw invalid('DPoP proof jwk must be a public key');
    const { key, jkt, jktBytes } = keyOf(canonicalJwk(jwk, algorithm));

    let verified = false;
    try {
      verified = verify(algorithm.digest, Buffer.from(jws.slice(0, second), 'latin1'), algorithm.input(key), Buffer.from(signature, 'base64url'));
    } catch {
      verified = false;
    }
    if (!verified) throw invalid('DPoP proof signature does not verify');

    const payload = decodeJson(jws.slice(first + 1, second));
    if (payload === undefined) throw invalid('DPoP proof payload is not a JSON object');
    const jti = claimText(payload, 'jti');
    if (jti.length > MAX_JTI) throw invalid(`DPoP proof jti is longer than ${MAX_JTI} characters`);
    const htm = claimText(payload, 'htm');
    const htu = claimText(payload, 'htu');
    const iat = payload['iat'];
    if (iat === undefined) throw invalid('DPoP proof lacks the iat claim');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('DPoP proof iat claim is malformed');
    const ath = claimText(payload, 'ath');
    const nonce = payload['nonce'];
    if (nonce !== undefined && typeof nonce !== 'string') throw invalid('DPoP proof nonce claim is malformed');

    if (htm !== input.method) throw invalid('DPoP proof htm does not match the request method');
    if (!htuMatches(htu, input.origin, input.encodedPath)) throw invalid('DPoP proof htu does not match the request URI');
    const now = clock();
    if (Math.abs(iat * 1000 - now) > iatLeewaySeconds * 1000) throw invalid('DPoP proof iat is outside the accepted window');
    if (ath !== hash('sha256', input.accessToken, 'base64url')) throw new GatewayError('dpop_ath_mismatch', 'DPoP proof ath does not match the access token');
    return { jkt, jktBytes, jti, replayableUntilMs: (iat + iatLeewaySeconds) * 1000 + 1, ...(nonce !== undefined ? { nonce } : {}) };
  };
}
