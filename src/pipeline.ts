import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isGatewayError, type ErrorCode } from './errors.js';
import type { ConnectionCertificates } from './certificate/types.js';
import type { Target } from './route.js';
import type { CompiledRoute, Gateway, RequestView } from './gateway.js';
import type { ForwardCompletion, Forwarded, ForwardOutcome, UpstreamErrorKind } from './forward/upstream.js';
import { checkRequestShape } from './request-shape.js';
import {
  CLIENT_CLOSED_STATUS, NO_IDENTITY, answerTo, forwardedHeaders, interactionIdOf, outcomeOf, routeOf, type Identity,
} from './stages.js';
import type { Metrics } from './observability/metrics.js';
import type { Logger } from './observability/logger.js';
import type { Reason, Recorder } from './observability/record.js';

export interface Observers {
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Metrics and the access line of a request that ended (observability/record.ts). */
  readonly record: Recorder;
}

/** One request under way, as the server sees it. */
export interface RequestHandle {
  /** Runs the stages; never throws. */
  start(): void;
  /** The response's 'close' event (the server's one listener per response). */
  closed(): void;
  /** The client left before the request was started (a pipelined one, waiting its turn): nothing ran, nothing to record. */
  abandoned(): void;
  /** certbound cuts the connection for a limit (a timeout): recorded as such, not as a client that left. */
  cut(): void;
}

/** Refusals that are a client limit or timeout, as `certbound_client_errors_total` kinds. */
const CLIENT_LIMITS: Partial<Record<ErrorCode, string>> = { request_timeout: 'body_stalled', too_many_headers: 'too_many_headers' };

const hasBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

/**
 * One request, top to bottom: the stages of stages.ts in order, one catch (`failed`) that goes to
 * respond, and one record when it ends. Calls `done` once, after the request is recorded. The
 * caller starts it, and reports the response's 'close' to it.
 */
export function exchange(req: IncomingMessage, res: ServerResponse, connection: ConnectionCertificates, gateway: Gateway, obs: Observers, done: () => void): RequestHandle {
  return new Exchange(req, res, connection, gateway, obs, done);
}

/**
 * The state of one request as it moves through its stages. A class with callbacks rather than an
 * async function: a cached token and a healthy upstream cost no promise, no closure per stage.
 */
class Exchange implements ForwardCompletion, RequestHandle {
  private readonly started = performance.now();
  private readonly interactionId: string;
  private readonly method: string;
  /** What the stages read: the connection is kept, as undici sets req.socket to null once it has sent the body. */
  private readonly view: RequestView;
  private target: Target | undefined;
  private route: CompiledRoute | undefined;
  private identity: Identity = NO_IDENTITY;
  private forwarding: Forwarded | undefined;
  /** The response closed before it was complete: the client left. */
  private clientGone = false;
  /** certbound cut the client for not reading (that is a limit, not a client that left). */
  private cutForLimit = false;
  private finished = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    connection: ConnectionCertificates,
    private readonly gateway: Gateway,
    private readonly obs: Observers,
    private readonly done: () => void,
  ) {
    this.interactionId = interactionIdOf(req.headers['x-fapi-interaction-id']);
    this.method = req.method ?? 'GET';
    this.view = { headers: req.headersDistinct, socket: req.socket, connection, method: this.method };
  }

  abandoned(): void {
    this.settle();
  }

  start(): void {
    try {
      checkRequestShape(this.req, this.gateway.config.listen.maxHeaders);
      const routed = this.gateway.route(this.method, this.req.url ?? '/');
      this.target = routed.target;
      if (routed.kind !== 'no_route') this.route = routed.route;
      const route = routeOf(routed, this.method);
      const authorized = route.authorize(this.view, routed.target);
      if (authorized instanceof Promise) {
        authorized.then(
          (identity) => this.forward(route, routed.target, identity),
          (error: unknown) => this.failed(error),
        );
      } else this.forward(route, routed.target, authorized);
    } catch (error) {
      this.failed(error);
    }
  }

  private forward(route: CompiledRoute, target: Target, identity: Identity): void {
    try {
      this.identity = identity;
      // A client that left while its token was being checked is not forwarded at all.
      if (this.clientGone || this.res.destroyed) return this.finish(CLIENT_CLOSED_STATUS, 'client_closed', undefined, 0);
      const { req, view } = this;
      this.forwarding = route.upstream.forward(
        {
          method: this.method,
          path: target.encodedPath + target.query,
          headers: forwardedHeaders(req.headers, view.socket.remoteAddress, route, this.gateway, identity, this.interactionId),
          body: hasBody(req) ? req : undefined,
          interactionId: this.interactionId,
          ...(identity.dpopNonce !== undefined ? { dpopNonce: identity.dpopNonce } : {}),
        },
        this.res,
        this,
      );
    } catch (error) {
      this.failed(error);
    }
  }

  closed(): void {
    if (!this.res.writableFinished) this.clientGone = true;
    this.forwarding?.clientClosed();
  }

  cut(): void {
    this.cutForLimit = true;
  }

  readStalled(): void {
    this.cutForLimit = true;
    this.obs.metrics.clientErrors.inc({ kind: 'read_stalled' });
  }

  countError(kind: UpstreamErrorKind): void {
    this.obs.metrics.upstreamErrors.inc({ upstream: (this.route as CompiledRoute).upstream.config.name, kind });
  }

  forwarded(outcome: ForwardOutcome): void {
    const left = this.clientGone && !this.cutForLimit;
    this.finish(left ? CLIENT_CLOSED_STATUS : outcome.status, left ? 'client_closed' : undefined, outcome.upstreamSeconds, outcome.bytes);
  }

  failed(error: unknown): void {
    const { res, route, obs } = this;
    try {
      // Nobody is there to answer: a client that left is not the upstream's or the server's failure
      // (a bug is still logged). One certbound cut for a timeout is recorded as that.
      if (this.clientGone && !res.headersSent) {
        if (!isGatewayError(error)) obs.log.error({ err: error instanceof Error ? { message: error.message, stack: error.stack } : String(error), interaction_id: this.interactionId }, 'unexpected error');
        return this.cutForLimit ? this.finish(408, 'request_timeout', undefined, 0) : this.finish(CLIENT_CLOSED_STATUS, 'client_closed', undefined, 0);
      }
      const limit = isGatewayError(error) ? CLIENT_LIMITS[error.code] : undefined;
      if (limit) obs.metrics.clientErrors.inc({ kind: limit });
      const { status, reason, bytes } = this.respond(error);
      // The thumbprint a refused request presented is what an operator needs to investigate it.
      const thumbprint = route && route.config.auth !== 'none' ? this.gateway.thumbprintOf(this.view) : undefined;
      this.finish(status, reason, undefined, bytes, thumbprint);
    } catch (bug) {
      this.broken(bug);
    }
  }

  /** The one place an error becomes a response. */
  private respond(error: unknown): { status: number; reason: Reason; bytes: number } {
    const { res, obs } = this;
    if (!isGatewayError(error)) {
      obs.log.error({ err: error instanceof Error ? { message: error.message, stack: error.stack } : String(error), interaction_id: this.interactionId }, 'unexpected error');
    }
    const { response, reason } = answerTo(error, this.route, this.gateway, this.view.headers.authorization);
    // Headers went out (the upstream failed mid-body): all HTTP allows is to cut the connection.
    if (res.headersSent) {
      res.destroy();
      return { status: res.statusCode, reason, bytes: 0 };
    }
    const bytes = Buffer.byteLength(response.body);
    res.writeHead(response.status, { ...response.headers, 'x-fapi-interaction-id': this.interactionId, 'content-length': bytes });
    res.end(response.body);
    return { status: response.status, reason, bytes };
  }

  private finish(status: number, reason: Reason | undefined, upstreamSeconds: number | undefined, bytes: number, thumbprint?: string): void {
    if (this.finished) return;
    try {
      const { route, identity } = this;
      const socket: Socket = this.view.socket;
      // Named when the request was sent there, whatever came of it.
      const upstream = this.forwarding ? route?.upstream : undefined;
      this.obs.record(
        {
          interactionId: this.interactionId,
          route: route?.name,
          method: this.method,
          path: this.target?.encodedPath,
          upstream: upstream?.config.name,
          status,
          reason,
          outcome: outcomeOf(status, reason),
          latencySeconds: (performance.now() - this.started) / 1000,
          upstreamSeconds,
          responseBytes: bytes,
          clientId: identity.claims?.clientId,
          thumbprint: identity.certificate?.thumbprint ?? thumbprint,
          jkt: identity.jkt,
          peer: socket.remoteAddress,
        },
        route?.series ?? this.gateway.unrouted,
        upstream?.series,
      );
    } catch (bug) {
      this.obs.log.error({ msg: 'request handler failed', err: String(bug) });
    }
    this.settle();
  }

  /** `done`, exactly once. */
  private settle(): void {
    if (this.finished) return;
    this.finished = true;
    this.done();
  }

  /** A bug while answering: answer 500 if nothing went out yet, else cut the connection. */
  private broken(bug: unknown): void {
    this.obs.log.error({ msg: 'request handler failed', err: String(bug) });
    if (!this.res.headersSent) this.res.writeHead(500).end();
    else this.res.destroy();
    this.settle();
  }
}
