import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { ClientAuthConfig } from '../config/types.js';

/** What one introspection request carries to authenticate certbound to the authorization server. */
export interface ClientAuthentication {
  readonly headers: Readonly<Record<string, string>>;
  readonly params: Readonly<Record<string, string>>;
}

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ASSERTION_LIFETIME_SECONDS = 60;

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded. */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

/** The JWS algorithms a private key can sign with, the one used when the config names none first; [] for an unusable key. */
export function algorithmsFor(key: KeyObject): readonly string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : [];
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      return [];
  }
}


/**
 * Prepares the configured client authentication once (key parsed at load, header encoded here)
 * and returns what produces each request's credentials. The config step made sure each method
 * has what it needs.
 */
export function createClientAuthentication(auth: ClientAuthConfig, clock: () => number): () => Promise<ClientAuthentication> {
  const { clientId } = auth;
  switch (auth.method) {
    case 'client_secret_basic': {
      const authorization = basicAuthorization(clientId, auth.secret);
      return async () => ({ headers: { authorization }, params: {} });
    }
    case 'client_secret_post': {
      const params = { client_id: clientId, client_secret: auth.secret };
      return async () => ({ headers: {}, params });
    }
    case 'private_key_jwt': {
      const { key, algorithm: alg, audience } = auth;
      return async () => {
        const iat = Math.floor(clock() / 1000);
        const assertion = await new SignJWT({})
          .setProtectedHeader({ alg })
          .setIssuer(clientId)
          .setSubject(clientId)
          .setAudience(audience)
          .setJti(randomUUID())
          .setIssuedAt(iat)
          .setExpirationTime(iat + ASSERTION_LIFETIME_SECONDS)
          .sign(key.key);
        return {
          headers: {},
          params: { client_id: clientId, client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion },
        };
      };
    }
    case 'tls_client_auth':
      // The certificate itself goes in the TLS handshake (see createDispatcher).
      return async () => ({ headers: {}, params: { client_id: clientId } });
  }
}
