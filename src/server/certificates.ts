import type { X509Certificate } from 'node:crypto';
import type { Config } from '../config/types.js';

/** What operators need to see about the loaded certificates: identifiers and dates, never the certificates. */
export interface CertificateSummary {
  readonly serving?: { readonly serial: string; readonly sha256: string; readonly notAfter: number };
  readonly clientCa?: { readonly count: number; readonly earliestNotAfter: number };
}

const notAfterOf = (cert: X509Certificate): number => Date.parse(cert.validTo) / 1000;

/** From the certificates the config step parsed. */
export function summarize(config: Config): CertificateSummary {
  const tls = config.listen.tls;
  const leaf = tls ? tls.cert.certificates[0] : undefined;
  const caFile = tls?.clientCa ?? config.clientCertificate.verify.ca;
  const cas = caFile?.certificates ?? [];
  return {
    ...(leaf ? { serving: { serial: leaf.serialNumber, sha256: leaf.fingerprint256, notAfter: notAfterOf(leaf) } } : {}),
    ...(cas.length > 0 ? { clientCa: { count: cas.length, earliestNotAfter: Math.min(...cas.map(notAfterOf)) } } : {}),
  };
}

/** The summary as log fields. */
export function logFields(summary: CertificateSummary): Record<string, unknown> {
  const { serving, clientCa } = summary;
  return {
    ...(serving
      ? { serving_certificate: { serial: serving.serial, sha256: serving.sha256, not_after: new Date(serving.notAfter * 1000).toISOString() } }
      : {}),
    ...(clientCa ? { client_ca: { certificates: clientCa.count, earliest_not_after: new Date(clientCa.earliestNotAfter * 1000).toISOString() } } : {}),
  };
}
