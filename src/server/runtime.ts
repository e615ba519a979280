import { watch, type FSWatcher } from 'node:fs';
import { dirname, basename } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { Server as HttpsServer } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import HttpProxy from 'http-proxy';
import { loadConfig } from '../config/load.js';
import type { Config, LoadedFile } from '../config/types.js';
import { compileGateway, type Gateway } from '../gateway.js';
import { handle, handleUpgrade, type Observers } from '../pipeline.js';
import { createAdminServer } from './admin.js';
import { createTrafficServer, listen, secureContextOptions } from './listeners.js';

export interface RuntimeOptions extends Observers {
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
  /** Builds and validates the config again; swaps it in only when valid. */
  reload(): Promise<boolean>;
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

function earliestExpiry(pem: Buffer): number | undefined {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  const times = blocks.map((b) => new X509Certificate(b).validTo).map((t) => Date.parse(t) / 1000);
  return times.length > 0 ? Math.min(...times) : undefined;
}

export async function startRuntime(initial: Config, options: RuntimeOptions): Promise<Runtime> {
  const { metrics, log } = options;
  const observers: Observers = { metrics, log };
  const compile = (config: Config): Gateway => compileGateway(config, { metrics, log, ...(options.clock ? { clock: options.clock } : {}) });
  let gateway = compile(initial);
  let draining = false;
  let listening = false;
  const inFlight = new Set<ServerResponse>();

  const exposeExpiry = (config: Config): void => {
    const tls = config.listen.tls;
    const serving = tls ? earliestExpiry(tls.cert.contents) : undefined;
    if (serving !== undefined) metrics.certificateExpiry.set({ certificate: 'serving' }, serving);
    const ca = tls?.clientCa ?? config.clientCertificate.verify.ca;
    const clientCa = ca ? earliestExpiry(ca.contents) : undefined;
    if (clientCa !== undefined) metrics.certificateExpiry.set({ certificate: 'client_ca' }, clientCa);
  };
  exposeExpiry(initial);

  const traffic = createTrafficServer(initial, (req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    if (draining) res.setHeader('connection', 'close');
    // The gateway is read once: a reload during this request does not change its rules.
    handle(req, res, gateway, observers).catch((error: unknown) => {
      log.error({ err: String(error) }, 'request handler failed');
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  const proxy = HttpProxy.createProxyServer({ ws: true });
  proxy.on('error', () => undefined);
  // Upgraded (WebSocket) sockets leave the HTTP server's connection tracking: track them here.
  const tunnels = new Set<Duplex>();
  traffic.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    tunnels.add(socket);
    socket.once('close', () => tunnels.delete(socket));
    handleUpgrade(req, socket, head, gateway, observers, proxy).catch(() => socket.destroy());
  });
  traffic.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  const admin = createAdminServer(metrics, { ready: () => listening && !draining && gateway.ready() });

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
  log.info({ msg: 'started', traffic: traffic.address(), admin: admin.address(), config: initial.source, routes: initial.routes.length });

  let reloading: Promise<boolean> | undefined;
  async function reload(): Promise<boolean> {
    if (!options.configPath) return false;
    const configPath = options.configPath;
    const run = async (): Promise<boolean> => {
      let next: Gateway;
      try {
        const config = loadConfig(configPath, options.env ?? process.env);
        const restartNeeded = restartOnlyChanges(gateway.config, config);
        if (restartNeeded.length > 0) log.warn({ msg: 'reload: these changes need a restart and were not applied', keys: restartNeeded });
        next = compile(config);
        if (config.listen.tls && gateway.config.listen.tls) (traffic as HttpsServer).setSecureContext(secureContextOptions(config.listen.tls));
        exposeExpiry(config);
      } catch (error) {
        metrics.reloads.inc({ result: 'failure' });
        const problems = (error as { problems?: readonly string[] }).problems ?? [String(error)];
        log.error({ msg: 'reload failed; keeping the running configuration', problems });
        return false;
      }
      const previous = gateway;
      gateway = next;
      rewatch();
      metrics.reloads.inc({ result: 'success' });
      log.info({ msg: 'reloaded', config: next.config.source, routes: next.config.routes.length });
      // Requests in flight on the previous gateway keep their pools until they finish.
      setTimeout(() => void previous.close(), 30000).unref();
      return true;
    };
    // Serialize: a reload requested while one runs starts after it.
    reloading = (reloading ?? Promise.resolve(true)).then(run, run);
    return reloading;
  }

  // Watch directories, not files: Kubernetes swaps mounted ConfigMaps and Secrets by replacing
  // a `..data` symlink, which a watch on the file itself never sees.
  let watchers: FSWatcher[] = [];
  let debounce: NodeJS.Timeout | undefined;
  function rewatch(): void {
    for (const w of watchers) w.close();
    watchers = [];
    if (!options.configPath || !gateway.config.reload.watch) return;
    const files = [options.configPath, ...referencedFiles(gateway.config)];
    const dirs = new Map<string, Set<string>>();
    for (const f of files) dirs.set(dirname(f), (dirs.get(dirname(f)) ?? new Set()).add(basename(f)));
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, (_event, name) => {
          if (name && !names.has(name) && !name.startsWith('..')) return;
          clearTimeout(debounce);
          debounce = setTimeout(() => void reload(), gateway.config.reload.debounceMs);
        });
        w.on('error', () => undefined);
        watchers.push(w);
      } catch (error) {
        log.warn({ msg: 'cannot watch directory for reload', dir, err: String(error) });
      }
    }
  }
  rewatch();

  let stopping: Promise<void> | undefined;
  function shutdown(): Promise<void> {
    stopping ??= (async () => {
      draining = true;
      for (const w of watchers) w.close();
      clearTimeout(debounce);
      log.info({ msg: 'draining', in_flight: inFlight.size, grace_period_seconds: gateway.config.shutdown.gracePeriodSeconds });
      const closed = new Promise<void>((resolve) => traffic.close(() => resolve()));
      traffic.closeIdleConnections();
      const idleSweep = setInterval(() => traffic.closeIdleConnections(), 100);
      const grace = new Promise<void>((resolve) => setTimeout(resolve, gateway.config.shutdown.gracePeriodSeconds * 1000).unref());
      await Promise.race([closed, grace]);
      clearInterval(idleSweep);
      traffic.closeAllConnections();
      for (const socket of tunnels) socket.destroy();
      proxy.close();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await gateway.close();
      log.info({ msg: 'stopped' });
    })();
    return stopping;
  }

  return {
    trafficAddress: traffic.address() as AddressInfo,
    adminAddress: admin.address() as AddressInfo,
    current: () => gateway,
    ready: () => listening && !draining && gateway.ready(),
    reload,
    shutdown,
  };
}

/** Keys whose change a running process cannot apply. */
function restartOnlyChanges(a: Config, b: Config): string[] {
  const out: string[] = [];
  if (a.listen.host !== b.listen.host || a.listen.port !== b.listen.port) out.push('listen.host/port');
  if (Boolean(a.listen.tls) !== Boolean(b.listen.tls)) out.push('listen.tls (on/off)');
  if (a.listen.maxHeaderBytes !== b.listen.maxHeaderBytes) out.push('listen.max_header_bytes');
  if (a.admin.host !== b.admin.host || a.admin.port !== b.admin.port) out.push('admin');
  return out;
}
