import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import { refusedUpgradeHeaders, switchingProtocolsHeaders, type HeaderList } from './headers.js';
import { classify, type UpstreamErrorKind } from './classify.js';

export interface TunnelCall {
  /** Encoded path plus query. */
  readonly path: string;
  /** name, value…, cleaned by the caller; `connection` and `upgrade` are left out here (undici writes its own). */
  readonly headers: HeaderList;
  /** What the client sent after its request head: written to the upstream before anything else. */
  readonly head: Buffer;
  /** Sent back as `x-fapi-interaction-id`, replacing any the upstream set. */
  readonly interactionId: string;
}

export interface TunnelCompletion {
  /** An upstream failure to count (a client that left is not one). */
  countError(kind: UpstreamErrorKind): void;
  /** The upstream said 101, the client has certbound's cleaned 101, bytes flow. */
  opened(outcome: { status: 101; upstreamSeconds: number }): void;
  /** The upstream refused with an ordinary response, relayed to the client (`Connection: close`). */
  answered(outcome: { status: number; upstreamSeconds: number }): void;
  /** Nothing was written to the client: the caller answers (upstream_unavailable / upstream_timeout). */
  failed(error: GatewayError): void;
  /** Once, last: the attempt or tunnel is over and every socket it owns is closed. May run before openTunnel returns. */
  ended(): void;
}

export interface TunnelLimits {
  /** From dispatch to the upstream's answer, a wait for a pool connection included; also bounds a stalled refusal. */
  readonly timeoutMs: number;
  /** An open tunnel where no byte moved either way for this long is cut. */
  readonly idleTimeoutMs: number;
}

export interface Tunnelling {
  /** The client socket's 'close', if the caller tracks it (openTunnel listens too; idempotent). */
  clientClosed(): void;
}

/**
 * Tunnels one WebSocket upgrade through the upstream's own undici Pool, so its connectTimeout and
 * headersTimeout bound the handshake and its `connections` bound the handshakes in flight.
 *
 * undici hands the socket over on a 101 (lib/dispatcher/client-h1.js onUpgrade): it removes its
 * listeners, sets client[kSocket] = null and goes on with a new connection. A tunnel is no longer
 * one of the Pool's `connections`, and pool.close() does not close it: the caller counts tunnels
 * until ended() and closes them by destroying the client sockets.
 */
export function openTunnel(pool: Dispatcher, call: TunnelCall, client: Duplex, limits: TunnelLimits, completion: TunnelCompletion): Tunnelling {
  // A client that left while it was authorized costs no upstream connection.
  if (client.destroyed) {
    completion.ended();
    return CLIENT_GONE;
  }
  const tunnel = new Tunnel(call, client, limits, completion);
  pool.dispatch({ method: 'GET', path: call.path, headers: requestHeaders(call.headers), upgrade: 'websocket' }, tunnel);
  return tunnel;
}

const CLIENT_GONE: Tunnelling = Object.freeze({ clientClosed: () => undefined });

/** undici refuses an `upgrade` header and writes `connection: upgrade` itself. */
function requestHeaders(list: HeaderList): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = (list[i] as string).toLowerCase();
    if (name !== 'upgrade' && name !== 'connection') out.push(list[i] as string, list[i + 1] as string);
  }
  return out;
}


/** A response head as bytes: header values came through llhttp (no CR/LF), latin1 keeps them as sent. */
function responseHead(status: number, reason: string, headers: Record<string, string | string[]>): Buffer {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const name in headers) {
    const value = headers[name] as string | string[];
    for (const v of typeof value === 'string' ? [value] : value) head += `${name}: ${v}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** Ends a socket and closes it once its last bytes are out (the idle or linger timer bounds a peer that never reads). */
function closeAfterFlush(socket: Duplex): void {
  // end's callback runs on 'finish', or at once with an error when the socket finished already.
  if (!socket.destroyed) socket.end(() => socket.destroy());
}

/**
 * One upgrade through undici's dispatch API. One timer at a time: the handshake deadline, then
 * either the idle bound of the open tunnel or the stall and linger bounds of a relayed refusal.
 */
class Tunnel implements Dispatcher.DispatchHandler, Tunnelling {
  private readonly started = performance.now();
  private controller: Dispatcher.DispatchController | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The upgraded socket, once the upstream said 101. */
  private upstream: Duplex | undefined;
  private upstreamClosed = false;
  private clientGone = false;
  /** undici is done with the request: upgraded, answered, or failed. */
  private undiciDone = false;
  /** failed() was called: the client is the caller's again. */
  private reported = false;
  /** The handshake deadline aborted the request. */
  private expired = false;
  /** The status written to the client; 0 while nothing was. */
  private status = 0;
  private upstreamSeconds = 0;
  /** A relayed refusal's Content-Length (-1: none) and the body bytes relayed so far. */
  private declaredLength = -1;
  private relayed = 0;
  private over = false;

  constructor(
    private readonly call: TunnelCall,
    private readonly client: Duplex,
    private readonly limits: TunnelLimits,
    private readonly completion: TunnelCompletion,
  ) {
    client.on('error', () => client.destroy());
    client.once('close', () => this.clientClosed());
    this.arm(limits.timeoutMs, () => this.deadlinePassed());
  }

  clientClosed(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    if (this.upstream) this.upstream.destroy();
    else if (!this.undiciDone && this.controller) this.controller.abort(new undiciErrors.RequestAbortedError());
    // Still queued or connecting: aborted in onRequestStart.
    else if (this.status === 0) this.disarm();
    this.maybeEnd();
  }

  /** No answer timeoutMs after dispatch. A request still waiting for a connection is reported now and aborted when undici gets to it. */
  private deadlinePassed(): void {
    this.timer = undefined;
    this.expired = true;
    if (this.controller) return this.controller.abort(new undiciErrors.HeadersTimeoutError());
    this.report('timeout');
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone || this.reported) controller.abort(new undiciErrors.RequestAbortedError());
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, _statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.undiciDone = true;
    this.disarm();
    // undici removed its listeners: from here every error on the socket is ours to handle.
    this.upstream = socket;
    socket.on('error', () => {
      if (this.clientGone) return;
      this.completion.countError('reset');
      this.client.destroy();
    });
    socket.once('close', () => {
      this.upstreamClosed = true;
      if (this.status === 101) closeAfterFlush(this.client);
      this.maybeEnd();
    });
    // Aborted requests are not upgraded: this is only a guard.
    if (this.clientGone || this.reported) return void socket.destroy();
    this.status = 101;
    this.upstreamSeconds = (performance.now() - this.started) / 1000;
    if (this.call.head.length > 0) socket.write(this.call.head);
    this.client.write(responseHead(101, 'Switching Protocols', switchingProtocolsHeaders(headers, this.call.interactionId)));
    this.completion.opened({ status: 101, upstreamSeconds: this.upstreamSeconds });
    // Bytes undici read past the 101 were unshifted back into the socket: pipe() reads them first.
    const client = this.client;
    this.arm(this.limits.idleTimeoutMs, () => {
      socket.destroy();
      client.destroy();
    });
    const moved = (): void => void this.timer?.refresh();
    socket.on('data', moved);
    client.on('data', moved);
    socket.pipe(client);
    client.pipe(socket);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx before the final answer (a 101 without `Upgrade` ends in an undici assertion error).
    if (statusCode < 200) return;
    this.disarm();
    this.status = statusCode;
    this.upstreamSeconds = (performance.now() - this.started) / 1000;
    const length = headers['content-length'];
    if (typeof length === 'string' && /^[0-9]{1,15}$/.test(length)) this.declaredLength = Number(length);
    this.client.write(responseHead(statusCode, STATUS_CODES[statusCode] ?? '', refusedUpgradeHeaders(headers, this.call.interactionId)));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.relayed += chunk.length;
    if (this.client.write(chunk)) return;
    controller.pause();
    this.arm(this.limits.timeoutMs, () => this.client.destroy());
    this.client.once('drain', () => {
      this.disarm();
      controller.resume();
    });
  }

  onResponseEnd(): void {
    this.undiciDone = true;
    this.completion.answered({ status: this.status, upstreamSeconds: this.upstreamSeconds });
    // The body is framed by the close: end, and read (dropping) what the client still sends so its FIN is seen.
    this.arm(this.limits.timeoutMs, () => this.client.destroy());
    this.client.end();
    this.client.resume();
    this.maybeEnd();
  }

  /** Called without a controller when undici failed the request before it reached a connection. */
  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    this.undiciDone = true;
    this.disarm();
    // undici 7 (client-h1.js onHttpSocketEnd): a FIN while paused on the last chunk of a response
    // without `Connection: close` is 'other side closed', though every byte was delivered.
    if (this.status !== 0 && !this.clientGone && this.relayed === this.declaredLength) return this.onResponseEnd();
    if (this.status !== 0) {
      // The refusal's head went out: all that is left is to cut the client's connection.
      if (!this.clientGone) this.completion.countError(this.expired ? 'timeout' : classify(error));
      this.client.destroy();
      this.completion.answered({ status: this.status, upstreamSeconds: this.upstreamSeconds });
    } else this.report(this.expired ? 'timeout' : classify(error));
    this.maybeEnd();
  }

  private report(kind: UpstreamErrorKind): void {
    if (this.reported || this.clientGone) return;
    this.reported = true;
    this.completion.countError(kind);
    this.completion.failed(kind === 'timeout' ? new GatewayError('upstream_timeout', 'upstream did not answer in time') : new GatewayError('upstream_unavailable', 'upstream unavailable'));
  }

  private arm(ms: number, fire: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(fire, ms);
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** ended() once undici is done, the upstream socket (if any) closed, and a client certbound wrote to closed. */
  private maybeEnd(): void {
    if (this.over || !this.undiciDone) return;
    if (this.upstream && !this.upstreamClosed) return;
    if (this.status !== 0 && !this.clientGone) return;
    this.over = true;
    this.disarm();
    this.completion.ended();
  }
}
