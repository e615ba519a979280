import { randomBytes } from 'node:crypto';
import { DPOP_ALGORITHMS } from '../dpop/algorithms.js';
import { DPOP_AUTH_MODES } from './schema.js';
import type { Problems } from './problems.js';
import type { AuthMode, Document, DpopConfig } from './types.js';

/** RFC 2104 / NIST SP 800-107: an HMAC key at least as long as the SHA-256 output. */
export const MIN_NONCE_SECRET_BYTES = 32;

/** The nonce key when gateway.yaml names none: one per process, so a reload keeps accepting its nonces. */
let generated: Buffer | undefined;
const processSecret = (): Buffer => (generated ??= randomBytes(MIN_NONCE_SECRET_BYTES));

export const takesDpop = (auth: AuthMode): boolean => (DPOP_AUTH_MODES as readonly string[]).includes(auth);

/** dpop: → DpopConfig: algorithms certbound can verify (never none or symmetric), a secret long enough. */
export function resolveDpop(doc: Document['dpop'], p: Problems): DpopConfig {
  doc.algorithms.forEach((alg, i) => {
    const at = `dpop.algorithms[${i}]`;
    if (/^none$/i.test(alg) || /^HS\d+$/i.test(alg)) p.add(at, `"${alg}" is not allowed: a DPoP proof must be signed with an asymmetric key`);
    else if (!Object.hasOwn(DPOP_ALGORITHMS, alg)) p.add(at, `"${alg}" is not a supported JWS algorithm (supported: ${Object.keys(DPOP_ALGORITHMS).join(', ')})`);
  });
  const { nonceSecret: configured, ...rest } = doc;
  const secret = configured === undefined ? undefined : Buffer.from(configured.trimEnd());
  if (secret !== undefined && secret.length < MIN_NONCE_SECRET_BYTES) {
    p.add('dpop.nonce_secret', `must hold at least ${MIN_NONCE_SECRET_BYTES} bytes (it has ${secret.length})`);
  }
  return { ...rest, nonceSecret: secret ?? processSecret() };
}

const notOrigin = (value: string): string => `"${value}" is not an origin (https://host[:port], no path, query or credentials)`;

/**
 * A public_url as the origin a proof's htu is compared with: scheme and host lower-cased, the
 * default port dropped (RFC 3986 §6.2.2.1, §6.2.3). Undefined, with a problem, when it is not an
 * https origin.
 */
export function publicOriginOf(at: string, value: string, p: Problems): string | undefined {
  let url: URL;
  try {
    // Checked as written too: the URL parser would resolve `/.`, drop a backslash or add `//`.
    if (!/^[Hh][Tt][Tt][Pp][Ss]:\/\/[^/?#\\]+\/?$/.test(value)) throw new TypeError('not an origin');
    url = new URL(value);
  } catch {
    return void p.add(at, notOrigin(value));
  }
  if (url.protocol !== 'https:' || url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(value)) {
    return void p.add(at, notOrigin(value));
  }
  return url.origin;
}

/**
 * A DPoP route's origin: its own public_url, else listen.public_url; a problem when it has
 * neither (a listen.public_url that is set but no origin has its own problem already).
 */
export function routeOrigin(route: Document['routes'][number], at: string, listen: { readonly set: boolean; readonly origin: string | undefined }, p: Problems): string | undefined {
  if (route.publicUrl !== undefined) return publicOriginOf(`${at}.public_url`, route.publicUrl, p);
  if (!takesDpop(route.auth)) return undefined;
  const listenOrigin = listen.origin;
  if (!listen.set) {
    p.add(`${at}.public_url`, `is required with auth: ${route.auth} when listen.public_url is not set (a DPoP proof's htu is checked against it, never against Host)`);
  }
  return listenOrigin;
}
