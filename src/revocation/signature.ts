// The signature of an OCSP response or a CRL, checked with node:crypto against the signer's key.
import { verify, type KeyObject } from 'node:crypto';

/** Signature algorithm OID → the digest node:crypto verifies with (null: the key's own, EdDSA). */
const ALGORITHMS: ReadonlyMap<string, { readonly digest: string | null; readonly key: string }> = new Map([
  ['1.2.840.113549.1.1.11', { digest: 'sha256', key: 'rsa' }], // sha256WithRSAEncryption
  ['1.2.840.113549.1.1.12', { digest: 'sha384', key: 'rsa' }],
  ['1.2.840.113549.1.1.13', { digest: 'sha512', key: 'rsa' }],
  ['1.2.840.10045.4.3.2', { digest: 'sha256', key: 'ec' }], // ecdsa-with-SHA256
  ['1.2.840.10045.4.3.3', { digest: 'sha384', key: 'ec' }],
  ['1.2.840.10045.4.3.4', { digest: 'sha512', key: 'ec' }],
  ['1.3.101.112', { digest: null, key: 'ed25519' }], // Ed25519
  ['1.3.101.113', { digest: null, key: 'ed448' }], // Ed448
]);

/** The OIDs accepted. SHA-1 and MD5 signatures are not, nor RSASSA-PSS (no QTSP we know signs OCSP or CRLs with it). */
export const SIGNATURE_ALGORITHMS: readonly string[] = [...ALGORITHMS.keys()];

/** True when `signature` over `data` verifies with `key` under `algorithm` (an OID); false for any other algorithm, or a key of another type than the algorithm's. */
export function verifySignature(algorithm: string, data: Uint8Array, signature: Uint8Array, key: KeyObject): boolean {
  const known = ALGORITHMS.get(algorithm);
  if (known === undefined || key.asymmetricKeyType !== known.key) return false;
  try {
    return verify(known.digest, data, known.key === 'ec' ? { key, dsaEncoding: 'der' } : key, signature);
  } catch {
    return false;
  }
}
