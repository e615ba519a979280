import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';

export interface Listening {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Listening> {
  const server = createServer(handler);
  // Upgraded sockets leave the server's connection tracking: close them by hand.
  const upgraded = new Set<import('node:stream').Duplex>();
  server.on('upgrade', (_req, socket: import('node:stream').Duplex) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface IntrospectionCall {
  readonly authorization: string | undefined;
  readonly form: URLSearchParams;
}

/** A small RFC 7662 endpoint answering from a table: token → response body. */
export async function startIntrospection(table: Map<string, Record<string, unknown>>) {
  const calls: IntrospectionCall[] = [];
  /** `delayMs`: how long each answer waits (a slow server); settable while it runs. */
  const control = { delayMs: 0 };
  const listening = await serve((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      calls.push({ authorization: req.headers.authorization, form });
      const answer = table.get(form.get('token') ?? '') ?? { active: false };
      const send = () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      if (control.delayMs > 0) setTimeout(send, control.delayMs);
      else send();
    });
  });
  return Object.assign(control, { ...listening, calls, endpoint: `${listening.url}/introspect` });
}

/** What `…/big` answers: large enough to fill the socket buffers of a client that does not read. */
export const BIG = Buffer.alloc(8 * 1024 * 1024, 7);

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly bodySha256: string;
  readonly bodyBytes: number;
}

/**
 * An upstream that records what it received. `/stream` sends a first chunk and waits for
 * `release()` before finishing; `…/slow` never answers; `…/big` sends 8 MiB; everything else answers 200 JSON.
 */
export async function startUpstream() {
  const seen: SeenRequest[] = [];
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const listening = await serve((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodySha256: hash.digest('hex'), bodyBytes: bytes });
      if (req.url?.endsWith('/stream')) {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'yes' });
        res.write('first chunk\n');
        void released.then(() => res.end('last chunk\n'));
        return;
      }
      if (req.url?.endsWith('/slow')) return;
      if (req.url?.endsWith('/big')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG.length) });
        res.end(BIG);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'x-upstream': 'yes', 'x-fapi-interaction-id': 'upstream-made-up' });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  listening.server.on('upgrade', (req: IncomingMessage, socket) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodySha256: '', bodyBytes: 0 });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
  });
  return { ...listening, seen, release };
}
