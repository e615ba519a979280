// The least a Node reverse proxy can do, shared by the bare proxies (passthrough.ts over HTTP,
// tls-passthrough.ts over TLS): node:http in, an undici Pool out, streaming both ways, hop-by-hop
// headers dropped both ways.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher, Pool } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']);

function withoutHop(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP.has(name)) out[name] = value;
  }
  return out;
}

/** Forwards `req` through `pool` into `res`; `onHead` sees the upstream's response headers first. */
export function forward(pool: Pool, req: IncomingMessage, res: ServerResponse, onHead?: (headers: Record<string, string | string[] | undefined>) => void): void {
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
  pool.stream(
    { method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers: withoutHop(req.headers), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      onHead?.(headers);
      res.writeHead(statusCode, withoutHop(headers));
      return res;
    },
    (error) => {
      if (!error) return;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  );
}
