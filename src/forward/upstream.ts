import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import type { UpstreamConfig } from '../config/types.js';
import type { Duplex } from 'node:stream';
import type { UpstreamSeries } from '../observability/record.js';
import { clientResponseHeaders, type HeaderList } from './headers.js';
import { classify, type UpstreamErrorKind } from './classify.js';
import { openTunnel, type TunnelCall, type TunnelCompletion, type Tunnelling } from './upgrade.js';

export interface UpstreamCall {
  readonly method: string;
  /** Encoded path plus query. */
  readonly path: string;
  /** name, value, name, value… */
  readonly headers: HeaderList;
  readonly body: IncomingMessage | undefined;
  /** Sent back to the client as `x-fapi-interaction-id`, replacing any the upstream set. */
  readonly interactionId: string;
  /** A fresh DPoP nonce (RFC 9449 §8.2), sent back as DPoP-Nonce. */
  readonly dpopNonce?: string;
}

export interface ForwardOutcome {
  readonly status: number;
  /** Seconds to the upstream's response headers. */
  readonly upstreamSeconds: number;
  /** Body bytes written to the client. */
  readonly bytes: number;
}

export type { UpstreamErrorKind } from './classify.js';

/** What one forwarded request reports, exactly once: `forwarded` or `failed` (plus any countError). */
export interface ForwardCompletion {
  /** An upstream failure to count (a client that left is not one). */
  countError(kind: UpstreamErrorKind): void;
  /** The client stopped reading the response for `timeout_ms`: its connection is cut. */
  readStalled(): void;
  /** The upstream's response went to the client (or was cut after its headers went out). */
  forwarded(outcome: ForwardOutcome): void;
  /** Nothing went to the client yet: upstream_unavailable, upstream_timeout, or request_timeout (the client's body stalled). */
  failed(error: GatewayError): void;
}

/** A request on its way: the caller reports the client connection's `close` (one listener per response, the caller's). */
export interface Forwarded {
  /** The response's 'close' event: a client that went away before the response was complete aborts the upstream request. */
  clientClosed(): void;
}

export interface Upstream {
  readonly config: UpstreamConfig;
  /** Its metric series, resolved when the gateway was compiled. */
  readonly series: UpstreamSeries;
  /**
   * Streams the request to the upstream and its response back, with backpressure both ways.
   * Reports GatewayError (upstream_unavailable / upstream_timeout) only before response headers
   * went out; a failure after that destroys the client connection, which is all HTTP allows.
   * Callbacks, not a promise: this runs once per request.
   */
  forward(call: UpstreamCall, res: ServerResponse, completion: ForwardCompletion): Forwarded;
  /**
   * Tunnels a WebSocket upgrade on the same pool, within the same limits: a tunnel holds one of
   * `connections + max_pending` slots until it ends; beyond them, upstream_overloaded is thrown.
   */
  upgrade(call: TunnelCall, client: Duplex, completion: TunnelCompletion): Tunnelling;
  /** Requests dispatched and not yet ended, open tunnels included: on a connection or waiting for one. */
  inFlight(): number;
  close(): Promise<void>;
}

/** Seconds a client is told to wait when the upstream's connections and queue are full. */
export const OVERLOADED_RETRY_AFTER_SECONDS = 1;


export function createUpstream(config: UpstreamConfig, series: UpstreamSeries): Upstream {
  const pool = new Pool(config.url, {
    connections: config.connections,
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.timeoutMs,
    connectTimeout: Math.min(config.timeoutMs, 10000),
    keepAliveTimeout: 4000,
    pipelining: 1,
  });

  // undici's queue has no bound, and its headers timeout starts only once a request is on a
  // connection: certbound counts what it dispatched, refuses beyond connections + max_pending, and
  // gives a request that has to wait a deadline from dispatch.
  let inFlight = 0;
  const capacity = config.connections + config.maxPending;
  const ended = (): void => void inFlight--;

  const takeSlot = (completion: { countError(kind: UpstreamErrorKind): void }): void => {
    if (inFlight >= capacity) {
      completion.countError('overloaded');
      throw new GatewayError('upstream_overloaded', 'upstream busy: every connection and queue slot is taken', { retryAfter: OVERLOADED_RETRY_AFTER_SECONDS });
    }
  };

  function forward(call: UpstreamCall, res: ServerResponse, completion: ForwardCompletion): Forwarded {
    takeSlot(completion);
    const waits = inFlight >= config.connections;
    inFlight++;
    const forwarding = new Forwarding(call, res, completion, config.timeoutMs, waits, ended);
    pool.dispatch({ method: call.method as Dispatcher.HttpMethod, path: call.path, headers: call.headers, body: call.body ?? null }, forwarding);
    return forwarding;
  }

  function upgrade(call: TunnelCall, client: Duplex, completion: TunnelCompletion): Tunnelling {
    takeSlot(completion);
    inFlight++;
    const freeSlot: TunnelCompletion = {
      ...completion,
      ended: () => {
        ended();
        completion.ended();
      },
    };
    return openTunnel(pool, call, client, { timeoutMs: config.timeoutMs, idleTimeoutMs: config.tunnelIdleTimeoutMs }, freeSlot);
  }

  let closing: Promise<void> | undefined;
  return { config, series, forward, upgrade, inFlight: () => inFlight, close: () => (closing ??= pool.close()) };
}

/**
 * One request through undici's dispatch API: the upstream's body is written straight into `res`
 * (pausing the upstream while `res` is full), and a client that goes away aborts the upstream
 * request. Cheaper per request than `request` + `stream.pipeline`: no intermediate Readable, no
 * AbortController, no pipeline bookkeeping.
 *
 * Three clocks, each `timeout_ms`: a request that waits for a connection must have its response
 * headers by then from dispatch; a request body may pause no longer (the client's, not the
 * upstream's backpressure); a client that stops reading the response may stall it no longer.
 */
class Forwarding implements Dispatcher.DispatchHandler, Forwarded {
  private readonly started = performance.now();
  private controller: Dispatcher.DispatchController | undefined;
  /** The client went away before the response was complete. */
  private clientGone = false;
  /** undici reported the end (or an error): nothing left to abort. */
  private ended = false;
  /** The completion was told already (a deadline that passed while the request waited). */
  private reported = false;
  private expired: 'deadline' | 'body' | undefined;
  private status = 0;
  private upstreamSeconds = 0;
  private bytes = 0;

  /** A client that stops reading must not hold an upstream connection for ever. */
  private stalled: NodeJS.Timeout | undefined;
  /** The deadline from dispatch, for a request that had to wait for a connection. */
  private deadline: NodeJS.Timeout | undefined;
  /** The request body's progress check. */
  private bodyCheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly call: UpstreamCall,
    private readonly res: ServerResponse,
    private readonly completion: ForwardCompletion,
    private readonly timeoutMs: number,
    waits: boolean,
    private readonly onEnd: () => void,
  ) {
    // The client may have gone while the token was being checked: its 'close' already fired.
    if (res.destroyed) this.clientGone = true;
    if (waits) this.deadline = setTimeout(() => this.deadlinePassed(), timeoutMs);
  }

  clientClosed(): void {
    if (this.ended || this.res.writableFinished || this.clientGone) return;
    this.clientGone = true;
    this.controller?.abort(new undiciErrors.RequestAbortedError());
  }

  /** No response headers `timeout_ms` after dispatch. A request still queued is answered now and dropped when undici gets to it. */
  private deadlinePassed(): void {
    this.deadline = undefined;
    if (this.status !== 0 || this.ended) return;
    this.expired = 'deadline';
    if (this.controller) return this.controller.abort(new undiciErrors.HeadersTimeoutError());
    this.reported = true;
    // A client that left while its request waited is not an upstream failure.
    if (!this.clientGone) this.completion.countError('timeout');
    this.completion.failed(new GatewayError('upstream_timeout', 'upstream did not answer in time'));
  }

  /** Checks every `timeout_ms` that the client's body moved on; undici pausing it (upstream backpressure) does not count. */
  private watchBody(body: IncomingMessage): void {
    // Kept: undici sets body.socket to null when it is done with the body.
    const socket = body.socket;
    let seen = socket.bytesRead;
    const check = (): void => {
      this.bodyCheck = undefined;
      if (this.ended || body.complete) return;
      const now = socket.bytesRead;
      if (now !== seen || body.isPaused()) {
        seen = now;
        this.bodyCheck = setTimeout(check, this.timeoutMs);
        return;
      }
      this.expired = 'body';
      this.controller?.abort(new undiciErrors.RequestAbortedError());
    };
    this.bodyCheck = setTimeout(check, this.timeoutMs);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone || this.reported) return controller.abort(new undiciErrors.RequestAbortedError());
    const body = this.call.body;
    if (body === undefined || body.complete) return;
    // From here a moving upload is judged by its progress, not by the deadline from dispatch.
    this.stopDeadline();
    this.watchBody(body);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, not forwarded
    this.status = statusCode;
    this.upstreamSeconds = (performance.now() - this.started) / 1000;
    this.stopDeadline();
    const out = clientResponseHeaders(headers);
    out['x-fapi-interaction-id'] = this.call.interactionId;
    if (this.call.dpopNonce !== undefined) out['dpop-nonce'] = this.call.dpopNonce;
    this.res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res.destroyed) {
      this.clientGone = true;
      controller.abort(new undiciErrors.RequestAbortedError());
      return;
    }
    this.bytes += chunk.length;
    if (this.res.write(chunk)) return;
    controller.pause();
    this.stalled = setTimeout(() => {
      this.completion.readStalled();
      this.clientGone = true;
      controller.abort(new undiciErrors.RequestAbortedError());
      this.res.destroy();
    }, this.timeoutMs);
    this.res.once('drain', () => {
      clearTimeout(this.stalled);
      controller.resume();
    });
  }

  onResponseEnd(): void {
    this.finish();
    this.res.end();
    this.completion.forwarded({ status: this.status, upstreamSeconds: this.upstreamSeconds, bytes: this.bytes });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.finish();
    if (this.reported) return;
    if (this.status === 0) {
      if (this.expired === 'body') {
        this.completion.failed(new GatewayError('request_timeout', 'the request body stalled'));
        return;
      }
      const kind = this.expired === 'deadline' ? 'timeout' : classify(error);
      // A client that left is not an upstream failure.
      if (!this.clientGone) this.completion.countError(kind);
      this.completion.failed(kind === 'timeout' ? new GatewayError('upstream_timeout', 'upstream did not answer in time') : new GatewayError('upstream_unavailable', 'upstream unavailable'));
      return;
    }
    // Headers went out: all HTTP allows now is to cut the client's connection.
    if (!this.clientGone && this.expired !== 'body') this.completion.countError(classify(error));
    this.res.destroy();
    this.completion.forwarded({ status: this.status, upstreamSeconds: this.upstreamSeconds, bytes: this.bytes });
  }

  private stopDeadline(): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
  }

  /** undici is done with the request: once. */
  private finish(): void {
    this.ended = true;
    clearTimeout(this.stalled);
    clearTimeout(this.deadline);
    clearTimeout(this.bodyCheck);
    this.onEnd();
  }
}
