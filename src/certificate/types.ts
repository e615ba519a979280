import type { X509Certificate } from 'node:crypto';
import { thumbprintOf } from './thumbprint.js';
import { readPsd2, type Psd2Identity } from './psd2.js';

/**
 * A client certificate, with what requests need of it derived once, here: the thumbprint and its
 * bytes (for the constant-time binding check), and, on first use, the value it is forwarded in
 * (most routes forward none) and its PSD2 roles and organization identifier. One object per TLS connection, or per distinct header value.
 */
export class ClientCertificate {
  /** `x5t#S256`: base64url (no padding) SHA-256 of the leaf's DER. */
  readonly thumbprint: string;
  readonly thumbprintBytes: Buffer;
  private forwarded: string | undefined;
  private psd2Identity: Psd2Identity | undefined;

  constructor(readonly x509: X509Certificate) {
    this.thumbprint = thumbprintOf(x509.raw);
    this.thumbprintBytes = Buffer.from(this.thumbprint);
  }

  /** The PEM, encodeURIComponent'd: a header value that cannot break a line. */
  get forwardedValue(): string {
    this.forwarded ??= encodeURIComponent(this.x509.toString());
    return this.forwarded;
  }

  /** What its PSD2 statement and subject say (ETSI TS 119 495), read on first use. */
  get psd2(): Psd2Identity {
    this.psd2Identity ??= readPsd2(this.x509);
    return this.psd2Identity;
  }
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

/** A TLS connection's peer certificate, with how the handshake judged it. */
export interface TlsPeer {
  readonly result: CertificateResult;
  /** Why the handshake did not verify it against the client CA, if it did not. */
  readonly unverified?: string;
  readonly notBefore: number;
  readonly notAfter: number;
}

/**
 * What the certificate readers remember about one client connection. The server creates it empty
 * with the connection (so it lives and dies with it); the readers fill it on first use.
 */
export interface ConnectionCertificates {
  /** The TLS peer certificate, read once: renegotiation is disabled, so it cannot change. `null`: none. */
  tlsPeer?: TlsPeer | null;
  /**
   * The certificate header value this connection (a load balancer's) sent last, with what it
   * parsed to, and the reader that parsed it: after a reload another reader (another CA, another
   * format) must not take its answer.
   */
  lastHeader?: { readonly reader: object; readonly key: string; readonly parsed: unknown };
}
