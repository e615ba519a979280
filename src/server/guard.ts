import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Metrics } from '../observability/metrics.js';

/** What each client error Node reports is, for the answer and the metric. */
function kindOf(code: string | undefined): { kind: string; status: number; text: string } {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { kind: 'request_timeout', status: 408, text: 'Request Timeout' };
    case 'HPE_HEADER_OVERFLOW':
      return { kind: 'header_overflow', status: 431, text: 'Request Header Fields Too Large' };
    default:
      return { kind: 'parse_error', status: 400, text: 'Bad Request' };
  }
}

export interface GuardDeps {
  readonly metrics: Metrics;
  /** Whether a response on this connection has sent its headers already. */
  readonly responding: (socket: object) => boolean;
}

/**
 * The traffic listener's edges: connections refused beyond max_connections are counted, open
 * ones gauged, and a client Node gives up on (headers or request timeout, unparsable bytes, a
 * header block too large) gets one short answer, when nothing else is being written to it, and is
 * destroyed, never half-closed: destroying it aborts its request and that request's upstream call.
 */
export function guardTraffic(server: Server, deps: GuardDeps): void {
  const { metrics } = deps;
  server.on('drop', () => metrics.connectionsRefused.inc({ reason: 'max_connections' }));
  server.on('connection', (socket: Socket) => {
    metrics.connectionsOpen.inc();
    socket.once('close', () => metrics.connectionsOpen.dec());
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return void socket.destroy();
    const { kind, status, text } = kindOf(error.code);
    metrics.clientErrors.inc({ kind });
    if (socket.writable && !deps.responding(socket)) {
      socket.write(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    socket.destroy();
  });
}
