import { Server as NetServer, type Socket } from 'node:net';
import type { Server, ServerResponse } from 'node:http';

/**
 * A keep-alive connection is closed during a drain once it has been idle this long. Closing
 * one the moment it goes idle races with a client that has just sent its next request on it
 * (the request fails with a reset); a connection quiet for a while is one no client is using.
 */
export const DRAIN_IDLE_CLOSE_MS = 500;
const SWEEP_EVERY_MS = 100;

interface ConnectionState {
  active: number;
  idleSince: number;
}

export interface ConnectionTracker {
  /** Call for every request; the response's `close` ends it (and calls `onClose`). */
  track(res: ServerResponse, onClose?: () => void): void;
  readonly inFlight: () => number;
  /**
   * Stops accepting, asks every response not yet started to close its connection, and closes
   * idle connections (see DRAIN_IDLE_CLOSE_MS). Resolves once every connection has ended, or
   * after `graceMs` (then remaining connections are destroyed); `true` if it drained in time.
   */
  drain(graceMs: number): Promise<boolean>;
}

/** Follows the traffic server's connections and requests, for a drain that drops nothing it can finish. */
export function trackConnections(server: Server, tls: boolean): ConnectionTracker {
  const connections = new Map<Socket, ConnectionState>();
  const responses = new Set<ServerResponse>();
  let draining = false;

  // For HTTPS, requests arrive on the TLS socket, which `secureConnection` hands over.
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    connections.set(socket, { active: 0, idleSince: performance.now() });
    socket.once('close', () => connections.delete(socket));
  });
  // An upgraded connection (WebSocket) is a tunnel now, no longer an idle HTTP connection.
  server.on('upgrade', (_req, socket: Socket) => connections.delete(socket));

  return {
    track(res, onClose) {
      responses.add(res);
      const state = connections.get(res.socket as Socket);
      if (state) state.active++;
      if (draining) res.setHeader('connection', 'close');
      res.once('close', () => {
        responses.delete(res);
        onClose?.();
        if (!state) return;
        state.active--;
        state.idleSince = performance.now();
      });
    },
    inFlight: () => responses.size,
    async drain(graceMs) {
      draining = true;
      for (const res of responses) if (!res.headersSent) res.setHeader('connection', 'close');
      // net's close, not http's: http's also destroys every idle connection at once (Node ≥ 19), the race above.
      const closed = new Promise<boolean>((resolve) => NetServer.prototype.close.call(server, () => resolve(true)));
      const sweep = (): void => {
        const now = performance.now();
        for (const [socket, state] of connections) {
          if (state.active === 0 && now - state.idleSince >= DRAIN_IDLE_CLOSE_MS) socket.destroy();
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
