import { GatewayError } from '../../src/errors.js';
import { RevocationError } from '../../src/revocation/types.js';

/** The GatewayError code `fn` throws, or 'no error'. Any other exception propagates (a test failure). */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof GatewayError) return e.code;
    throw e;
  }
  return 'no error';
}

/** The RevocationError reason `fn` throws, or 'no error'. Any other exception propagates. */
export function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof RevocationError) return e.reason;
    throw e;
  }
  return 'no error';
}

/** The same for what `run` returns or rejects with, awaited. */
export async function rejectionOf(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (e) {
    if (e instanceof RevocationError) return e.reason;
    throw e;
  }
  return 'no error';
}
