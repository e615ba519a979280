// The baseline: the least a Node reverse proxy can do. node:http in, undici Pool out, streaming
// both ways, hop-by-hop headers dropped, same pool size as a certbound upstream (128).
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const { upstream } = JSON.parse(process.argv[2] ?? '{}') as { upstream: string };
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']);

function requestHeaders(req: IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in req.headers) {
    const value = req.headers[name];
    if (value !== undefined && !HOP.has(name)) out[name] = value;
  }
  return out;
}

const server = createServer((req, res) => {
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
  pool.stream(
    { method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers: requestHeaders(req), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      const out: Record<string, string | string[]> = {};
      for (const name in headers) {
        const value = headers[name];
        if (value !== undefined && !HOP.has(name)) out[name] = value;
      }
      res.writeHead(statusCode, out);
      return res;
    },
    (error) => {
      if (!error) return;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  );
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => void pool.close().then(() => process.exit(0)));
});
