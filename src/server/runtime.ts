import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.js';
import { compileGateway, type Gateway } from '../gateway.js';
import { exchange, type Observers } from '../pipeline.js';
import { handleUpgrade } from '../tunnel.js';
import type { RequestRecord } from '../observability/record.js';
import { createRecorder } from '../observability/record.js';
import { createAdminServer, type Readiness } from './admin.js';
import { logFields, summarize, type CertificateSummary } from './certificates.js';
import { trackConnections } from './drain.js';
import { applyTimeouts, createTrafficServer, listen } from './listeners.js';
import { guardTraffic } from './guard.js';
import { createGenerations, type Generations } from './generations.js';
import { createReloader } from './reload.js';
import { createSharedState } from './shared-state.js';

export interface RuntimeOptions extends Omit<Observers, 'record'> {
  /** The access line writer (observability/logger.ts createLogging): same destination as `log`. */
  readonly access: (record: RequestRecord) => void;
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

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The certificate expiry gauges, from what the config step parsed. */
function exposeCertificates(metrics: Observers['metrics'], summary: CertificateSummary): void {
  metrics.certificateExpiry.reset();
  if (summary.serving) metrics.certificateExpiry.set({ certificate: 'serving' }, summary.serving.notAfter);
  if (summary.clientCa) metrics.certificateExpiry.set({ certificate: 'client_ca' }, summary.clientCa.earliestNotAfter);
}

/**
 * Requests on the traffic listener: each runs on the gateway current when it arrived, holds it
 * until it is recorded, and is counted until then (a handler outlives its response by its
 * access line, and shutdown waits for that too).
 */
function serveTraffic(config: Config, generations: Generations, observers: Observers) {
  let handling = 0;
  let allHandled: (() => void) | undefined;
  // The handler runs only once the server listens, after `tracker` below is set.
  const traffic = createTrafficServer(config, (req: IncomingMessage, res: ServerResponse) => {
    try {
      const gateway = generations.hold();
      handling++;
      const request = exchange(req, res, tracker.certificatesOf(req.socket), gateway, observers, () => {
        if (--handling === 0) allHandled?.();
      });
      tracker.track(req, res, request, () => generations.release(gateway));
    } catch (bug) {
      // A bug here must cost one request, not the process and every request in flight.
      observers.metrics.uncaughtErrors.inc();
      observers.log.error({ msg: 'request handler failed', err: bug instanceof Error ? { message: bug.message, stack: bug.stack } : String(bug) });
      res.destroy();
    }
  });
  const tracker = trackConnections(traffic, config.listen.tls !== undefined, {
    sendTimeoutMs: () => generations.current().config.listen.sendTimeoutMs,
    onLimit: (kind) => observers.metrics.clientErrors.inc({ kind }),
  });
  guardTraffic(traffic, { metrics: observers.metrics, mayAnswer: tracker.mayAnswer, afterResponses: tracker.afterResponses, cut: tracker.cut });

  // Upgraded (WebSocket) sockets leave the HTTP server's connection tracking: tracked here.
  const tunnels = new Set<Duplex>();
  traffic.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (socket.destroyed) return; // pipelined behind requests still under way: refused by the tracker
    // Node drops its own error listener from an upgraded socket: without one, a reset while the
    // request is being checked would be an unhandled 'error' event and take the process down.
    socket.on('error', () => socket.destroy());
    tunnels.add(socket);
    socket.once('close', () => tunnels.delete(socket));
    const gateway = generations.hold();
    handleUpgrade(req, socket, head, tracker.certificatesOf(socket as Socket), gateway, observers)
      .catch(() => socket.destroy())
      .finally(() => generations.release(gateway));
  });

  /** Lets handlers record what they answered (bounded: a handler never waits on a closed client for long). */
  const handled = async (): Promise<void> => {
    if (handling > 0) await Promise.race([new Promise<void>((resolve) => (allHandled = resolve)), sleep(1000)]);
  };
  return { traffic, tracker, tunnels, handled };
}

export async function startRuntime(initial: Config, options: RuntimeOptions): Promise<Runtime> {
  const { metrics, log } = options;
  const observers: Observers = { metrics, log, record: createRecorder(options.access) };
  const state = createSharedState(initial, { metrics, log, clock: options.clock ?? Date.now });
  const compile = (config: Config, previous?: Gateway): Gateway =>
    compileGateway(config, { metrics, log, ...state.deps, ...(options.clock ? { clock: options.clock } : {}), ...(previous ? { previous } : {}) });

  const first = compile(initial);
  first.start();
  const generations = createGenerations(first);
  const initialCertificates = summarize(initial);
  exposeCertificates(metrics, initialCertificates);
  let draining = false;
  let listening = false;

  const { traffic, tracker, tunnels, handled } = serveTraffic(initial, generations, observers);
  const readiness = (): Readiness => {
    if (!listening) return { ready: false, reason: 'starting' };
    if (draining) return { ready: false, reason: 'draining' };
    const unready = generations.current().unready();
    if (unready !== undefined) return { ready: false, reason: unready };
    return { ready: true };
  };
  const admin = createAdminServer(metrics, { readiness }, {
    hub: state.hub,
    log,
    secret: () => generations.current().config.admin.revocationSecret,
    // A revoked token is refused until no cache may still hold it: an introspection still in flight
    // at the revocation (the AS timeout), then the longest cache TTL (a copy read from Redis keeps
    // the deadline of the first), plus the clock skew and a second.
    ttlMs: () => {
      const as = generations.current().config.authorizationServer;
      return ((as?.cache.maxTtlSeconds ?? 0) + (as?.clockSkewSeconds ?? 0)) * 1000 + (as?.timeoutMs ?? 0) + 1000;
    },
  });

  try {
    await state.start();
    await listen(admin, initial.admin.port, initial.admin.host);
    await listen(traffic, initial.listen.port, initial.listen.host);
  } catch (error) {
    admin.close();
    traffic.close();
    await generations.closeAll();
    await state.close();
    throw error;
  }
  listening = true;
  log.info({
    msg: 'started',
    traffic: traffic.address(),
    admin: admin.address(),
    config: initial.source,
    routes: initial.routes.length,
    token_validation: initial.authorizationServer ? initial.authorizationServer.validation.mode : 'none',
    ...logFields(initialCertificates),
  });

  const reloader = createReloader({
    ...(options.configPath ? { configPath: options.configPath } : {}),
    env: options.env ?? process.env,
    log,
    metrics,
    generations,
    compile,
    draining: () => draining,
    commit: ({ config, next, certificates }) => {
      // Open connections keep their TLS session; new handshakes get the new context.
      if (next.tls) (traffic as HttpsServer).setSecureContext(next.tls);
      applyTimeouts(traffic, config.listen);
      log.level = config.logging.level;
      exposeCertificates(metrics, certificates);
    },
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      draining = true;
      const reloadsStopped = reloader.stop();
      const graceSeconds = generations.current().config.shutdown.gracePeriodSeconds;
      log.info({ msg: 'draining', in_flight: tracker.inFlight(), tunnels: tunnels.size, grace_period_seconds: graceSeconds });
      const drained = await tracker.drain(graceSeconds * 1000);
      if (!drained) log.warn({ msg: 'grace period over; closing what is left', in_flight: tracker.inFlight(), tunnels: tunnels.size });
      await handled();
      for (const socket of tunnels) socket.destroy();
      await closeAdmin(admin);
      await reloadsStopped;
      await generations.closeAll();
      await state.close();
      log.info({ msg: 'stopped', drained });
    })();
    return stopping;
  };

  return {
    trafficAddress: traffic.address() as AddressInfo,
    adminAddress: admin.address() as AddressInfo,
    current: () => generations.current(),
    ready: () => readiness().ready,
    readiness,
    reload: (trigger) => reloader.reload(trigger),
    shutdown,
  };
}

function closeAdmin(admin: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => admin.close(() => resolve()));
  admin.closeAllConnections();
  return closed;
}
