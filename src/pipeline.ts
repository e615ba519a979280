import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type HttpProxy from 'http-proxy';
import type { RouteConfig } from './config/types.js';
import { GatewayError, isGatewayError, type ErrorCode } from './errors.js';
import { bearerToken } from './bearer.js';
import { checkBinding, checkScopes } from './binding.js';
import type { CertificateResult, ClientCertificate } from './certificate/types.js';
import type { TokenClaims } from './token/types.js';
import type { Target } from './route.js';
import type { Gateway } from './gateway.js';
import { headerObject, upstreamRequestHeaders } from './forward/headers.js';
import type { ForwardCompletion, Forwarded, ForwardOutcome, Upstream, UpstreamErrorKind } from './forward/upstream.js';
import { errorResponse, rawResponse, type ErrorResponse } from './respond.js';
import { uuidV4 } from './uuid.js';
import { checkRequestShape } from './request-shape.js';
import type { Metrics } from './observability/metrics.js';
import type { CounterSeries, HistogramSeries } from './observability/series.js';
import type { AccessLine, Logger } from './observability/logger.js';

export interface Observers {
  readonly metrics: Metrics;
  readonly log: Logger;
  /** The access line writer (createAccessLog): same destination as `log`. */
  readonly access: (line: AccessLine) => void;
}

/** Who the request proved to be. */
export interface Identity {
  readonly claims?: TokenClaims;
  readonly certificate?: ClientCertificate;
}

/** A bug, never bad input: logged, and answered without details. */
const INTERNAL_ERROR = {
  status: 500,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: '{"error":"server_error","error_description":"internal error"}',
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** FAPI: echo the client's x-fapi-interaction-id when it is a UUID, otherwise mint one. */
export function interactionIdOf(value: string | string[] | undefined): string {
  return typeof value === 'string' && UUID.test(value) ? value : uuidV4();
}

/**
 * The checks a route's `auth` asks for, in order. Plain values in, Identity out, or a GatewayError
 * (thrown, or rejected when the token needs the authorization server). A token the cache holds
 * is checked synchronously: the common request costs no promise here.
 */
export function authorize(req: IncomingMessage, route: RouteConfig, target: Target, gateway: Gateway): Identity | Promise<Identity> {
  switch (route.auth) {
    case 'none':
      return NO_IDENTITY;
    case 'mtls': {
      const cert = gateway.readCertificate(req);
      if (!cert.present) {
        throw new GatewayError('transport_certificate_missing', `transport certificate not found in the request${cert.why ? `: ${cert.why}` : ''}`);
      }
      return { certificate: cert.certificate };
    }
    case 'certificate_bound_token': {
      const token = bearerToken(req.headersDistinct.authorization, target.query);
      const cert = gateway.readCertificate(req);
      // No certificate can never pass the binding check: refuse before spending an introspection call.
      if (!cert.present) {
        throw new GatewayError('certificate_missing', `client certificate required${cert.why ? `: ${cert.why}` : ''}`);
      }
      const tokens = gateway.tokens;
      if (!tokens) throw new GatewayError('as_unavailable', 'no authorization server configured');
      const cached = tokens.cached(token);
      if (cached) return bound(cached, cert, route);
      return tokens.validate(token).then((claims) => bound(claims, cert, route));
    }
  }
}

const NO_IDENTITY: Identity = Object.freeze({});

/** The binding and scope checks, on claims however they were obtained. */
function bound(claims: TokenClaims, cert: CertificateResult, route: RouteConfig): Identity {
  const certificate = checkBinding(claims, cert);
  checkScopes(claims, route.scopes);
  return { claims, certificate };
}

/**
 * A header value from a claim: printable ASCII as is; anything else (UTF-8 names, control
 * characters) percent-encoded as UTF-8, so the header is always valid and never smuggles a line.
 */
const headerValue = (claim: string): string => (/^[\x20-\x7e]*$/.test(claim) ? claim : encodeURIComponent(claim));

interface IdentityValues {
  readonly clientId?: string;
  readonly subject?: string;
  readonly scope?: string;
}
/** A cached token's claims object is shared by every request that carries it: derive its header values once. */
const identityValues = new WeakMap<TokenClaims, IdentityValues>();
function identityOf(claims: TokenClaims): IdentityValues {
  let values = identityValues.get(claims);
  if (values === undefined) {
    values = {
      ...(claims.clientId ? { clientId: headerValue(claims.clientId) } : {}),
      ...(claims.subject ? { subject: headerValue(claims.subject) } : {}),
      ...(claims.scopes.size > 0 ? { scope: headerValue([...claims.scopes].join(' ')) } : {}),
    };
    identityValues.set(claims, values);
  }
  return values;
}

/** A TLS connection's certificate is one object for all its requests: encode it for forwarding once. */
const forwardedPem = new WeakMap<ClientCertificate, string>();
function forwardedCertificateOf(certificate: ClientCertificate): string {
  let value = forwardedPem.get(certificate);
  if (value === undefined) {
    value = encodeURIComponent(certificate.x509.toString());
    forwardedPem.set(certificate, value);
  }
  return value;
}

/** Headers certbound itself sends upstream (identity, forwarded certificate, interaction id), as name, value, … */
function addedHeaders(gateway: Gateway, route: RouteConfig, identity: Identity, interactionId: string): string[] {
  const names = gateway.config.identityHeaders;
  const add = ['x-fapi-interaction-id', interactionId];
  const { claims, certificate } = identity;
  if (claims) {
    const values = identityOf(claims);
    if (values.clientId) add.push(names.clientId, values.clientId);
    if (values.subject) add.push(names.subject, values.subject);
    if (values.scope) add.push(names.scope, values.scope);
  }
  if (certificate) {
    add.push(names.thumbprint, certificate.thumbprint);
    if (route.forwardCertificateHeader) add.push(route.forwardCertificateHeader, forwardedCertificateOf(certificate));
  }
  return add;
}

function forwardedHeaders(req: IncomingMessage, gateway: Gateway, route: RouteConfig, identity: Identity, interactionId: string, upgrade: boolean) {
  return upstreamRequestHeaders({
    incoming: req.headers,
    strip: gateway.strippedHeaders.get(route) as ReadonlySet<string>,
    add: addedHeaders(gateway, route, identity, interactionId),
    peer: req.socket.remoteAddress ?? '',
    peerTrusted: gateway.peerTrusted(req.socket.remoteAddress),
    proto: gateway.config.listen.tls ? 'https' : 'http',
    keepUpgrade: upgrade,
  });
}

/** Config compilation guarantees every route's upstream exists. */
const upstreamOf = (gateway: Gateway, route: RouteConfig) => gateway.upstreams.get(route.upstream) as NonNullable<ReturnType<Gateway['upstreams']['get']>>;

const hasBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

/** One request under way, as the server sees it. */
export interface RequestHandle {
  /** Runs the request: route → authorize → forward; any GatewayError → respond. Never throws. */
  start(): void;
  /** The response's 'close' event (the server's one listener per response). */
  closed(): void;
  /** The client left before the request was started (a pipelined one, waiting its turn): nothing ran, nothing to record. */
  abandoned(): void;
}

/**
 * One request, top to bottom. Calls `done` once, after the request is recorded (metrics, access
 * line). The caller starts it, and reports the response's 'close' to it.
 */
export function exchange(req: IncomingMessage, res: ServerResponse, gateway: Gateway, obs: Observers, done: () => void): RequestHandle {
  return new Exchange(req, res, gateway, obs, done);
}

/**
 * The state of one request as it moves through its steps. A class with callbacks rather than an
 * async function: a cached token and a healthy upstream cost no promise, no closure per step.
 */
class Exchange implements ForwardCompletion, RequestHandle {
  private readonly started = performance.now();
  private readonly interactionId: string;
  private readonly method: string;
  /** The connection: undici sets req.socket to null once it has sent the request body. */
  private readonly socket: Socket;
  private route: RouteConfig | undefined;
  private identity: Identity = NO_IDENTITY;
  private upstream: Upstream | undefined;
  private forwarding: Forwarded | undefined;
  private finished = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly gateway: Gateway,
    private readonly obs: Observers,
    private readonly done: () => void,
  ) {
    this.interactionId = interactionIdOf(req.headers['x-fapi-interaction-id']);
    this.method = req.method ?? 'GET';
    this.socket = req.socket;
  }

  abandoned(): void {
    this.settle();
  }

  start(): void {
    try {
      checkRequestShape(this.req, this.gateway.config.listen.maxHeaders);
      const match = this.gateway.route(this.method, this.req.url ?? '/');
      this.route = match.route;
      const authorized = authorize(this.req, match.route, match.target, this.gateway);
      if (authorized instanceof Promise) {
        authorized.then(
          (identity) => this.forward(identity, match.target),
          (error: unknown) => this.failed(error),
        );
      } else this.forward(authorized, match.target);
    } catch (error) {
      this.failed(error);
    }
  }

  private forward(identity: Identity, target: Target): void {
    try {
      this.identity = identity;
      const { req, gateway } = this;
      const route = this.route as RouteConfig;
      const upstream = upstreamOf(gateway, route);
      this.upstream = upstream;
      this.forwarding = upstream.forward(
        {
          method: this.method,
          path: target.encodedPath + target.query,
          headers: forwardedHeaders(req, gateway, route, identity, this.interactionId, false),
          body: hasBody(req) ? req : undefined,
          interactionId: this.interactionId,
        },
        this.res,
        this,
      );
    } catch (error) {
      this.failed(error);
    }
  }

  closed(): void {
    this.forwarding?.clientClosed();
  }

  readStalled(): void {
    this.obs.metrics.clientErrors.inc({ kind: 'read_stalled' });
  }

  countError(kind: UpstreamErrorKind): void {
    this.obs.metrics.upstreamErrors.inc({ upstream: (this.upstream as Upstream).config.name, kind });
  }

  forwarded(outcome: ForwardOutcome): void {
    upstreamDurationOf(this.obs.metrics, (this.upstream as Upstream).config.name).observe(outcome.upstreamSeconds);
    this.finish(outcome.status, undefined, outcome.upstreamSeconds, this.route?.name, undefined);
  }

  failed(error: unknown): void {
    const { req, res, route, gateway, obs } = this;
    try {
      const client = isGatewayError(error) ? CLIENT_LIMITS[error.code] : undefined;
      if (client) obs.metrics.clientErrors.inc({ kind: client });
      const { status, reason } = fail(error, res, route, gateway, this.interactionId, obs);
      const routeName = route?.name ?? (isGatewayError(error) ? error.details.route : undefined);
      // The thumbprint a refused request presented is what an operator needs to investigate it.
      const thumbprint = route && route.auth !== 'none' ? gateway.thumbprintOf(req, this.socket) : undefined;
      this.finish(status, reason, undefined, routeName, thumbprint);
    } catch (bug) {
      this.broken(bug);
    }
  }

  private finish(status: number, reason: ErrorCode | 'internal' | undefined, upstreamSeconds: number | undefined, routeName: string | undefined, thumbprint: string | undefined): void {
    if (this.finished) return;
    try {
      const { method, identity, started, interactionId } = this;
      const peer = this.socket.remoteAddress;
      record(this.obs, { peer, method, routeName, identity, thumbprint, status, reason, started, upstreamSeconds, interactionId });
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

function fail(error: unknown, res: ServerResponse, route: RouteConfig | undefined, gateway: Gateway, interactionId: string, obs: Observers) {
  if (!isGatewayError(error)) {
    obs.log.error({ err: error instanceof Error ? { message: error.message, stack: error.stack } : String(error), interaction_id: interactionId }, 'unexpected error');
  }
  if (res.headersSent) {
    res.destroy();
    return { status: res.statusCode, reason: isGatewayError(error) ? error.code : ('internal' as const) };
  }
  const gatewayError = isGatewayError(error) ? error : undefined;
  const response = gatewayError
    ? errorResponse(gatewayError, route?.auth, gateway.config.realm)
    : INTERNAL_ERROR;
  res.writeHead(response.status, { ...response.headers, 'x-fapi-interaction-id': interactionId, 'content-length': Buffer.byteLength(response.body) });
  res.end(response.body);
  return { status: response.status, reason: gatewayError?.code ?? ('internal' as const) };
}

/** Refusals that are a client limit or timeout, as `certbound_client_errors_total` kinds. */
const CLIENT_LIMITS: Partial<Record<ErrorCode, string>> = { request_timeout: 'body_stalled', too_many_headers: 'too_many_headers' };

const AUTH_REASONS = new Set<string>([
  'missing_token', 'malformed_token', 'token_in_query', 'invalid_token', 'inactive', 'expired', 'not_yet_valid', 'unbound_token',
  'insufficient_scope', 'certificate_missing', 'certificate_mismatch', 'certificate_untrusted', 'certificate_expired',
  'certificate_malformed', 'certificate_header_repeated', 'certificate_header_untrusted', 'transport_certificate_missing', 'as_unavailable',
]);

interface Record_ {
  peer: string | undefined;
  method: string;
  routeName: string | undefined;
  identity: Identity;
  /** Of a refused request (a forwarded one has it in `identity`). */
  thumbprint?: string | undefined;
  status: number;
  reason: ErrorCode | 'internal' | undefined;
  started: number;
  upstreamSeconds: number | undefined;
  interactionId: string;
}

interface Series {
  readonly requests: CounterSeries;
  readonly duration: HistogramSeries;
}
const upstreamSeries = new WeakMap<Metrics, Map<string, HistogramSeries>>();
function upstreamDurationOf(metrics: Metrics, upstream: string): HistogramSeries {
  let byName = upstreamSeries.get(metrics);
  if (!byName) upstreamSeries.set(metrics, (byName = new Map()));
  let series = byName.get(upstream);
  if (!series) byName.set(upstream, (series = metrics.upstreamDuration.labels(upstream)));
  return series;
}

/** Labelled series, looked up once per label combination rather than hashed per request. */
const METRIC_METHODS = [...KNOWN_METHODS, 'OTHER'];
const OUTCOMES = ['forwarded', 'rejected', 'error'] as const;
type Outcome = (typeof OUTCOMES)[number];
/** Series by route, then by a small integer for (method, status class, outcome): no key string per request. */
const seriesCache = new WeakMap<Metrics, Map<string, Map<number, Series>>>();
function seriesOf(metrics: Metrics, route: string, method: string, statusClass: number, outcome: Outcome): Series {
  let byRoute = seriesCache.get(metrics);
  if (!byRoute) seriesCache.set(metrics, (byRoute = new Map()));
  let byCode = byRoute.get(route);
  if (!byCode) byRoute.set(route, (byCode = new Map()));
  let m = METRIC_METHODS.indexOf(method);
  if (m === -1) m = METRIC_METHODS.length - 1;
  const code = m * 100 + statusClass * 10 + OUTCOMES.indexOf(outcome);
  let series = byCode.get(code);
  if (!series) {
    series = {
      requests: metrics.requests.labels(route, METRIC_METHODS[m] as string, `${statusClass}xx`, outcome),
      duration: metrics.requestDuration.labels(route),
    };
    byCode.set(code, series);
  }
  return series;
}

/** Milliseconds with µs precision, for the access line. */
const ms = (seconds: number): number => Math.round(seconds * 1e6) / 1e3;
const json = JSON.stringify;

/** Metrics and the access line: thumbprint and client id only, never a token or certificate. */
function record(obs: Observers, r: Record_): void {
  const seconds = (performance.now() - r.started) / 1000;
  const routeName = r.routeName ?? 'none';
  const outcome: Outcome = r.reason === undefined ? 'forwarded' : r.reason === 'internal' || r.status >= 500 ? 'error' : 'rejected';
  const series = seriesOf(obs.metrics, routeName, r.method, Math.floor(r.status / 100), outcome);
  series.requests.inc();
  series.duration.observe(seconds);
  if (r.reason && AUTH_REASONS.has(r.reason)) obs.metrics.authFailures.inc({ route: routeName, reason: r.reason });
  if (!obs.log.isLevelEnabled('info')) return;
  // The line's JSON members, written directly (fixed order, no object to serialize). Strings that
  // come from outside (route names, method, client id, peer) go through JSON.stringify; the rest
  // are numbers, codes, or values certbound made (a validated or minted UUID, a base64url thumbprint).
  let line = `"msg":"request","interaction_id":"${r.interactionId}","route":${json(routeName)},"method":${json(r.method)},"status":${r.status},"outcome":"${outcome}"`;
  if (r.reason) line += `,"reason":"${r.reason}"`;
  line += `,"latency_ms":${ms(seconds)}`;
  if (r.upstreamSeconds !== undefined) line += `,"upstream_latency_ms":${ms(r.upstreamSeconds)}`;
  const clientId = r.identity.claims?.clientId;
  if (clientId) line += `,"client_id":${json(clientId)}`;
  const thumbprint = r.identity.certificate?.thumbprint ?? r.thumbprint;
  if (thumbprint) line += `,"certificate_thumbprint":"${thumbprint}"`;
  if (r.peer) line += `,"peer":${json(r.peer)}`;
  obs.access(line);
}

/**
 * An Upgrade (WebSocket) request: the same checks as any request, then http-proxy carries the
 * tunnel. The request's headers are replaced by the cleaned set before http-proxy reads them.
 */
export async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, gateway: Gateway, obs: Observers, proxy: HttpProxy): Promise<void> {
  const started = performance.now();
  const interactionId = interactionIdOf(req.headers['x-fapi-interaction-id']);
  const method = req.method ?? 'GET';
  let route: RouteConfig | undefined;
  let identity: Identity = {};
  let status = 101;
  let reason: ErrorCode | 'internal' | undefined;
  try {
    checkRequestShape(req, gateway.config.listen.maxHeaders);
    const match = gateway.route(method, req.url ?? '/');
    route = match.route;
    // Only WebSocket upgrades are tunnelled (http-proxy drops anything else without an answer).
    if (method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      throw new GatewayError('bad_request', 'only GET upgrades to websocket are supported');
    }
    identity = await authorize(req, route, match.target, gateway);
    if (socket.destroyed) return;
    const upstream = upstreamOf(gateway, route);
    req.headers = headerObject(forwardedHeaders(req, gateway, route, identity, interactionId, true)) as IncomingMessage['headers'];
    req.url = match.target.encodedPath + match.target.query;
    proxy.ws(req, socket, head, { target: upstream.config.url, xfwd: false }, () => {
      obs.metrics.upstreamErrors.inc({ upstream: upstream.config.name, kind: 'refused' });
      // Once the 101 went out the socket is a tunnel: an HTTP error response there would be garbage.
      if ((socket as Socket).bytesWritten > 0) socket.destroy();
      else writeRaw(socket, { status: 502, headers: { 'content-type': 'application/json' }, body: '{"error":"bad_gateway","error_description":"upstream unavailable"}' }, interactionId);
    });
  } catch (error) {
    const gatewayError = isGatewayError(error) ? error : undefined;
    if (!gatewayError) obs.log.error({ err: String(error), interaction_id: interactionId }, 'unexpected error on upgrade');
    const response = gatewayError
      ? errorResponse(gatewayError, route?.auth, gateway.config.realm)
      : INTERNAL_ERROR;
    writeRaw(socket, response, interactionId);
    status = response.status;
    reason = gatewayError?.code ?? 'internal';
  }
  record(obs, { peer: req.socket.remoteAddress, method, routeName: route?.name, identity, status, reason, started, upstreamSeconds: undefined, interactionId });
}

function writeRaw(socket: Duplex, response: ErrorResponse, interactionId: string): void {
  if (!socket.destroyed) socket.end(rawResponse(response, interactionId));
}
