// Strict decoders for the encodings load balancers use. Lenient decoders turn a corrupted value
// into a wrong thumbprint instead of an error, so every function here refuses anything unexpected.
import { GatewayError } from '../errors.js';

/** Most certificates one header value may hold (leaf plus chain). */
export const MAX_CERTIFICATES = 10;

export const malformed = (description: string): GatewayError => new GatewayError('certificate_malformed', description);

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Standard-alphabet base64 with correct padding, canonical (no stray bits in the last character).
 * `Buffer.from(s, 'base64')` alone silently skips anything it does not understand.
 */
export function strictBase64(text: string, what: string): Buffer {
  if (text.length === 0) throw malformed(`${what}: empty base64`);
  if (!BASE64.test(text)) throw malformed(`${what}: not valid base64 (standard alphabet, padded)`);
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) throw malformed(`${what}: non-canonical base64`);
  return bytes;
}

const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const PERCENT = /%([0-9A-Fa-f]{2})/g;

/**
 * Percent-decoding as `decodeURIComponent` does it, but byte-wise and strict: `+` stays `+` (never
 * form decoding, which would turn it into a space and corrupt the base64), and a `%` not followed
 * by two hex digits is an error.
 */
export function percentDecode(text: string, what: string): string {
  if (!text.includes('%')) return text;
  if (BAD_PERCENT.test(text)) throw malformed(`${what}: bad percent-encoding`);
  return text.replace(PERCENT, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

const BEGIN = '-----BEGIN CERTIFICATE-----';
const END = '-----END CERTIFICATE-----';
// Line breaks survive proxies as themselves, as spaces (Apache, WSO2) or as tabs (nginx legacy).
const WHITESPACE = /[ \t\r\n]+/g;

/** Every certificate in a run of PEM blocks, separated by nothing or whitespace, nothing else. */
export function pemBlocks(text: string, what: string): Buffer[] {
  const blocks: Buffer[] = [];
  let at = skipWhitespace(text, 0);
  while (at < text.length) {
    if (!text.startsWith(BEGIN, at)) {
      throw malformed(blocks.length === 0 ? `${what}: not a PEM certificate` : `${what}: unexpected data after END CERTIFICATE`);
    }
    const end = text.indexOf(END, at + BEGIN.length);
    if (end < 0) throw malformed(`${what}: PEM certificate without END line`);
    if (blocks.length === MAX_CERTIFICATES) throw malformed(`${what}: more than ${MAX_CERTIFICATES} certificates`);
    blocks.push(strictBase64(text.slice(at + BEGIN.length, end).replace(WHITESPACE, ''), what));
    at = skipWhitespace(text, end + END.length);
  }
  if (blocks.length === 0) throw malformed(`${what}: empty`);
  return blocks;
}

/** PEM (one or more blocks, with or without line breaks) or, without armour, bare base64 DER. */
export function pemOrBase64(text: string, what: string): Buffer[] {
  const trimmed = trimWhitespace(text);
  return trimmed.startsWith('-----') ? pemBlocks(trimmed, what) : [strictBase64(trimmed, what)];
}

/** Strips ASCII spaces, tabs and line breaks at both ends (not Unicode spaces, unlike `trim`). */
export function trimWhitespace(text: string): string {
  let end = text.length;
  while (end > 0 && isWhitespace(text.charCodeAt(end - 1))) end--;
  return text.slice(skipWhitespace(text, 0), end);
}

function skipWhitespace(text: string, from: number): number {
  let at = from;
  while (at < text.length && isWhitespace(text.charCodeAt(at))) at++;
  return at;
}

const isWhitespace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
