// Optional checks on a forwarded certificate: chains to a configured CA, clientAuth EKU, validity.
import { X509Certificate } from 'node:crypto';
import type { CertificateVerifyConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Most issuers walked from the leaf up to a trust anchor. */
const MAX_DEPTH = 8;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

/** When a certificate path is valid, in epoch milliseconds, for a cheap per-request check. */
export interface ValidityWindow {
  readonly notBefore: number;
  readonly notAfter: number;
  /** The same for the issuers on the verified path (the whole line when no CA is configured). */
  readonly issuersNotBefore: number;
  readonly issuersNotAfter: number;
}

/** Checks that do not depend on the time; throws GatewayError. Returns the validity window to check per request. */
export type CertificateVerifier = (leaf: X509Certificate, chain: readonly X509Certificate[]) => ValidityWindow;

export function createCertificateVerifier(config: CertificateVerifyConfig): CertificateVerifier {
  // Parsed once, when the config was loaded.
  const anchors = config.ca?.certificates;
  // A certificate listed in the bundle itself is trusted as is (a pinned self-signed client certificate).
  const pinned = new Set(anchors?.map((a) => a.fingerprint256));
  return (leaf, chain) => {
    if (config.requireClientAuthEku && !(leaf.keyUsage ?? []).includes(CLIENT_AUTH)) {
      throw new GatewayError('certificate_untrusted', 'client certificate is not for client authentication (no clientAuth extended key usage)');
    }
    const issuers = anchors === undefined || pinned.has(leaf.fingerprint256) ? [] : pathToAnchor(leaf, chain, anchors);
    return {
      notBefore: dateOf(leaf.validFrom),
      notAfter: dateOf(leaf.validTo),
      issuersNotBefore: Math.max(-Infinity, ...issuers.map((c) => dateOf(c.validFrom))),
      issuersNotAfter: Math.min(Infinity, ...issuers.map((c) => dateOf(c.validTo))),
    };
  };
}

/** Throws `certificate_expired` when `now` is outside the window. */
export function checkValidity(window: ValidityWindow, now: number): void {
  if (now > window.notAfter) throw new GatewayError('certificate_expired', 'client certificate expired');
  if (now < window.notBefore) throw new GatewayError('certificate_expired', 'client certificate not yet valid');
  if (now > window.issuersNotAfter) throw new GatewayError('certificate_expired', 'issuing certificate expired');
  if (now < window.issuersNotBefore) throw new GatewayError('certificate_expired', 'issuing certificate not yet valid');
}

/** The PEM certificate blocks of a file (a bundle); text between the blocks is ignored. */
export const pemCertificateBlocks = (contents: Buffer): string[] => contents.toString('latin1').match(PEM_BLOCK) ?? [];

/** Walks issuer by issuer (intermediates from the header) to a configured anchor; returns the issuers. */
function pathToAnchor(leaf: X509Certificate, chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): X509Certificate[] {
  const path: X509Certificate[] = [];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const anchor = anchors.find((a) => issued(current, a));
    if (anchor !== undefined) return [...path, anchor];
    const next = chain.find((c) => c.ca && c !== current && !path.includes(c) && issued(current, c));
    if (next === undefined) break;
    path.push(next);
    current = next;
  }
  throw new GatewayError('certificate_untrusted', 'client certificate does not chain to a trusted CA');
}

// checkIssued (names, key identifiers, keyCertSign, key type against signature algorithm) first:
// only then is the issuer's public key known to be usable for verify.
function issued(subject: X509Certificate, issuer: X509Certificate): boolean {
  return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
}

function dateOf(text: string): number {
  return Date.parse(text);
}
