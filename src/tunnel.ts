import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GatewayError, isGatewayError } from './errors.js';
import type { ConnectionCertificates } from './certificate/types.js';
import type { CompiledRoute, Gateway, RequestView } from './gateway.js';
import type { TunnelCompletion } from './forward/upgrade.js';
import type { UpstreamErrorKind } from './forward/upstream.js';
import { rawResponse } from './respond.js';
import { checkRequestShape } from './request-shape.js';
import { CLIENT_CLOSED_STATUS, NO_IDENTITY, answerTo, forwardedHeaders, interactionIdOf, outcomeOf, routeOf, type Identity } from './stages.js';
import type { Observers } from './pipeline.js';
import type { Reason } from './observability/record.js';

/**
 * An Upgrade (WebSocket) request: the same stages as any request, then a tunnel on the route's
 * upstream pool, within its limits (forward/upgrade.ts). Recorded once the upstream answered: 101
 * when the tunnel opened, the upstream's status when it refused, or certbound's answer.
 * Resolves when the request is recorded; the tunnel may live on.
 */
export async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, connection: ConnectionCertificates, gateway: Gateway, obs: Observers): Promise<void> {
  const started = performance.now();
  const interactionId = interactionIdOf(req.headers['x-fapi-interaction-id']);
  const method = req.method ?? 'GET';
  const view: RequestView = { headers: req.headersDistinct, socket: req.socket, connection, method };
  let route: CompiledRoute | undefined;
  let path: string | undefined;
  let identity: Identity = NO_IDENTITY;
  let sent = false;
  let done = false;
  let settle: () => void = () => undefined;
  const recorded = new Promise<void>((resolve) => (settle = resolve));

  const record = (status: number, reason: Reason | undefined, upstreamSeconds?: number, bytes = 0): void => {
    if (done) return;
    done = true;
    try {
      const upstream = sent ? route?.upstream : undefined;
      obs.record(
        {
          interactionId, route: route?.name, method, path, upstream: upstream?.config.name, status, reason, outcome: outcomeOf(status, reason),
          latencySeconds: (performance.now() - started) / 1000, upstreamSeconds, responseBytes: bytes, clientId: identity.claims?.clientId,
          thumbprint: identity.certificate?.thumbprint ?? (route && route.config.auth !== 'none' && reason !== undefined ? gateway.thumbprintOf(view) : undefined),
          jkt: identity.jkt,
          peer: (req.socket as Socket | null)?.remoteAddress,
        },
        route?.series ?? gateway.unrouted,
        upstream?.series,
      );
    } catch (bug) {
      obs.log.error({ msg: 'upgrade handler failed', err: String(bug) });
    }
    settle();
  };
  const refuse = (error: unknown): void => {
    if (!isGatewayError(error)) obs.log.error({ err: String(error), interaction_id: interactionId }, 'unexpected error on upgrade');
    if (socket.destroyed) return record(CLIENT_CLOSED_STATUS, 'client_closed');
    const { response, reason } = answerTo(error, route, gateway, view.headers.authorization);
    socket.end(rawResponse(response, interactionId));
    record(response.status, reason, undefined, Buffer.byteLength(response.body));
  };

  try {
    checkRequestShape(req, gateway.config.listen.maxHeaders);
    const routed = gateway.route(method, req.url ?? '/');
    path = routed.target.encodedPath;
    if (routed.kind !== 'no_route') route = routed.route;
    const matched = routeOf(routed, method);
    // Only WebSocket upgrades are tunnelled.
    if (method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      throw new GatewayError('bad_request', 'only GET upgrades to websocket are supported');
    }
    identity = await matched.authorize(view, routed.target);
    // A client that left while its token was being checked is not forwarded at all.
    if (socket.destroyed) {
      record(CLIENT_CLOSED_STATUS, 'client_closed');
      return recorded;
    }
    const upstreamName = matched.upstream.config.name;
    const completion: TunnelCompletion = {
      countError: (kind: UpstreamErrorKind) => obs.metrics.upstreamErrors.inc({ upstream: upstreamName, kind }),
      opened: ({ status, upstreamSeconds }) => record(status, undefined, upstreamSeconds),
      answered: ({ status, upstreamSeconds }) => record(status, undefined, upstreamSeconds),
      failed: (error) => refuse(error),
      // A client that left before the upstream answered: nothing else said so.
      ended: () => record(CLIENT_CLOSED_STATUS, 'client_closed'),
    };
    matched.upstream.upgrade(
      {
        path: routed.target.encodedPath + routed.target.query,
        headers: forwardedHeaders(req.headers, view.socket.remoteAddress, matched, gateway, identity, interactionId),
        head,
        interactionId,
      },
      socket,
      completion,
    );
    // Dispatched (upgrade throws upstream_overloaded before it sends anything).
    sent = true;
  } catch (error) {
    refuse(error);
  }
  return recorded;
}
