import { GatewayError } from '../../src/errors.js';

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
