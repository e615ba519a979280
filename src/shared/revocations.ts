import type { TokenClaims } from '../token/types.js';

/**
 * Tokens revoked through POST /revocations (issue 14), refused on every request until the
 * longest cache TTL has passed: by then the authorization server's own answer is what counts.
 * Checked against a token's cache key (its SHA-256, see token/claims.ts keyOf) and its claims,
 * only while the list holds anything: an empty list costs the hot path one comparison.
 */
export type Revocation =
  | { readonly kind: 'token'; readonly key: string }
  | { readonly kind: 'client'; readonly clientId: string; readonly issuedBefore: number }
  | { readonly kind: 'certificate'; readonly thumbprint: string };

/** A revocation and the epoch ms until which it is kept. */
export type RevocationEntry = Revocation & { readonly until: number };

export interface RevocationList {
  /** Adds or extends an entry; false when it changes nothing (already known, as long or longer). */
  add(entry: RevocationEntry): boolean;
  /** Whether the token (its cache key and claims) is revoked now. */
  revoked(tokenKey: string, claims: TokenClaims | undefined): boolean;
  readonly size: number;
}

export function createRevocationList(clock: () => number): RevocationList {
  const tokens = new Map<string, number>();
  const clients = new Map<string, { issuedBefore: number; until: number }>();
  const certificates = new Map<string, number>();
  const live = (until: number | undefined): boolean => until !== undefined && until > clock();
  const size = (): number => tokens.size + clients.size + certificates.size;
  const prune = (): void => {
    const now = clock();
    for (const [k, until] of tokens) if (until <= now) tokens.delete(k);
    for (const [k, v] of clients) if (v.until <= now) clients.delete(k);
    for (const [k, until] of certificates) if (until <= now) certificates.delete(k);
  };
  const longer = (map: Map<string, number>, key: string, until: number): boolean => {
    if ((map.get(key) ?? 0) >= until) return false;
    map.set(key, until);
    return true;
  };
  return {
    add(entry) {
      prune();
      if (entry.until <= clock()) return false;
      switch (entry.kind) {
        case 'token':
          return longer(tokens, entry.key, entry.until);
        case 'certificate':
          return longer(certificates, entry.thumbprint, entry.until);
        case 'client': {
          const known = clients.get(entry.clientId);
          if (known && known.issuedBefore >= entry.issuedBefore && known.until >= entry.until) return false;
          clients.set(entry.clientId, { issuedBefore: Math.max(entry.issuedBefore, known?.issuedBefore ?? 0), until: Math.max(entry.until, known?.until ?? 0) });
          return true;
        }
      }
    },
    revoked(tokenKey, claims) {
      if (size() === 0) return false;
      if (live(tokens.get(tokenKey))) return true;
      if (claims === undefined) return false;
      if (claims.x5tS256 !== undefined && live(certificates.get(claims.x5tS256))) return true;
      const client = claims.clientId === undefined ? undefined : clients.get(claims.clientId);
      // issued_before matches tokens issued earlier, and tokens that do not say when they were issued.
      return client !== undefined && live(client.until) && (claims.iat === undefined || claims.iat < client.issuedBefore);
    },
    get size() {
      return size();
    },
  };
}
