// A fake authorization server: RFC 7662 introspection that answers every token as active and
// bound to one certificate, after `delayMs`. GET /stats reports how many calls it answered.
// With `dpop`, a token starting with `dpop.tokenPrefix` is instead a DPoP token bound to one key
// (RFC 9449 §6.2: `token_type: "DPoP"`, `cnf.jkt`).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const { thumbprint, delayMs, dpop } = JSON.parse(process.argv[2] ?? '{}') as {
  thumbprint: string;
  delayMs: number;
  dpop?: { readonly jkt: string; readonly tokenPrefix: string };
};
let calls = 0;
const distinct = new Set<string>();

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ calls, distinct: distinct.size }));
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const token = new URLSearchParams(body).get('token') ?? '';
    calls++;
    distinct.add(token);
    const answer = JSON.stringify({
      active: true,
      client_id: 'tpp-bench',
      sub: 'user-1',
      scope: 'accounts payments',
      iss: 'https://as.bench',
      exp: Math.floor(Date.now() / 1000) + 7200,
      ...(dpop !== undefined && token.startsWith(dpop.tokenPrefix) ? { token_type: 'DPoP', cnf: { jkt: dpop.jkt } } : { cnf: { 'x5t#S256': thumbprint } }),
    });
    const send = () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  });
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
