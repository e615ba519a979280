// The client certificate as a load balancer in front of certbound forwards it in a request header.
import { X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ClientCertificateConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { malformed } from './decode.js';
import { decodeCertificates, isNoCertificateValue, type FormatOptions } from './formats.js';
import { createProxyTrust } from './trust.js';
import { ClientCertificate, NO_CERTIFICATE, type CertificateResult, type ConnectionCertificates } from './types.js';
import { checkValidity, createCertificateVerifier, type CertificateVerifier, type ValidityWindow } from './verify.js';

export interface HeaderCertificateReader {
  /**
   * headers: req.headersDistinct (lower-case name → every value received); peer:
   * req.socket.remoteAddress; connection: what is kept on the client connection, when known (a
   * keep-alive client sends the same value on every request: comparing it with the last one costs
   * far less than hashing it for the LRU). Returns the result or throws GatewayError.
   */
  read(headers: NodeJS.Dict<string[]>, peer: string | undefined, connection?: ConnectionCertificates): CertificateResult;
  /** Lower-case names of every header this reader consumes (certificate, chain, verify header): the forwarder strips them before the upstream. */
  readonly headerNames: readonly string[];
}

/** What parsing one header value gave, memoized: a certificate with its validity window, none, or the error. */
type Parsed =
  | { readonly result: CertificateResult; readonly window?: ValidityWindow }
  | { readonly error: GatewayError };

const UNTRUSTED_IGNORED: CertificateResult = Object.freeze({ present: false, untrustedPeer: true });
// Lets the cache hold a value's size in characters; room per entry for the parsed certificate.
const ENTRY_OVERHEAD = 2048;
const MAX_CACHE_BYTES = 64 * 1024 * 1024;

/** `trusted`: the compiled `trusted_proxies` test, when the caller already has one (the gateway shares its own). */
export function createHeaderCertificateReader(
  config: ClientCertificateConfig,
  clock: () => number = Date.now,
  trusted: (peer: string | undefined) => boolean = createProxyTrust(config.trustedProxies),
): HeaderCertificateReader {
  const { header, chainHeader, verifyHeader, maxHeaderBytes } = config;
  const rejectUntrusted = config.untrustedHeader === 'reject';
  const checkTime = config.verify.checkValidity;
  const verifySuccess = new Set(verifyHeader?.success);
  const parse = createParser(config, createCertificateVerifier(config.verify));
  const cache =
    config.cacheSize > 0
      ? new LRUCache<string, Parsed>({
          max: config.cacheSize,
          maxSize: MAX_CACHE_BYTES,
          sizeCalculation: (_, key) => key.length + ENTRY_OVERHEAD,
        })
      : undefined;
  const headerNames = Object.freeze([...new Set([header, chainHeader, verifyHeader?.name].filter((n) => n !== undefined))]);

  function read(headers: NodeJS.Dict<string[]>, peer: string | undefined, connection?: ConnectionCertificates): CertificateResult {
    const values = headers[header];
    const chainValues = chainHeader === undefined ? undefined : headers[chainHeader];
    const verifyValues = verifyHeader === undefined ? undefined : headers[verifyHeader.name];
    if (values === undefined && chainValues === undefined && verifyValues === undefined) return NO_CERTIFICATE;
    if (!trusted(peer)) {
      if (rejectUntrusted) {
        throw new GatewayError('certificate_header_untrusted', 'client certificate header from a peer outside trusted_proxies');
      }
      return UNTRUSTED_IGNORED;
    }
    const value = single(values, header);
    const chainValue = single(chainValues, chainHeader);
    if (verifyHeader !== undefined) {
      const verdict = single(verifyValues, verifyHeader.name);
      if (verdict === undefined || !verifySuccess.has(verdict)) return notVerified(verifyHeader.name, verdict);
    }
    if (value === undefined || isNoCertificateValue(value)) return NO_CERTIFICATE;
    if (value.length + (chainValue?.length ?? 0) > maxHeaderBytes) {
      throw malformed(`client certificate header larger than ${maxHeaderBytes} bytes`);
    }
    // A header value never holds a line break, so this key cannot be forged from another pair.
    const key = chainValue === undefined ? value : `${value}\n${chainValue}`;
    // The value a connection (a load balancer's) sent last, with what it parsed to: kept on the connection while the LRU is on.
    const last = connection?.lastHeader;
    let parsed = last?.reader === self && last.key === key ? (last.parsed as Parsed) : cache?.get(key);
    if (parsed === undefined) {
      parsed = parse(value, chainValue);
      cache?.set(key, parsed);
    }
    if (cache && connection !== undefined && last?.parsed !== parsed) connection.lastHeader = { reader: self, key, parsed };
    if ('error' in parsed) throw parsed.error;
    if (checkTime && parsed.window !== undefined) checkValidity(parsed.window, clock());
    return parsed.result;
  }

  const self: HeaderCertificateReader = { read, headerNames };
  return self;
}

/** The one value of a header that may appear once; undefined when absent. */
function single(values: string[] | undefined, name: string | undefined): string | undefined {
  if (values === undefined) return undefined;
  if (values.length > 1) throw new GatewayError('certificate_header_repeated', `header ${name} sent more than once`);
  return values[0];
}

const PRINTABLE = /[^\x20-\x7e]/g;

function notVerified(name: string, verdict: string | undefined): CertificateResult {
  const shown = verdict === undefined ? `no ${name} header` : verdict.replace(PRINTABLE, '?').slice(0, 100);
  return Object.freeze({ present: false, why: `load balancer did not verify the client certificate (${shown})` });
}

function createParser(config: ClientCertificateConfig, verify: CertificateVerifier): (value: string, chain: string | undefined) => Parsed {
  const options: FormatOptions = { format: config.format, encoded: config.encoded, xfccElement: config.xfccElement, xfccMaxElements: config.xfccMaxElements };
  return (value, chainValue) => {
    try {
      const decoded = decodeCertificates(options, value, chainValue);
      if (decoded.kind === 'none') return { result: Object.freeze({ present: false, why: decoded.why }) };
      const x509 = certificate(decoded.leaf, 'client certificate');
      const chain = decoded.chain.map((der, i) => certificate(der, `chain certificate #${i + 1}`));
      const window = verify(x509, chain);
      const result = Object.freeze({ present: true, certificate: new ClientCertificate(x509) });
      return { result, window };
    } catch (e) {
      if (e instanceof GatewayError) return { error: e };
      throw e;
    }
  };
}

/** Exactly one DER certificate: OpenSSL ignores bytes after it and would also take PEM text. */
function certificate(der: Buffer, what: string): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch {
    throw malformed(`${what} is not a valid X.509 certificate`);
  }
  if (!x509.raw.equals(der)) throw malformed(`${what} is not exactly one DER certificate`);
  return x509;
}
