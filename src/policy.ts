import { GatewayError } from './errors.js';
import type { TokenClaims } from './token/types.js';

/** The route's requirements beyond the binding: every scope it lists must have been granted. */
export function checkScopes(claims: TokenClaims, required: readonly string[]): void {
  for (const scope of required) {
    if (!claims.scopes.has(scope)) {
      throw new GatewayError('insufficient_scope', 'access token lacks a required scope', { scope: required });
    }
  }
}
