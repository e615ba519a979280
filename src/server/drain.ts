import { Server as NetServer, type Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * A keep-alive connection is closed during a drain once it has been idle this long. Closing
 * one the moment it goes idle races with a client that has just sent its next request on it
 * (the request fails with a reset); a connection quiet for a while is one no client is using.
 */
export const DRAIN_IDLE_CLOSE_MS = 500;
const SWEEP_EVERY_MS = 100;

interface ConnectionState {
  /** Responses under way on this connection (one, or a few with pipelining). */
  readonly responses: ServerResponse[];
  idleSince: number;
}

export interface ConnectionTracker {
  /**
   * Call for every request; the response's `close` ends it (and calls `onClose`). The request's
   * socket, not the response's: a pipelined response queued behind another has no socket yet.
   */
  track(req: IncomingMessage, res: ServerResponse, onClose?: () => void): void;
  readonly inFlight: () => number;
  /** Whether a response on this connection has sent its headers (an error written now would corrupt it). */
  readonly responding: (socket: object) => boolean;
  /**
   * Stops accepting, asks every response not yet started to close its connection, and closes
   * idle connections (see DRAIN_IDLE_CLOSE_MS). Resolves once every connection has ended, or
   * after `graceMs` (then remaining connections are destroyed); `true` if it drained in time.
   */
  drain(graceMs: number): Promise<boolean>;
}

/** Follows the traffic server's connections and requests, for a drain that drops nothing it can finish. */
export function trackConnections(server: Server, tls: boolean): ConnectionTracker {
  // In-flight responses are listed per connection, not in one Set: a Set of every response costs
  // ~5 µs CPU per request and ~30 MiB of RSS under load (BENCHMARKS.md), an array of one does not.
  const connections = new Map<Socket, ConnectionState>();
  let draining = false;

  const stateOf = (socket: Socket): ConnectionState => {
    let state = connections.get(socket);
    if (state === undefined) {
      state = { responses: [], idleSince: performance.now() };
      connections.set(socket, state);
      socket.once('close', () => connections.delete(socket));
    }
    return state;
  };
  // For HTTPS, requests arrive on the TLS socket, which `secureConnection` hands over.
  server.on(tls ? 'secureConnection' : 'connection', stateOf);
  // An upgraded connection (WebSocket) is a tunnel now, no longer an idle HTTP connection.
  server.on('upgrade', (_req, socket: Socket) => connections.delete(socket));

  return {
    track(req, res, onClose) {
      const state = stateOf(req.socket);
      state.responses.push(res);
      if (draining) res.setHeader('connection', 'close');
      let open = true;
      const closed = (): void => {
        if (!open) return;
        open = false;
        const i = state.responses.indexOf(res);
        if (i !== -1) state.responses.splice(i, 1);
        state.idleSince = performance.now();
        onClose?.();
      };
      // `on`, not `once`: a response closes once and is garbage after; once's wrapper is not needed.
      res.on('close', closed);
      // A pipelined response still queued when the connection goes never gets a socket, so never
      // 'close'; its request does. Destroyed, so whatever answers it later sees a client gone.
      if (res.socket === null) {
        req.once('close', () => {
          if (!req.socket.destroyed) return;
          res.destroy();
          closed();
        });
      }
    },
    responding: (socket) => connections.get(socket as Socket)?.responses.some((res) => res.headersSent) ?? false,
    inFlight: () => {
      let n = 0;
      for (const state of connections.values()) n += state.responses.length;
      return n;
    },
    async drain(graceMs) {
      draining = true;
      for (const state of connections.values()) {
        for (const res of state.responses) if (!res.headersSent) res.setHeader('connection', 'close');
      }
      // net's close, not http's: http's also destroys every idle connection at once (Node ≥ 19), the race above.
      const closed = new Promise<boolean>((resolve) => NetServer.prototype.close.call(server, () => resolve(true)));
      const sweep = (): void => {
        const now = performance.now();
        for (const [socket, state] of connections) {
          if (state.responses.length === 0 && now - state.idleSince >= DRAIN_IDLE_CLOSE_MS) socket.destroy();
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
