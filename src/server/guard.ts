import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Metrics } from '../observability/metrics.js';
import { uuidV4 } from '../uuid.js';
import { errorResponse, rawResponse } from '../respond.js';
import { GatewayError } from '../errors.js';

/** What each client error Node reports is: the metric's kind, and the error certbound answers it with. */
function kindOf(code: string | undefined): { kind: string; error: GatewayError } {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { kind: 'request_timeout', error: new GatewayError('request_timeout', 'the request did not arrive in time') };
    case 'HPE_HEADER_OVERFLOW':
      // Also what Node 24's parser reports for a header block with too many lines, before certbound sees it.
      return { kind: 'header_overflow', error: new GatewayError('too_many_headers', 'request header fields too large') };
    default:
      return { kind: 'parse_error', error: new GatewayError('bad_request', 'malformed request') };
  }
}

export interface GuardDeps {
  readonly metrics: Metrics;
  /** Whether an error written now on this connection would answer the request it is about. */
  readonly mayAnswer: (socket: object) => boolean;
  /** Runs `fn` once no request is under way on this connection. */
  readonly afterResponses: (socket: object, fn: () => void) => void;
  /** Tells the requests under way on this connection that certbound cuts it (recorded as a timeout, not as a client that left). */
  readonly cut: (socket: object) => void;
}

/** A client that never reads its last answer is destroyed this long after it (an idle socket's FIN is not waited for). */
const LINGER_MS = 1000;

/** The same JSON error body and headers as any refusal (respond.ts), framed for a bare socket. */
const answer = (error: GatewayError): string => rawResponse(errorResponse(error, undefined, 'certbound'), uuidV4());

/**
 * The traffic listener's edges: connections refused beyond max_connections are counted, open
 * ones gauged, and a client Node gives up on is answered and destroyed, never left half-closed:
 * destroying it aborts its request and that request's upstream call.
 * - A timeout (headers or whole request): a 408 when it can only be read as the answer to the
 *   request that timed out, then destroyed at once. Requests still under way on that connection
 *   end with it.
 * - Bytes that do not parse (a bad request line, a header block too large) after pipelined
 *   requests: those requests are answered first, in order, then the 400 or 431, then the end.
 *   Bytes after a request that closes the connection (`Connection: close`, HTTP/1.0) are
 *   dropped: that request's answer is the last.
 */
export function guardTraffic(server: Server, deps: GuardDeps): void {
  const { metrics } = deps;
  // Node reports a parse error again for every later chunk on the same socket: handle it once.
  const handled = new WeakSet<Duplex>();
  server.on('drop', () => metrics.connectionsRefused.inc({ reason: 'max_connections' }));
  // A TLS handshake not done within handshakeTimeout (listen.headers_timeout_ms) holds a slot: counted, destroyed.
  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') metrics.clientErrors.inc({ kind: 'tls_handshake_timeout' });
    socket.destroy();
  });
  server.on('connection', (socket: Socket) => {
    metrics.connectionsOpen.inc();
    socket.once('close', () => metrics.connectionsOpen.dec());
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return void socket.destroy();
    if (handled.has(socket)) return;
    handled.add(socket);
    const { kind, error: refusal } = kindOf(error.code);
    metrics.clientErrors.inc({ kind });
    if (kind === 'request_timeout') {
      if (socket.writable && deps.mayAnswer(socket)) socket.write(answer(refusal));
      deps.cut(socket);
      return void socket.destroy();
    }
    deps.afterResponses(socket, () => {
      // Already ending (the last answer said Connection: close): destroying it now would drop what
      // is still buffered of that answer. Node destroys it once flushed; send_timeout_ms bounds a
      // client that stops reading it.
      if (!socket.writable) return;
      const linger = setTimeout(() => socket.destroy(), LINGER_MS);
      linger.unref();
      const last = error.code === 'HPE_CLOSED_CONNECTION' ? '' : answer(refusal);
      socket.end(last, () => {
        clearTimeout(linger);
        socket.destroy();
      });
    });
  });
}
