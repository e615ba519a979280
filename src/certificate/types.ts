import type { X509Certificate } from 'node:crypto';

export interface ClientCertificate {
  /** `x5t#S256`: base64url (no padding) SHA-256 of the leaf's DER. */
  readonly thumbprint: string;
  readonly x509: X509Certificate;
}

export type CertificateResult =
  | { readonly present: true; readonly certificate: ClientCertificate }
  | {
      readonly present: false;
      /** Why there is none, when that is worth telling the client ("not verified: CERT_HAS_EXPIRED"). */
      readonly why?: string;
      /** A certificate header arrived from a peer outside `trusted_proxies` and was ignored. */
      readonly untrustedPeer?: boolean;
    };

export const NO_CERTIFICATE: CertificateResult = Object.freeze({ present: false });
