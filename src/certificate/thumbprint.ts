import { hash, timingSafeEqual } from 'node:crypto';

/** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 over the DER, no padding. */
export const thumbprintOf = (der: Uint8Array): string => hash('sha256', der, 'base64url');

/** Constant-time comparison of two thumbprints (or any two ASCII secrets). */
export function sameThumbprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare against itself on length mismatch so the time does not depend on where they differ.
  return x.length === y.length ? timingSafeEqual(x, y) : !timingSafeEqual(x, x);
}
