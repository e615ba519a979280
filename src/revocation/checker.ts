import type { X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { RevocationConfig, RevocationSource } from '../config/types.js';
import type { ClientCertificate } from '../certificate/types.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { createCrlStore, type CrlStore, type CrlVerdict } from './crl-store.js';
import { buildOcspRequest, ocspUrlOf, queryOcsp, readOcspResponse } from './ocsp.js';
import { isRevocationError, type SourceAnswer } from './types.js';

/**
 * The revocation stage: is this client certificate revoked? Answers are cached by thumbprint until
 * they expire (min(nextUpdate, now + max_cache_seconds)), so the common request is a Map lookup
 * and no promise. Concurrent first uses of one certificate share one lookup (single flight); a
 * busy certificate is looked up again in the background before its answer expires, so it never
 * waits on a responder after its first request. Sources are asked in `order`; a definite answer
 * (good or revoked) from one is final; `unknown` and failures pass to the next.
 */

export interface RevocationChecker {
  /** Returns when the certificate may pass; throws (or rejects with) GatewayError certificate_revoked or revocation_unavailable. */
  check(certificate: ClientCertificate): void | Promise<void>;
  /** Loads CRL files, fetches CRL URLs in the background. */
  start(): void;
  /** Every configured CRL source has been tried once. */
  ready(): boolean;
  close(): void;
}

type Verdict =
  | { readonly status: 'good' | 'revoked'; readonly source: RevocationSource; readonly expiresAt: number }
  | { readonly status: 'unavailable'; readonly why: string; readonly expiresAt: number };

interface Entry {
  verdict: Verdict;
  /** When a background lookup starts (the entry's answer still holds until it ends). */
  refreshAt: number;
  pending?: Promise<Verdict> | undefined;
  /** The CRL generation a CRL-based answer was read from: a newly loaded CRL makes it stale. */
  crlGeneration?: number;
}

/** "No answer" is remembered this long, so a down responder is not asked on every request. */
export const UNAVAILABLE_TTL_MS = 5000;
/** A cached answer is looked up again once this share of its lifetime has passed. */
const REFRESH_AT = 0.8;

export interface RevocationDeps {
  readonly metrics: Metrics;
  readonly log?: Logger;
  readonly clock?: () => number;
}

type Enabled = Exclude<RevocationConfig, { mode: 'off' }>;

export function createRevocationChecker(config: Enabled, deps: RevocationDeps): RevocationChecker {
  const clock = deps.clock ?? Date.now;
  const { metrics, log } = deps;
  const maxCacheMs = (config.ocsp?.maxCacheSeconds ?? 3600) * 1000;
  const issuers = config.issuers.certificates;
  let crlGeneration = 0;
  const crls: CrlStore | undefined = config.crl
    ? createCrlStore({
        files: config.crl.files,
        urls: config.crl.urls,
        issuers,
        refreshSeconds: config.crl.refreshSeconds,
        timeoutMs: config.crl.timeoutMs,
        useDistributionPoints: config.crl.useDistributionPoints,
        clock,
        onLoad: (source, outcome, durationMs) => {
          if (outcome === 'ok') crlGeneration++;
          metrics.revocationDuration.observe({ source: 'crl' }, durationMs / 1000);
          metrics.crlLoads.inc({ result: outcome === 'ok' ? 'success' : 'error' });
          if (outcome !== 'ok') log?.warn({ msg: 'CRL could not be loaded', source, reason: outcome, durationMs });
        },
      })
    : undefined;
  const cache = new LRUCache<string, Entry>({ max: config.cacheEntries });
  const view = { cacheEntries: () => cache.size, crlSources: () => crls?.sources() ?? [] };
  metrics.revocationViews.add(view);

  /** The issuer of `leaf` among the configured ones, found by name and verified by signature. */
  const issuerOf = (leaf: X509Certificate): X509Certificate | undefined => issuers.find((i) => leaf.checkIssued(i) && leaf.verify(i.publicKey));

  const timed = <T>(source: RevocationSource, run: () => Promise<T>): Promise<T> => {
    const end = metrics.revocationDuration.startTimer({ source });
    return run().finally(() => end());
  };

  async function askOcsp(leaf: X509Certificate, issuer: X509Certificate): Promise<SourceAnswer> {
    const ocsp = config.ocsp;
    const url = ocsp?.url ?? ocspUrlOf(leaf);
    if (!ocsp || url === undefined) throw new GatewayError('revocation_unavailable', 'no OCSP URL');
    const request = buildOcspRequest(leaf, issuer, { nonce: ocsp.nonce });
    const der = await timed('ocsp', () => queryOcsp(url, request, { timeoutMs: ocsp.timeoutMs }));
    return readOcspResponse(der, { request, issuer, now: clock(), clockSkewMs: config.clockSkewSeconds * 1000, maxAgeMs: maxCacheMs });
  }

  const expiryOf = (nextUpdate: number | undefined, now: number): number => Math.min(nextUpdate ?? Infinity, now + maxCacheMs);

  /** The CRL store's say: a verdict when it is definite, else why not (for the next source and the log). */
  function fromCrl(verdict: CrlVerdict, now: number): Verdict | string {
    const result = verdict.status === 'unavailable' ? 'error' : verdict.status;
    metrics.revocationChecks.inc({ source: 'crl', result });
    if (verdict.status === 'unavailable') return `crl: ${verdict.why}`;
    return { status: verdict.status, source: 'crl', expiresAt: expiryOf(verdict.nextUpdate, now) };
  }

  /** Asks the sources in order, from `index` on. Synchronous as long as only loaded CRLs are asked. */
  function ask(leaf: X509Certificate, issuer: X509Certificate, index: number, whys: string[]): Verdict | Promise<Verdict> {
    const source = config.order[index];
    const now = clock();
    if (source === undefined) return { status: 'unavailable', why: whys.join('; '), expiresAt: now + UNAVAILABLE_TTL_MS };
    if (source === 'crl' && crls) {
      const verdict = crls.check(leaf, issuer);
      const next = (v: CrlVerdict): Verdict | Promise<Verdict> => {
        const said = fromCrl(v, clock());
        return typeof said === 'string' ? ask(leaf, issuer, index + 1, [...whys, said]) : said;
      };
      return verdict instanceof Promise ? verdict.then(next) : next(verdict);
    }
    return askOcsp(leaf, issuer).then(
      (answer): Verdict | Promise<Verdict> => {
        metrics.revocationChecks.inc({ source: 'ocsp', result: answer.status });
        if (answer.status === 'unknown') return ask(leaf, issuer, index + 1, [...whys, 'ocsp: the responder does not know the certificate']);
        return { status: answer.status, source: 'ocsp', expiresAt: expiryOf(answer.nextUpdate, clock()) };
      },
      (error: unknown) => {
        metrics.revocationChecks.inc({ source: 'ocsp', result: 'error' });
        const why = isRevocationError(error) ? error.reason : error instanceof GatewayError ? error.description : 'error';
        return ask(leaf, issuer, index + 1, [...whys, `ocsp: ${why}`]);
      },
    );
  }

  function lookup(certificate: ClientCertificate): Verdict | Promise<Verdict> {
    const issuer = issuerOf(certificate.x509);
    if (issuer === undefined) {
      return { status: 'unavailable', why: 'no configured issuer certificate issued it (revocation.issuer_file)', expiresAt: clock() + UNAVAILABLE_TTL_MS };
    }
    return ask(certificate.x509, issuer, 0, []);
  }

  function store(key: string, verdict: Verdict, generation: number): Entry {
    const now = clock();
    const entry: Entry = { verdict, refreshAt: now + (verdict.expiresAt - now) * REFRESH_AT };
    if (verdict.status !== 'unavailable' && verdict.source === 'crl') entry.crlGeneration = generation;
    if (verdict.status === 'unavailable') {
      log?.warn({ msg: `client certificate revocation status unavailable (${config.mode})`, thumbprint: key, sources: verdict.why });
    }
    cache.set(key, entry);
    return entry;
  }

  /**
   * Starts a lookup and stores its verdict; the entry's `pending` holds it meanwhile. With `held`
   * (an answer that still holds, refreshed in the background), a lookup that finds no answer keeps
   * it and tries again later: only its expiry ends it.
   */
  function refresh(certificate: ClientCertificate, held: Entry | undefined): Verdict | Promise<Verdict> {
    const key = certificate.thumbprint;
    const generation = crlGeneration;
    const settle = (verdict: Verdict): Verdict => {
      if (held && verdict.status === 'unavailable' && clock() < held.verdict.expiresAt) {
        held.refreshAt = clock() + UNAVAILABLE_TTL_MS;
        return held.verdict;
      }
      return store(key, verdict, generation).verdict;
    };
    const found = lookup(certificate);
    if (!(found instanceof Promise)) return settle(found);
    const pending = found.then(settle, () => settle({ status: 'unavailable', why: 'lookup failed', expiresAt: clock() + UNAVAILABLE_TTL_MS }));
    if (held) held.pending = pending;
    else cache.set(key, { verdict: { status: 'unavailable', why: 'lookup in progress', expiresAt: 0 }, refreshAt: 0, pending });
    return pending;
  }

  const apply = (verdict: Verdict): void => {
    if (verdict.status === 'good') return;
    if (verdict.status === 'revoked') throw new GatewayError('certificate_revoked', 'client certificate revoked');
    if (config.mode === 'hard_fail') {
      metrics.revocationUnavailable.inc({ action: 'refused' });
      throw new GatewayError('revocation_unavailable', 'client certificate revocation status unavailable', { retryAfter: config.retryAfterSeconds });
    }
    metrics.revocationUnavailable.inc({ action: 'allowed' });
  };

  return {
    check(certificate) {
      const now = clock();
      const entry = cache.get(certificate.thumbprint);
      const fresh = entry !== undefined && now < entry.verdict.expiresAt && (entry.crlGeneration === undefined || entry.crlGeneration === crlGeneration);
      if (fresh) {
        if (now >= entry.refreshAt && entry.pending === undefined) {
          const background = refresh(certificate, entry);
          if (background instanceof Promise) void background.then(() => (entry.pending = undefined));
        }
        return apply(entry.verdict);
      }
      if (entry?.pending) return entry.pending.then(apply);
      const verdict = refresh(certificate, undefined);
      return verdict instanceof Promise ? verdict.then(apply) : apply(verdict);
    },
    start: () => crls?.start(),
    ready: () => crls?.ready() ?? true,
    close() {
      crls?.close();
      metrics.revocationViews.delete(view);
    },
  };
}
