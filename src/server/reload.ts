import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { Gateway } from '../gateway.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { summarize, logFields, type CertificateSummary } from './certificates.js';
import type { Generations } from './generations.js';
import { watchFiles, type FileWatch } from './watch.js';

/**
 * Keys a running process cannot apply. The reload keeps their running values (and says so);
 * turning TLS on or off changes what the rest of the config means, so that reload is refused.
 */
export function keepRestartOnly(running: Config, next: Config): { config: Config; ignored: string[] } {
  if (Boolean(running.listen.tls) !== Boolean(next.listen.tls)) {
    throw new ConfigError([`listen.tls: turning TLS ${next.listen.tls ? 'on' : 'off'} needs a restart`]);
  }
  const ignored: string[] = [];
  if (running.listen.host !== next.listen.host) ignored.push('listen.host');
  if (running.listen.port !== next.listen.port) ignored.push('listen.port');
  if (running.listen.maxHeaderBytes !== next.listen.maxHeaderBytes) ignored.push('listen.max_header_bytes');
  if (running.admin.host !== next.admin.host) ignored.push('admin.host');
  if (running.admin.port !== next.admin.port) ignored.push('admin.port');
  if (running.logging.flushIntervalMs !== next.logging.flushIntervalMs) ignored.push('logging.flush_interval_ms');
  // The shared store is the process's, connected at start.
  if (JSON.stringify(running.sharedState ?? null) !== JSON.stringify(next.sharedState ?? null)) ignored.push('shared_state');
  if (ignored.length === 0) return { config: next, ignored };
  const { host, port, maxHeaderBytes } = running.listen;
  const { sharedState: _next, ...rest } = next;
  return {
    config: Object.freeze({
      ...rest,
      listen: { ...next.listen, host, port, maxHeaderBytes },
      // The revocation secret may change on reload; the address may not.
      admin: { ...next.admin, host: running.admin.host, port: running.admin.port },
      logging: { ...next.logging, flushIntervalMs: running.logging.flushIntervalMs },
      ...(running.sharedState ? { sharedState: running.sharedState } : {}),
    }),
    ignored,
  };
}

/** What a reload built, checked, and is about to swap in. */
export interface Prepared {
  readonly config: Config;
  readonly next: Gateway;
  readonly certificates: CertificateSummary;
}

export interface ReloadOptions {
  /** Where the config came from. Absent: the config given is final and reload does nothing. */
  readonly configPath?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly generations: Generations;
  /** Compiles a config, taking over what it may of the running gateway. */
  readonly compile: (config: Config, previous: Gateway) => Gateway;
  /** Applies what the listeners and the logger take from a config (cannot fail), just before the swap. */
  readonly commit: (prepared: Prepared) => void;
  readonly draining: () => boolean;
}

export interface Reloader {
  /** Resolves true when the new config serves, false when the old one still does. Serialized. */
  reload(trigger?: string): Promise<boolean>;
  /** Stops watching and retrying; resolves once a reload under way is done. */
  stop(): Promise<void>;
}

/** How long a reload waits for the new gateway to load what it needs (the JWKS, CRLs) before judging it. */
const readyWaitMs = (config: Config): number => {
  const revocation = config.clientCertificate.revocation;
  const crl = revocation.mode === 'off' ? 0 : (revocation.crl?.timeoutMs ?? 0);
  return Math.max(config.authorizationServer?.timeoutMs ?? 0, crl) + 500;
};
/** A reload refused because the new gateway could not get ready is tried again after this long. */
const RETRY_UNREADY_MS = 30_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function becomesReady(gateway: Gateway, withinMs: number): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  while (!gateway.ready()) {
    if (performance.now() >= deadline) return false;
    await sleep(25);
  }
  return true;
}

/** Reload on demand (SIGHUP, file changes, a retry): build and check everything first, then swap in one step. */
export function createReloader(o: ReloadOptions): Reloader {
  let retryUnready: NodeJS.Timeout | undefined;
  let watch: FileWatch | undefined;
  let reloading: Promise<boolean> = Promise.resolve(true);

  /** Everything that can fail, done before anything changes. Throws ConfigError or whatever TLS rejects. */
  async function prepare(path: string): Promise<Prepared & { ignored: string[] }> {
    const running = o.generations.current();
    const { config, ignored } = keepRestartOnly(running.config, loadConfig(path, o.env));
    const certificates = summarize(config);
    const next = o.compile(config, running);
    next.start();
    if (!(await becomesReady(next, readyWaitMs(config))) && running.ready()) {
      await next.close();
      retryUnready ??= setTimeout(() => void reload('retry'), RETRY_UNREADY_MS).unref();
      throw new ConfigError(['the new configuration could not load the token validation keys (JWKS); retrying in 30 s']);
    }
    return { config, next, certificates, ignored };
  }

  async function run(trigger: string): Promise<boolean> {
    if (!o.configPath || o.draining()) return false;
    clearTimeout(retryUnready);
    retryUnready = undefined;
    let prepared: Awaited<ReturnType<typeof prepare>>;
    try {
      prepared = await prepare(o.configPath);
    } catch (error) {
      o.metrics.reloads.inc({ result: 'failure' });
      const problems = error instanceof ConfigError ? error.problems : [String(error)];
      o.log.error({ msg: 'reload failed; keeping the running configuration', trigger, problems });
      return false;
    }
    const { config, next, certificates, ignored } = prepared;
    if (o.draining()) {
      await next.close();
      return false;
    }
    if (ignored.length > 0) o.log.warn({ msg: 'reload: these keys need a restart; their running values stay', keys: ignored });
    // Committing: nothing below throws.
    o.commit(prepared);
    const previous = o.generations.swap(next);
    if (next.tokens !== previous.tokens) o.metrics.cacheEntries.set(0); // a new validator starts with an empty cache
    o.metrics.reloads.inc({ result: 'success' });
    o.log.info({ msg: 'reloaded', trigger, config: config.source, routes: config.routes.length, ...logFields(certificates) });
    rewatch();
    return true;
  }

  function reload(trigger = 'request'): Promise<boolean> {
    const next = (): Promise<boolean> => run(trigger);
    reloading = reloading.then(next, next);
    return reloading;
  }

  function rewatch(): void {
    watch?.close();
    watch = undefined;
    const { config } = o.generations.current();
    if (!o.configPath || !config.reload.watch || o.draining()) return;
    watch = watchFiles([o.configPath, ...config.files], {
      debounceMs: config.reload.debounceMs,
      onChange: () => void reload('file change'),
      onError: (dir, error) => o.log.warn({ msg: 'cannot watch directory for reload', dir, err: String(error) }),
    });
  }
  rewatch();

  return {
    reload,
    async stop() {
      watch?.close();
      watch = undefined;
      clearTimeout(retryUnready);
      await reloading;
    },
  };
}
