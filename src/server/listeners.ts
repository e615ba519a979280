import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { Config, ListenConfig, TlsListenConfig } from '../config/types.js';

/** Options that can change on reload through `setSecureContext`, without dropping connections. */
export function secureContextOptions(tls: TlsListenConfig): SecureContextOptions {
  return {
    cert: tls.cert.contents,
    key: tls.key.contents,
    ...(tls.clientCa ? { ca: tls.clientCa.contents } : {}),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: true,
  };
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The traffic listener: HTTPS requesting (not requiring) client certificates when `listen.tls`
 * is set, so a request without one gets a proper OAuth error instead of a failed handshake.
 */
export function createTrafficServer(config: Config, onRequest: RequestListener): Server {
  const base: ServerOptions = {
    maxHeaderSize: config.listen.maxHeaderBytes,
    // Node checks the headers and request timeouts only this often (default 30 s): a slow client would outlive them by that much.
    connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
    // certbound answers an HTTP/1.1 request without Host itself (checkRequestShape), in turn, with its
    // interaction id: Node's own 400 would jump the queue of pipelined requests.
    requireHostHeader: false,
    ...timeouts(config.listen),
  };
  const tls = config.listen.tls;
  if (!tls) return limited(createHttpServer(base, onRequest), config.listen.maxConnections);
  const server = createHttpsServer(
    // handshakeTimeout: Node's default is 120 s, a slot held by a client that never finishes the handshake.
    { ...base, ...secureContextOptions(tls), requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], handshakeTimeout: config.listen.headersTimeoutMs },
    onRequest,
  );
  // A renegotiation could swap the client certificate under a per-connection thumbprint.
  server.on('secureConnection', (socket: TLSSocket) => socket.disableRenegotiation());
  return limited(server, config.listen.maxConnections);
}

/** How often Node looks for connections past the headers or request timeout. */
export const CONNECTIONS_CHECKING_INTERVAL_MS = 500;

/** Beyond max_connections Node closes a new connection at once and emits 'drop'. */
function limited(server: Server, maxConnections: number): Server {
  server.maxConnections = maxConnections;
  return server;
}

/** Node reads these from the server on every connection, so a reload can change them. */
function timeouts(listen: ListenConfig) {
  return {
    keepAliveTimeout: listen.keepAliveTimeoutMs,
    requestTimeout: listen.requestTimeoutMs,
    headersTimeout: listen.headersTimeoutMs,
    // One above the limit: a request past it arrives with one header too many (refused with 431) instead of silently cut.
    maxHeadersCount: listen.maxHeaders + 1,
  };
}

/** A reload's timeouts and limits, for connections and requests from now on. */
export function applyTimeouts(server: Server, listen: ListenConfig): void {
  Object.assign(server, timeouts(listen));
  limited(server, listen.maxConnections);
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
