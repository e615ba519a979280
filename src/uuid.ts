import { randomFillSync } from 'node:crypto';

/** Random bytes for 256 UUIDs, refilled from the CSPRNG when used up. */
const pool = Buffer.alloc(4096);
let used = pool.length;
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * An RFC 9562 version 4 UUID (122 random bits from the CSPRNG), lower-case, as one flat string.
 * Same randomness as `crypto.randomUUID()`, which builds its string from ~20 concatenated
 * pieces: this runs for every request without an `x-fapi-interaction-id`, and every piece is
 * garbage to collect.
 */
export function uuidV4(): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let byte = pool[used + i] as number;
    if (i === 6) byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // variant 10xx
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = 0x2d; // '-'
    text[at++] = HEX[byte >> 4] as number;
    text[at++] = HEX[byte & 0x0f] as number;
  }
  // The bytes are spent: never hand out the same ones twice.
  pool.fill(0, used, used + 16);
  used += 16;
  return text.toString('latin1');
}
