import { createSecureContext } from 'node:tls';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import HttpProxy from 'http-proxy';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config, LoadedFile } from '../config/types.js';
import { compileGateway, type Gateway } from '../gateway.js';
import { exchange, handleUpgrade, type Observers } from '../pipeline.js';
import { createAdminServer, type Readiness } from './admin.js';
import { logFields, summarize, type CertificateSummary } from './certificates.js';
import { createAccessLog } from '../observability/logger.js';
import { trackConnections } from './drain.js';
import { applyTimeouts, createTrafficServer, listen, secureContextOptions } from './listeners.js';
import { guardTraffic } from './guard.js';
import { refusedUpgradeHeaders, switchingProtocolsHeaders } from '../forward/headers.js';
import { watchFiles, type FileWatch } from './watch.js';

export interface RuntimeOptions extends Omit<Observers, 'access'> {
  /** Where the config came from; reload re-reads it. Absent: the config given is final. */
  readonly configPath?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly clock?: () => number;
}

export interface Runtime {
  readonly trafficAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  current(): Gateway;
  ready(): boolean;
  readiness(): Readiness;
  /**
   * Builds and validates the config again; swaps it in only when valid. `trigger` says why,
   * for the log. Resolves true when the new config serves, false when the old one still does.
   */
  reload(trigger?: string): Promise<boolean>;
  /** Readiness false, stop accepting, let in-flight requests finish within the grace period. */
  shutdown(): Promise<void>;
}

/** Every file the config reads: a change to any of them triggers a reload. */
export function referencedFiles(config: Config): string[] {
  const files: (LoadedFile | undefined)[] = [
    config.listen.tls?.cert,
    config.listen.tls?.key,
    config.listen.tls?.clientCa,
    config.clientCertificate.verify.ca,
    config.authorizationServer?.privateKey,
    config.authorizationServer?.clientCert,
    config.authorizationServer?.clientKey,
    config.authorizationServer?.ca,
  ];
  return files.filter((f): f is LoadedFile => f !== undefined).map((f) => f.path);
}

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
  if (ignored.length === 0) return { config: next, ignored };
  const { host, port, maxHeaderBytes } = running.listen;
  return {
    config: Object.freeze({
      ...next,
      listen: { ...next.listen, host, port, maxHeaderBytes },
      admin: running.admin,
      logging: { ...next.logging, flushIntervalMs: running.logging.flushIntervalMs },
    }),
    ignored,
  };
}

/** How long a reload waits for the new gateway to load what it needs (the JWKS) before judging it. */
const readyWaitMs = (config: Config): number => (config.authorizationServer?.timeoutMs ?? 0) + 500;
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

export async function startRuntime(initial: Config, options: RuntimeOptions): Promise<Runtime> {
  const { metrics, log } = options;
  const observers: Observers = { metrics, log, access: createAccessLog(log) };
  const compile = (config: Config, previous?: Gateway): Gateway =>
    compileGateway(config, { metrics, log, ...(options.clock ? { clock: options.clock } : {}), ...(previous ? { previous } : {}) });

  const exposeCertificates = (summary: CertificateSummary): void => {
    metrics.certificateExpiry.reset();
    if (summary.serving) metrics.certificateExpiry.set({ certificate: 'serving' }, summary.serving.notAfter);
    if (summary.clientCa) metrics.certificateExpiry.set({ certificate: 'client_ca' }, summary.clientCa.earliestNotAfter);
  };
  const initialCertificates = summarize(initial);
  let gateway = compile(initial);
  exposeCertificates(initialCertificates);
  let draining = false;
  let listening = false;

  // A gateway replaced by a reload is closed (pools, token client) once its last request ends.
  const holds = new Map<Gateway, number>();
  const retiring = new Set<Gateway>();
  const hold = (g: Gateway): void => void holds.set(g, (holds.get(g) ?? 0) + 1);
  const release = (g: Gateway): void => {
    const left = (holds.get(g) ?? 1) - 1;
    if (left > 0) return void holds.set(g, left);
    holds.delete(g);
    if (retiring.delete(g)) void g.close();
  };
  const retire = (g: Gateway): void => {
    if (holds.has(g)) retiring.add(g);
    else void g.close();
  };

  // Handlers still running: a handler outlives its response by its access-log line, and
  // shutdown waits for that too. A count, not a set of promises: this runs on every request.
  let handling = 0;
  let allHandled: (() => void) | undefined;
  const handled = (): void => {
    if (--handling === 0) allHandled?.();
  };
  const traffic = createTrafficServer(initial, (req, res) => {
    try {
      // The gateway is read once: a reload during this request does not change its rules.
      const current = gateway;
      hold(current);
      handling++;
      const request = exchange(req, res, current, observers, handled);
      connections.track(req, res, request, () => release(current));
    } catch (bug) {
      // A bug here must cost one request, not the process and every request in flight.
      metrics.uncaughtErrors.inc();
      log.error({ msg: 'request handler failed', err: bug instanceof Error ? { message: bug.message, stack: bug.stack } : String(bug) });
      res.destroy();
    }
  });
  const connections = trackConnections(traffic, initial.listen.tls !== undefined, {
    sendTimeoutMs: () => gateway.config.listen.sendTimeoutMs,
    onLimit: (kind) => metrics.clientErrors.inc({ kind }),
  });
  guardTraffic(traffic, { metrics, mayAnswer: connections.mayAnswer, afterResponses: connections.afterResponses });
  const proxy = HttpProxy.createProxyServer({ ws: true });
  proxy.on('error', () => undefined);
  // http-proxy writes the upstream's answer to an upgrade (a 101, or a refusal) as it got it; these
  // listeners run before its own and clean the headers first, as on the HTTP path.
  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
    const interactionId = req.headers['x-fapi-interaction-id'];
    proxyReq.on('upgrade', (proxyRes: IncomingMessage) => void (proxyRes.headers = switchingProtocolsHeaders(proxyRes.headers, interactionId)));
    proxyReq.on('response', (proxyRes: IncomingMessage) => void (proxyRes.headers = refusedUpgradeHeaders(proxyRes.headers, interactionId)));
  });
  // Upgraded (WebSocket) sockets leave the HTTP server's connection tracking: track them here.
  const tunnels = new Set<Duplex>();
  traffic.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    if (socket.destroyed) return; // pipelined behind requests still under way: refused by the tracker
    // Node drops its own error listener from an upgraded socket: without one, a reset while the
    // request is being checked would be an unhandled 'error' event and take the process down.
    socket.on('error', () => socket.destroy());
    tunnels.add(socket);
    socket.once('close', () => tunnels.delete(socket));
    const current = gateway;
    hold(current);
    handleUpgrade(req, socket, head, current, observers, proxy)
      .catch(() => socket.destroy())
      .finally(() => release(current));
  });

  const readiness = (): Readiness => {
    if (!listening) return { ready: false, reason: 'starting' };
    if (draining) return { ready: false, reason: 'draining' };
    if (!gateway.ready()) return { ready: false, reason: 'token validation keys (JWKS) not loaded' };
    return { ready: true };
  };
  const admin = createAdminServer(metrics, { readiness });

  try {
    await listen(admin, initial.admin.port, initial.admin.host);
    await listen(traffic, initial.listen.port, initial.listen.host);
  } catch (error) {
    admin.close();
    traffic.close();
    await gateway.close();
    throw error;
  }
  listening = true;
  log.info({
    msg: 'started',
    traffic: traffic.address(),
    admin: admin.address(),
    config: initial.source,
    routes: initial.routes.length,
    token_validation: initial.authorizationServer ? initial.tokenValidation : 'none',
    ...logFields(initialCertificates),
  });

  let retryUnready: NodeJS.Timeout | undefined;
  /** Everything that can fail, done before anything changes. Throws ConfigError or whatever TLS rejects. */
  async function prepare(path: string): Promise<{ config: Config; next: Gateway; certificates: CertificateSummary; ignored: string[] }> {
    const { config, ignored } = keepRestartOnly(gateway.config, loadConfig(path, options.env ?? process.env));
    // Key and certificate that don't match, or an unreadable CA bundle, fail here rather than on handshakes.
    if (config.listen.tls) createSecureContext(secureContextOptions(config.listen.tls));
    const certificates = summarize(config);
    const next = compile(config, gateway);
    if (!(await becomesReady(next, readyWaitMs(config))) && gateway.ready()) {
      await next.close();
      retryUnready ??= setTimeout(() => void reload('retry'), RETRY_UNREADY_MS).unref();
      throw new ConfigError(['the new configuration could not load the token validation keys (JWKS); retrying in 30 s']);
    }
    return { config, next, certificates, ignored };
  }

  let reloading: Promise<boolean> = Promise.resolve(true);
  function reload(trigger = 'request'): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (!options.configPath || draining) return false;
      clearTimeout(retryUnready);
      retryUnready = undefined;
      let prepared: Awaited<ReturnType<typeof prepare>>;
      try {
        prepared = await prepare(options.configPath);
      } catch (error) {
        metrics.reloads.inc({ result: 'failure' });
        const problems = error instanceof ConfigError ? error.problems : [String(error)];
        log.error({ msg: 'reload failed; keeping the running configuration', trigger, problems });
        return false;
      }
      const { config, next, certificates, ignored } = prepared;
      if (draining) {
        await next.close();
        return false;
      }
      if (ignored.length > 0) log.warn({ msg: 'reload: these keys need a restart; their running values stay', keys: ignored });
      // Committing: nothing below throws. Open connections keep their TLS session; new handshakes get the new context.
      if (config.listen.tls) (traffic as HttpsServer).setSecureContext(secureContextOptions(config.listen.tls));
      applyTimeouts(traffic, config.listen);
      log.level = config.logging.level;
      const previous = gateway;
      gateway = next;
      retire(previous);
      exposeCertificates(certificates);
      if (next.tokens !== previous.tokens) metrics.cacheEntries.set(0); // a new validator starts with an empty cache
      metrics.reloads.inc({ result: 'success' });
      log.info({ msg: 'reloaded', trigger, config: config.source, routes: config.routes.length, ...logFields(certificates) });
      rewatch();
      return true;
    };
    // Serialized: a reload asked for while one runs starts after it.
    reloading = reloading.then(run, run);
    return reloading;
  }

  let watch: FileWatch | undefined;
  function rewatch(): void {
    watch?.close();
    watch = undefined;
    if (!options.configPath || !gateway.config.reload.watch || draining) return;
    watch = watchFiles([options.configPath, ...referencedFiles(gateway.config)], {
      debounceMs: gateway.config.reload.debounceMs,
      onChange: () => void reload('file change'),
      onError: (dir, error) => log.warn({ msg: 'cannot watch directory for reload', dir, err: String(error) }),
    });
  }
  rewatch();

  let stopping: Promise<void> | undefined;
  function shutdown(): Promise<void> {
    stopping ??= (async () => {
      draining = true;
      watch?.close();
      clearTimeout(retryUnready);
      const graceSeconds = gateway.config.shutdown.gracePeriodSeconds;
      log.info({ msg: 'draining', in_flight: connections.inFlight(), tunnels: tunnels.size, grace_period_seconds: graceSeconds });
      const drained = await connections.drain(graceSeconds * 1000);
      if (!drained) log.warn({ msg: 'grace period over; closing what is left', in_flight: connections.inFlight(), tunnels: tunnels.size });
      // Responses are done; let their handlers record them (bounded: a handler never waits on a closed client for long).
      if (handling > 0) await Promise.race([new Promise<void>((resolve) => (allHandled = resolve)), sleep(1000)]);
      for (const socket of tunnels) socket.destroy();
      proxy.close();
      const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await adminClosed;
      await reloading;
      await Promise.allSettled([gateway, ...retiring].map((g) => g.close()));
      log.info({ msg: 'stopped', drained });
    })();
    return stopping;
  }

  return {
    trafficAddress: traffic.address() as AddressInfo,
    adminAddress: admin.address() as AddressInfo,
    current: () => gateway,
    ready: () => readiness().ready,
    readiness,
    reload,
    shutdown,
  };
}
