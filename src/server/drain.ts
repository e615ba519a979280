import { Server as NetServer, type Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { ConnectionCertificates } from '../certificate/types.js';

/**
 * A keep-alive connection is closed during a drain once it has been idle this long. Closing
 * one the moment it goes idle races with a client that has just sent its next request on it
 * (the request fails with a reset); a connection quiet for a while is one no client is using.
 */
export const DRAIN_IDLE_CLOSE_MS = 500;
const SWEEP_EVERY_MS = 100;

/** Requests a connection may have under way at once (pipelined); one more and the connection is cut. */
export const MAX_PIPELINED = 64;
/** How often connections are checked for a client that stopped reading what certbound writes. */
const SEND_CHECK_EVERY_MS = 500;

/** A request on a connection, from its arrival until its response closes. */
interface Entry {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly request: Startable;
  started: boolean;
}

interface ConnectionState {
  /** Requests under way on this connection, in arrival order (one, or a few with pipelining). */
  readonly entries: Entry[];
  /** What the certificate readers keep about this connection: it lives and dies with it. */
  readonly certificates: ConnectionCertificates;
  idleSince: number;
  /** Called once no request is under way (see afterResponses). */
  idle: (() => void) | undefined;
  /** The socket's bytesWritten when last checked with bytes waiting to go out, and since when it has not moved. */
  written: number;
  stalledSince: number;
}

export interface TrackerOptions {
  /** `listen.send_timeout_ms`, read at every check (a reload changes it). */
  readonly sendTimeoutMs: () => number;
  /** A connection cut for a limit: too many pipelined requests, or a client that stopped reading. */
  readonly onLimit: (kind: 'pipeline_overflow' | 'read_stalled') => void;
}

/** What the tracker runs: the request handler's start, or its end when it never ran (the client left first). */
export interface Startable {
  start(): void;
  /** The response's 'close' event. */
  closed(): void;
  /** certbound is about to cut the connection for a limit (the client read nothing for send_timeout_ms): not a client that left. */
  cut(): void;
  /** Closed before it started: nothing to run; the handler's bookkeeping ends. */
  abandoned(): void;
}

export interface ConnectionTracker {
  /**
   * Call for every request. Starts it now, or, when requests pipelined before it are still under
   * way on its connection, once they have ended: one request at a time per connection, as nginx
   * and Envoy do. RFC 9112 §9.3.2 allows parallel processing only when every request of the
   * sequence is safe, which a server cannot know of requests not yet sent, and answers must go in
   * order anyway. The response's `close` ends it (`onClose`, then `request.closed`). The request's
   * socket, not the response's: a pipelined response queued behind another has no socket yet.
   */
  track(req: IncomingMessage, res: ServerResponse, request: Startable, onClose: () => void): void;
  /** What the certificate readers keep on this request's connection (a new one for a socket no longer tracked: an upgrade). */
  readonly certificatesOf: (socket: Socket) => ConnectionCertificates;
  readonly inFlight: () => number;
  /**
   * Whether an error response written now on this connection would answer the request it is
   * about: no request is under way, or only one whose body is still arriving and whose response
   * has not started. Otherwise it would be read as the answer to an earlier request.
   */
  readonly mayAnswer: (socket: object) => boolean;
  /** Runs `fn` once no request is under way on this connection (at once if none is). */
  readonly afterResponses: (socket: object, fn: () => void) => void;
  /** Tells every request under way on this connection that certbound is cutting it for a limit. */
  readonly cut: (socket: object) => void;
  /**
   * Stops accepting, asks every response not yet started to close its connection, and closes
   * idle connections (see DRAIN_IDLE_CLOSE_MS). Resolves once every connection has ended, or
   * after `graceMs` (then remaining connections are destroyed); `true` if it drained in time.
   */
  drain(graceMs: number): Promise<boolean>;
}

/**
 * Starts the request now first in line; on a connection that is gone or closing (the last
 * answer said `Connection: close`: Node ends the socket), ends every one that never started.
 */
function startNext(state: ConnectionState, socket: Socket): void {
  for (const entry of state.entries) {
    if (entry.started) continue;
    entry.started = true;
    if (socket.destroyed || !socket.writable) entry.request.abandoned();
    else return entry.request.start();
  }
}

/** Follows the traffic server's connections and requests, for a drain that drops nothing it can finish. */
export function trackConnections(server: Server, tls: boolean, options: TrackerOptions): ConnectionTracker {
  // In-flight requests are listed per connection, not in one Set: a Set of every response costs
  // ~5 µs CPU per request and ~30 MiB of RSS under load (BENCHMARKS.md), an array of one does not.
  const connections = new Map<Socket, ConnectionState>();
  let draining = false;

  const stateOf = (socket: Socket): ConnectionState => {
    let state = connections.get(socket);
    if (state === undefined) {
      state = { entries: [], certificates: {}, idleSince: performance.now(), idle: undefined, written: 0, stalledSince: 0 };
      connections.set(socket, state);
      socket.once('close', () => connections.delete(socket));
    }
    return state;
  };
  // For HTTPS, requests arrive on the TLS socket, which `secureConnection` hands over.
  server.on(tls ? 'secureConnection' : 'connection', stateOf);
  // An upgraded connection (WebSocket) is a tunnel now, no longer an idle HTTP connection. An
  // upgrade pipelined behind requests still under way would be answered before them: refused.
  server.on('upgrade', (_req, socket: Socket) => {
    if ((connections.get(socket)?.entries.length ?? 0) > 0) return void socket.destroy();
    connections.delete(socket);
  });

  // A client that stops reading: bytes wait in the socket and bytesWritten stops moving. Node has
  // no timer for that once a request is complete; this check cuts it after send_timeout_ms.
  const checkSends = (): void => {
    const now = performance.now();
    const limit = options.sendTimeoutMs();
    for (const [socket, state] of connections) {
      if (socket.writableLength === 0 || socket.bytesWritten !== state.written) {
        state.written = socket.bytesWritten;
        state.stalledSince = now;
      } else if (now - state.stalledSince >= limit) {
        options.onLimit('read_stalled');
        for (const entry of state.entries) entry.request.cut();
        socket.destroy();
      }
    }
  };
  const sendChecker = setInterval(checkSends, SEND_CHECK_EVERY_MS);
  sendChecker.unref();
  server.once('close', () => clearInterval(sendChecker));

  return {
    track(req, res, request, onClose) {
      // Kept: undici sets req.socket to null once it has sent a request body.
      const socket = req.socket;
      const state = stateOf(socket);
      const entry: Entry = { req, res, request, started: false };
      state.entries.push(entry);
      // Node keeps parsing while queued requests write nothing: without a bound one connection
      // could queue requests until memory runs out.
      if (state.entries.length > MAX_PIPELINED && !socket.destroyed) {
        options.onLimit('pipeline_overflow');
        socket.destroy();
      }
      if (draining) res.setHeader('connection', 'close');
      let open = true;
      const closed = (): void => {
        if (!open) return;
        open = false;
        const i = state.entries.indexOf(entry);
        if (i !== -1) state.entries.splice(i, 1);
        state.idleSince = performance.now();
        if (!entry.started) {
          entry.started = true;
          request.abandoned();
        }
        onClose();
        request.closed();
        if (state.entries.length > 0) return startNext(state, socket);
        const idle = state.idle;
        state.idle = undefined;
        idle?.();
      };
      // `on`, not `once`: a response closes once and is garbage after; once's wrapper is not needed.
      res.on('close', closed);
      // A pipelined response still queued when the connection goes never gets a socket, so never
      // 'close'; its request does. Destroyed, so whatever answers it later sees a client gone.
      if (res.socket === null) {
        req.once('close', () => {
          if (!socket.destroyed) return;
          res.destroy();
          closed();
        });
      }
      if (state.entries.length === 1) {
        entry.started = true;
        request.start();
      }
    },
    certificatesOf: (socket) => connections.get(socket)?.certificates ?? {},
    cut: (socket) => {
      for (const entry of connections.get(socket as Socket)?.entries ?? []) entry.request.cut();
    },
    afterResponses(socket, fn) {
      const state = connections.get(socket as Socket);
      if (state === undefined || state.entries.length === 0) return fn();
      state.idle = fn;
    },
    mayAnswer: (socket) => {
      const entries = connections.get(socket as Socket)?.entries ?? [];
      const only = entries[0];
      return entries.length === 0 || (entries.length === 1 && only !== undefined && !only.req.complete && !only.res.headersSent);
    },
    inFlight: () => {
      let n = 0;
      for (const state of connections.values()) n += state.entries.length;
      return n;
    },
    async drain(graceMs) {
      draining = true;
      for (const state of connections.values()) {
        for (const { res } of state.entries) if (!res.headersSent) res.setHeader('connection', 'close');
      }
      // net's close, not http's: http's also destroys every idle connection at once (Node ≥ 19), the race above.
      const closed = new Promise<boolean>((resolve) => NetServer.prototype.close.call(server, () => resolve(true)));
      const sweep = (): void => {
        const now = performance.now();
        for (const [socket, state] of connections) {
          if (state.entries.length === 0 && now - state.idleSince >= DRAIN_IDLE_CLOSE_MS) socket.destroy();
        }
      };
      sweep();
      const sweeper = setInterval(sweep, SWEEP_EVERY_MS);
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
      const drained = await Promise.race([closed, expired]);
      clearInterval(sweeper);
      clearTimeout(timer);
      server.closeAllConnections();
      return drained;
    },
  };
}
