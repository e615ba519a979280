import type { CertificateFormat } from '../config/types.js';

/** What one word in `client_certificate.preset` stands for. Owned by the certificate module. */
export interface Preset {
  readonly header: string;
  readonly format: CertificateFormat;
  /** `pem` only: the value is percent-encoded. */
  readonly encoded: boolean;
  readonly chainHeader?: string;
  readonly verifyHeader?: { readonly name: string; readonly success: readonly string[] };
}

const nginx: Preset = {
  header: 'ssl-client-cert',
  format: 'pem',
  encoded: true,
  verifyHeader: { name: 'ssl-client-verify', success: ['SUCCESS'] },
};
const envoy: Preset = { header: 'x-forwarded-client-cert', format: 'xfcc', encoded: true };

/** Header names and encodings per load balancer; docs/load-balancers.md shows each one's own config. */
export const PRESETS: Readonly<Record<string, Preset>> = Object.freeze({
  'ingress-nginx': nginx,
  nginx,
  envoy,
  istio: envoy,
  'aws-alb': { header: 'x-amzn-mtls-clientcert-leaf', format: 'aws-alb', encoded: true },
  'aws-alb-passthrough': { header: 'x-amzn-mtls-clientcert', format: 'aws-alb', encoded: true },
  gcp: { header: 'x-client-cert-leaf', format: 'rfc9440', encoded: false, chainHeader: 'x-client-cert-chain' },
  cloudflare: { header: 'client-cert', format: 'rfc9440', encoded: false, chainHeader: 'client-cert-chain' },
  'azure-app-gateway': { header: 'x-arr-clientcert', format: 'pem', encoded: true },
  'azure-app-service': { header: 'x-arr-clientcert', format: 'der-base64', encoded: false },
  traefik: { header: 'x-forwarded-tls-client-cert', format: 'traefik', encoded: false },
  haproxy: { header: 'x-ssl-client-der', format: 'der-base64', encoded: false },
  caddy: { header: 'x-client-cert-der', format: 'der-base64', encoded: false },
  apache: { header: 'ssl-client-cert', format: 'pem', encoded: false },
  kong: { header: 'x-client-cert', format: 'pem', encoded: true },
  wso2: { header: 'x-wso2-client-certificate', format: 'pem', encoded: true },
} satisfies Record<string, Preset>);
