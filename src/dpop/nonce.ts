import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * RFC 9449 §8, §9: server-provided nonces, without state. A nonce names a time step and carries an
 * HMAC of it under the configured secret, so any replica given the same secret issues and accepts
 * the same nonces. The current step's nonce is computed once per step.
 */
export interface Nonces {
  /** The nonce to hand out now. */
  current(): string;
  /**
   * What a presented nonce is worth: `invalid` (absent, forged, expired or from the future), or
   * `valid` with `refresh` true once half its lifetime has passed (§8.2: send a fresh one).
   */
  check(nonce: string | undefined): { readonly valid: false } | { readonly valid: true; readonly refresh: boolean };
}

export interface NonceOptions {
  readonly secret: Buffer;
  readonly lifetimeSeconds: number;
  /** How far a step may lie ahead of this replica's clock (another replica's clock may run fast). */
  readonly leewaySeconds: number;
  /** Milliseconds since the epoch. */
  readonly clock: () => number;
}

const MAC_BYTES = 16;
const FORMAT = /^(\d{1,12})\.[A-Za-z0-9_-]{22}$/;

export function createNonces(options: NonceOptions): Nonces {
  const { secret, lifetimeSeconds, leewaySeconds, clock } = options;
  // Five steps per lifetime: a nonce handed out is good for at least 4/5 of the lifetime.
  const stepSeconds = Math.max(1, Math.floor(lifetimeSeconds / 5));
  const mac = (step: number): Buffer => createHmac('sha256', secret).update(`certbound-dpop-nonce:${step}`).digest().subarray(0, MAC_BYTES);
  let cached: { step: number; nonce: string } | undefined;
  const stepAt = (seconds: number): number => Math.floor(seconds / stepSeconds);
  return {
    current() {
      const step = stepAt(clock() / 1000);
      if (cached?.step !== step) cached = { step, nonce: `${step}.${mac(step).toString('base64url')}` };
      return cached.nonce;
    },
    check(nonce) {
      const match = nonce === undefined ? null : FORMAT.exec(nonce);
      if (!match) return { valid: false };
      const step = Number(match[1]);
      // The one spelling certbound issues: no leading zero, no other unused bits in the MAC's last character.
      const presented = Buffer.from(nonce as string);
      const expected = Buffer.from(`${step}.${mac(step).toString('base64url')}`);
      if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return { valid: false };
      const now = clock() / 1000;
      const issued = step * stepSeconds;
      const age = now - issued;
      if (age > lifetimeSeconds || issued > now + leewaySeconds) return { valid: false };
      return { valid: true, refresh: age > lifetimeSeconds / 2 };
    },
  };
}
