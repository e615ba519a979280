import { hash, timingSafeEqual } from 'node:crypto';

/** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 over the DER, no padding. */
export const thumbprintOf = (der: Uint8Array): string => hash('sha256', der, 'base64url');

/** Constant-time comparison; on a length mismatch x is compared with itself, so the time does not depend on where they differ. */
export function sameBytes(x: Buffer, y: Buffer): boolean {
  return x.length === y.length ? timingSafeEqual(x, y) : !timingSafeEqual(x, x);
}
