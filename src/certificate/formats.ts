// Each load balancer's header encoding → the DER bytes of the leaf and of the chain behind it.
import { createHash } from 'node:crypto';
import type { CertificateFormat } from '../config/types.js';
import { MAX_CERTIFICATES, malformed, pemBlocks, pemOrBase64, percentDecode, strictBase64, trimWhitespace } from './decode.js';
import { parseXfcc } from './xfcc.js';

export type Decoded =
  | { readonly kind: 'certificate'; readonly leaf: Buffer; readonly chain: readonly Buffer[] }
  | { readonly kind: 'none'; readonly why: string };

export interface FormatOptions {
  readonly format: CertificateFormat;
  /** `pem` only: the value is percent-encoded. */
  readonly encoded: boolean;
  readonly xfccElement: 'first' | 'last';
  /** XFCC values with more elements are refused. */
  readonly xfccMaxElements: number;
}

const PLACEHOLDER = /^\{[^{}]*\}$/;

/**
 * The shapes proxies use for "no certificate": empty (HAProxy, Google past its size cap),
 * `(null)` (Apache), and an unreplaced `{placeholder}` (Caddy).
 */
export function isNoCertificateValue(value: string): boolean {
  const trimmed = trimWhitespace(value);
  return trimmed === '' || trimmed === '(null)' || PLACEHOLDER.test(trimmed);
}

const WHAT = 'certificate header';
const CHAIN = 'certificate chain header';

/** Decodes the certificate header's value, and the chain header's when there is one. */
export function decodeCertificates(options: FormatOptions, value: string, chainValue: string | undefined): Decoded {
  const { format, encoded } = options;
  if (format === 'xfcc') return decodeXfcc(value, options.xfccElement, options.xfccMaxElements);
  const [leaf, ...rest] = decodeValue(format, encoded, value, WHAT);
  const chain = chainValue === undefined || isNoCertificateValue(chainValue) ? [] : decodeChain(format, encoded, chainValue);
  const all = [...rest, ...chain];
  if (all.length >= MAX_CERTIFICATES) throw malformed(`more than ${MAX_CERTIFICATES} certificates`);
  // Every decoder returns at least one certificate or throws.
  return { kind: 'certificate', leaf: leaf!, chain: all };
}

type SingleHeaderFormat = Exclude<CertificateFormat, 'xfcc'>;

function decodeValue(format: SingleHeaderFormat, encoded: boolean, value: string, what: string): Buffer[] {
  switch (format) {
    case 'pem':
      return pemOrBase64(encoded ? percentDecode(value, what) : value, what);
    case 'aws-alb':
      return pemOrBase64(percentDecode(value, what), what);
    case 'der-base64':
      return [strictBase64(trimWhitespace(value), what)];
    case 'rfc9440':
      return [byteSequence(trimWhitespace(value), what)];
    case 'traefik':
      return commaSeparated(value, what).flatMap((item) => traefikItem(item, what));
  }
}

/** The chain header holds the same encoding as the certificate header, except RFC 9440's list. */
function decodeChain(format: SingleHeaderFormat, encoded: boolean, value: string): Buffer[] {
  return format === 'rfc9440'
    ? commaSeparated(value, CHAIN).map((item) => byteSequence(item, CHAIN))
    : decodeValue(format, encoded, value, CHAIN);
}

/** RFC 8941 byte sequence `:base64:` (RFC 9440 `Client-Cert`); parameters are not expected. */
function byteSequence(item: string, what: string): Buffer {
  if (item.length < 2 || !item.startsWith(':') || !item.endsWith(':')) {
    throw malformed(`${what}: not an RFC 9440 byte sequence (:base64:)`);
  }
  return strictBase64(item.slice(1, -1), what);
}

function commaSeparated(value: string, what: string): string[] {
  const items = value.split(',').map(trimWhitespace);
  if (items.length > MAX_CERTIFICATES) throw malformed(`${what}: more than ${MAX_CERTIFICATES} certificates`);
  if (items.includes('')) throw malformed(`${what}: empty list item`);
  return items;
}

/**
 * Traefik ≥ 2.9.4 sends plain base64 DER. Older versions passed each item through Go's
 * `url.QueryEscape`, where `+` stands for a space and a real `+` is `%2B`. Plain base64 never
 * contains `%`, so an item with `%` is unambiguously the escaped form.
 */
function traefikItem(item: string, what: string): Buffer[] {
  return pemOrBase64(item.includes('%') ? percentDecode(item.replaceAll('+', ' '), what) : item, what);
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/** Envoy XFCC: `Cert` (URL-encoded PEM), `Chain` (leaf first) and `Hash` (hex SHA-256 of the leaf). */
function decodeXfcc(value: string, which: 'first' | 'last', maxElements: number): Decoded {
  const elements = parseXfcc(value);
  // Envoy writes URI and DNS SANs unquoted: a SAN holding `,Cert=…` reads as one more element.
  // Edge Envoy with SANITIZE_SET sends exactly one; anything else needs an explicit xfcc_max_elements.
  if (elements.length > maxElements) {
    throw malformed(`XFCC has ${elements.length} elements; at most ${maxElements} accepted (client_certificate.xfcc_max_elements)`);
  }
  // parseXfcc returns at least one element.
  const element = (which === 'first' ? elements[0] : elements[elements.length - 1])!;
  const cert = element.get('cert')?.[0];
  const chainText = element.get('chain')?.[0];
  const hash = element.get('hash')?.[0];
  if (cert === undefined && chainText === undefined) {
    if (hash !== undefined) {
      throw malformed('XFCC element has Hash but no Cert: set Envoy set_current_client_cert_details.cert to true');
    }
    return { kind: 'none', why: 'XFCC element carries no client certificate' };
  }
  const certBlocks = cert === undefined ? undefined : pemBlocks(percentDecode(cert, 'XFCC Cert'), 'XFCC Cert');
  if (certBlocks !== undefined && certBlocks.length !== 1) throw malformed('XFCC Cert holds more than one certificate');
  const chain = chainText === undefined ? [] : pemBlocks(percentDecode(chainText, 'XFCC Chain'), 'XFCC Chain');
  // pemBlocks returns at least one certificate, and Cert or Chain is here.
  const leaf = (certBlocks?.[0] ?? chain[0])!;
  if (certBlocks !== undefined && chain[0] !== undefined && !chain[0].equals(leaf)) {
    throw malformed('XFCC Chain does not start with Cert');
  }
  if (hash !== undefined) {
    if (!HEX_SHA256.test(hash)) throw malformed('XFCC Hash is not a hex SHA-256');
    if (createHash('sha256').update(leaf).digest('hex') !== hash.toLowerCase()) {
      throw malformed('XFCC Hash does not match Cert');
    }
  }
  return { kind: 'certificate', leaf, chain: chain.slice(1) };
}
