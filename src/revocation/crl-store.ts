// The CRLs certbound holds (RFC 5280 §6.3): read from files at start, fetched from configured URLs
// and from the leaves' distribution points, refreshed in the background, asked per certificate.
import type { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { crlDistributionPointsOf, fetchCrl, readCrl, type Crl } from './crl.js';
import { isRevocationError, serialKey, type RevocationFailure } from './types.js';

export type CrlVerdict =
  | { readonly status: 'good' | 'revoked'; readonly thisUpdate: number; readonly nextUpdate?: number }
  | { readonly status: 'unavailable'; readonly why: string };

export interface CrlSourceState {
  /** URL or file path */
  readonly source: string;
  readonly nextUpdate?: number;
  readonly entries: number;
}

export interface CrlStoreOptions {
  /** Read by the config loader, PEM or DER. */
  readonly files: readonly { readonly path: string; readonly contents: Buffer }[];
  /** Configured, in addition to each certificate's distribution points. */
  readonly urls: readonly string[];
  readonly issuers: readonly X509Certificate[];
  /** Refresh every this long (> 0), and always before nextUpdate. */
  readonly refreshSeconds: number;
  readonly timeoutMs: number;
  /** Default true. */
  readonly useDistributionPoints?: boolean;
  readonly clock?: () => number;
  /**
   * Called once per fetch or file read, for metrics/logs: 'ok' when the CRL read is now the one
   * held, 'stale' when it was older than the one held (which is kept), else the RevocationError reason.
   */
  readonly onLoad?: (source: string, outcome: 'ok' | RevocationFailure, durationMs: number) => void;
}

export interface CrlStore {
  /** Loads files now (synchronously) and fetches the URLs in the background; schedules refreshes. */
  start(): void;
  /** True once every configured source has been tried once (success or failure). */
  ready(): boolean;
  /**
   * The verdict for one (chain-verified) certificate; a Promise only when a distribution point of
   * the leaf has never been fetched (single flight per URL: concurrent callers share one fetch).
   */
  check(leaf: X509Certificate, issuer: X509Certificate): CrlVerdict | Promise<CrlVerdict>;
  sources(): readonly CrlSourceState[];
  /** Clears every timer and aborts fetches in flight; idempotent. */
  close(): void;
}

/**
 * Distribution point URLs learnt from leaves are kept at most this many, least recently asked
 * evicted first (with its timer): certificates naming ever new URLs cannot grow the store or the
 * number of background fetches without limit.
 */
export const MAX_DISCOVERED_URLS = 256;

/** Leaves whose distribution points are remembered (by fingerprint): parsing them costs ~0.4 ms, a lookup ~1 µs. */
const MAX_REMEMBERED_LEAVES = 4096;

/** A refresh comes this share of the time left before nextUpdate ahead of it, bounded below and above. */
const REFRESH_MARGIN = 0.1;
const MIN_MARGIN_MS = 1000;
const MAX_MARGIN_MS = 5 * 60 * 1000;
/** After a failure, retry after 1 s, doubling up to refreshSeconds; no fetch sooner than 1 s (unless refreshSeconds is). */
const MIN_DELAY_MS = 1000;
/** setTimeout fires at once beyond this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long until a URL is fetched again, `timeLeftMs` before the nextUpdate of the CRL it holds.
 * After a fresh CRL (`failures` 0): refreshMs, but a margin (10 % of the time left, 1 s to 5 min)
 * before nextUpdate. After `failures` failed (or stale) fetches in a row: 1 s doubling up to
 * refreshMs, and still before the held CRL's nextUpdate while it has not passed.
 */
export function refreshDelayMs(refreshMs: number, failures: number, timeLeftMs = Infinity): number {
  const margin = Math.min(MAX_MARGIN_MS, Math.max(MIN_MARGIN_MS, timeLeftMs * REFRESH_MARGIN));
  const beforeNextUpdate = timeLeftMs > 0 ? timeLeftMs - margin : Infinity;
  const backoff = failures > 0 ? MIN_DELAY_MS * 2 ** (failures - 1) : Infinity;
  return Math.min(MAX_TIMER_MS, refreshMs, Math.max(MIN_DELAY_MS, Math.min(beforeNextUpdate, backoff)));
}

interface Source {
  readonly name: string;
  /** file: read once; url: configured; point: a leaf's distribution point. */
  readonly kind: 'file' | 'url' | 'point';
  crl?: Crl;
  /** The latest failure; cleared by a success. */
  failure?: RevocationFailure;
  tried: boolean;
  /** Settles once the first read or fetch is done (never rejects). */
  first: Promise<void>;
  failures: number;
  timer?: NodeJS.Timeout;
}

type Outcome = 'ok' | RevocationFailure;

const unavailable = (why: string): CrlVerdict => ({ status: 'unavailable', why });
const failureOf = (error: unknown): RevocationFailure => (isRevocationError(error) ? error.reason : 'malformed');
const timesOf = (crl: Crl): { thisUpdate: number; nextUpdate?: number } =>
  crl.nextUpdate === undefined ? { thisUpdate: crl.thisUpdate } : { thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate };

export function createCrlStore(options: CrlStoreOptions): CrlStore {
  const clock = options.clock ?? Date.now;
  const refreshMs = options.refreshSeconds * 1000;
  const useDistributionPoints = options.useDistributionPoints ?? true;
  const configured = new Map<string, Source>();
  const points = new LRUCache<string, Source>({ max: MAX_DISCOVERED_URLS, dispose: (source) => clearTimeout(source.timer) });
  const leafPoints = new LRUCache<string, readonly string[]>({ max: MAX_REMEMBERED_LEAVES });
  const abort = new AbortController();
  let started = false;
  let closed = false;

  const all = (): Source[] => [...configured.values(), ...points.values()];

  function report(source: Source, outcome: Outcome, since: number): void {
    try {
      options.onLoad?.(source.name, outcome, performance.now() - since);
    } catch {
      // A metrics or log callback must not stop the store from loading.
    }
  }

  /** Holds `crl` unless it is older than the one held: no rollback to an older CRL. */
  function accept(source: Source, crl: Crl): Outcome {
    if (source.crl !== undefined && crl.thisUpdate < source.crl.thisUpdate) return 'stale';
    source.crl = crl;
    source.failure = undefined;
    return 'ok';
  }

  function readFile(source: Source, contents: Buffer): void {
    const since = performance.now();
    let outcome: Outcome;
    try {
      outcome = accept(source, readCrl(contents, options.issuers));
    } catch (error) {
      outcome = source.failure = failureOf(error);
    }
    source.tried = true;
    report(source, outcome, since);
  }

  async function fetchInto(source: Source): Promise<void> {
    const since = performance.now();
    let outcome: Outcome;
    try {
      const bytes = await fetchCrl(source.name, { timeoutMs: options.timeoutMs, signal: abort.signal });
      outcome = accept(source, readCrl(bytes, options.issuers));
    } catch (error) {
      outcome = source.failure = failureOf(error);
    }
    source.tried = true;
    if (closed) return; // aborted by close(): nothing failed, and nothing is to be scheduled
    report(source, outcome, since);
    schedule(source, outcome === 'ok');
  }

  function urlSource(name: string, kind: 'url' | 'point'): Source {
    const source: Source = { name, kind, tried: false, first: Promise.resolve(), failures: 0 };
    source.first = fetchInto(source);
    return source;
  }

  /** The next fetch of a URL, after a load that gave a CRL now held (`loaded`) or not. */
  function schedule(source: Source, loaded: boolean): void {
    if (source.kind === 'point' && points.peek(source.name) !== source) return; // evicted meanwhile
    const held = source.crl;
    const left = held?.nextUpdate === undefined ? Infinity : held.nextUpdate - clock();
    source.failures = loaded && left > 0 ? 0 : source.failures + 1; // a stale CRL counts as a failure
    source.timer = setTimeout(() => void fetchInto(source), refreshDelayMs(refreshMs, source.failures, left));
    source.timer.unref();
  }

  /** The source of a leaf's distribution point, fetched now when it is new. */
  function pointSource(url: string): Source {
    const known = configured.get(url) ?? points.get(url);
    if (known !== undefined) return known;
    const source = urlSource(url, 'point');
    points.set(url, source);
    return source;
  }

  function pointsOf(leaf: X509Certificate): readonly string[] {
    const fingerprint = leaf.fingerprint256;
    let uris = leafPoints.get(fingerprint);
    if (uris === undefined) leafPoints.set(fingerprint, (uris = crlDistributionPointsOf(leaf)));
    return uris;
  }

  function verdict(leaf: X509Certificate, issuer: X509Certificate, uris: () => readonly string[]): CrlVerdict {
    const fingerprint = issuer.fingerprint256;
    const serial = serialKey(leaf.serialNumber);
    const now = clock();
    let fresh: Crl | undefined;
    let stale = false;
    let failed: RevocationFailure | undefined;
    for (const source of all()) {
      const crl = source.crl;
      if (crl === undefined) {
        // A URL that may hold this issuer's CRL but could not be fetched yet.
        if (source.failure !== undefined && (source.kind === 'url' || (source.kind === 'point' && uris().includes(source.name)))) failed ??= source.failure;
        continue;
      }
      if (crl.issuer.fingerprint256 !== fingerprint) continue;
      if (crl.scope !== undefined && !crl.scope.some((uri) => uris().includes(uri))) continue; // another partition
      if (crl.has(serial)) return { status: 'revoked', ...timesOf(crl) };
      if (crl.nextUpdate !== undefined && crl.nextUpdate <= now) stale = true;
      else if (fresh === undefined || crl.thisUpdate > fresh.thisUpdate) fresh = crl;
    }
    if (fresh !== undefined) return { status: 'good', ...timesOf(fresh) };
    if (stale) return unavailable('CRL past nextUpdate');
    if (failed !== undefined) return unavailable(`fetch failed: ${failed}`);
    return unavailable('no CRL for this issuer');
  }

  return {
    start() {
      if (started || closed) return;
      started = true;
      for (const file of options.files) {
        if (configured.has(file.path)) continue;
        const source: Source = { name: file.path, kind: 'file', tried: false, first: Promise.resolve(), failures: 0 };
        configured.set(file.path, source);
        readFile(source, file.contents);
      }
      for (const url of options.urls) {
        if (!configured.has(url)) configured.set(url, urlSource(url, 'url'));
      }
    },
    ready: () => started && [...configured.values()].every((source) => source.tried),
    check(leaf, issuer) {
      try {
        const uris = (): readonly string[] => pointsOf(leaf);
        const waiting = useDistributionPoints && !closed ? uris().map(pointSource).filter((source) => !source.tried) : [];
        if (waiting.length === 0) return verdict(leaf, issuer, uris);
        return Promise.all(waiting.map((source) => source.first))
          .then(() => verdict(leaf, issuer, uris))
          .catch((error: unknown) => unavailable(`error: ${failureOf(error)}`));
      } catch (error) {
        return unavailable(`error: ${failureOf(error)}`);
      }
    },
    sources: () =>
      all().map((source): CrlSourceState => {
        const crl = source.crl;
        if (crl === undefined) return { source: source.name, entries: 0 };
        return crl.nextUpdate === undefined ? { source: source.name, entries: crl.size } : { source: source.name, nextUpdate: crl.nextUpdate, entries: crl.size };
      }),
    close() {
      if (closed) return;
      closed = true;
      abort.abort();
      for (const source of all()) clearTimeout(source.timer);
    },
  };
}
