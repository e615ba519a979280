import { constants, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';

/**
 * The JWS algorithms (RFC 7518, RFC 8037, RFC 9864) a DPoP proof may be signed with, each with
 * the key it needs and how node:crypto verifies it. Symmetric algorithms and `none` are absent:
 * a proof of possession needs a public key.
 */
export interface DpopAlgorithm {
  readonly kty: 'EC' | 'RSA' | 'OKP';
  /** The curves the key may be on (EC, OKP). */
  readonly curves?: readonly string[];
  /** The digest node:crypto.verify takes (null for EdDSA). */
  readonly digest: string | null;
  readonly input: (key: KeyObject) => VerifyKeyObjectInput | KeyObject;
}

const ec = (curve: string, digest: string): DpopAlgorithm => ({
  kty: 'EC', curves: [curve], digest, input: (key) => ({ key, dsaEncoding: 'ieee-p1363' }),
});
const pss = (digest: string, saltLength: number): DpopAlgorithm => ({
  kty: 'RSA', digest, input: (key) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }),
});
const pkcs1 = (digest: string): DpopAlgorithm => ({ kty: 'RSA', digest, input: (key) => key });
const okp = (curves: readonly string[]): DpopAlgorithm => ({ kty: 'OKP', curves, digest: null, input: (key) => key });

export const DPOP_ALGORITHMS: Readonly<Record<string, DpopAlgorithm>> = Object.freeze({
  ES256: ec('P-256', 'sha256'),
  ES384: ec('P-384', 'sha384'),
  ES512: ec('P-521', 'sha512'),
  PS256: pss('sha256', 32),
  PS384: pss('sha384', 48),
  PS512: pss('sha512', 64),
  RS256: pkcs1('sha256'),
  RS384: pkcs1('sha384'),
  RS512: pkcs1('sha512'),
  EdDSA: okp(['Ed25519', 'Ed448']),
  Ed25519: okp(['Ed25519']),
});

/** FAPI 2.0 §5.4: RSA keys of at least 2048 bits. */
export const MIN_RSA_BITS = 2048;
/** A bound on what one proof can make certbound compute: a 16384-bit verification costs ~50 × a 2048-bit one. */
export const MAX_RSA_BITS = 8192;
