import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * What certbound writes to a shared store about a token, and under which key (issue 14). The key
 * is an HMAC of the token under the shared secret: whoever reads Redis cannot test a token
 * against it. The value is AES-256-GCM under a key derived from the secret *and the token*
 * (HMAC-SHA-256), with the storage key as associated data: reading Redis yields no claim, and
 * writing it cannot make a token pass, even for someone who holds the token but not the secret.
 */
export interface Sealer {
  /** The storage key of a token (base64url HMAC-SHA-256); also the token's name in the shared revocation list. */
  keyOf(token: string): string;
  seal(token: string, plaintext: Buffer): Buffer;
  /** The plaintext, or undefined when the value was not sealed for this token and key by this secret. */
  open(token: string, sealed: Buffer): Buffer | undefined;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Format version: a value sealed otherwise is refused, never misread. */
const VERSION = 1;

export function createSealer(secret: Buffer): Sealer {
  const mac = (purpose: string, token: string): Buffer => createHmac('sha256', secret).update(`certbound:${purpose}:`).update(token).digest();
  const keyOf = (token: string): string => mac('key', token).toString('base64url');
  return {
    keyOf,
    seal(token, plaintext) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', mac('seal', token), iv);
      cipher.setAAD(Buffer.from(keyOf(token)));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([VERSION]), iv, body, cipher.getAuthTag()]);
    },
    open(token, sealed) {
      if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', mac('seal', token), sealed.subarray(1, 1 + IV_BYTES));
        decipher.setAAD(Buffer.from(keyOf(token)));
        decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
        return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      } catch {
        return undefined;
      }
    },
  };
}
