// A fake authorization server: RFC 7662 introspection that answers every token as active and
// bound to one certificate, after `delayMs`. GET /stats reports how many calls it answered.
// With `dpop`, a token starting with `dpop.tokenPrefix` is instead a DPoP token bound to one key
// (RFC 9449 §6.2: `token_type: "DPoP"`, `cnf.jkt`).
// With `tls` (PEM cert and key) it serves HTTPS: mod_auth_openidc refuses an http introspection
// endpoint. With `client`, a call must authenticate as that client (client_secret_basic, or
// client_id and client_secret in the form) or gets 401 invalid_client; /stats then also counts those.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

const { thumbprint, delayMs, dpop, tls, client } = JSON.parse(process.argv[2] ?? '{}') as {
  thumbprint: string;
  delayMs: number;
  dpop?: { readonly jkt: string; readonly tokenPrefix: string };
  tls?: { readonly cert: string; readonly key: string };
  client?: { readonly id: string; readonly secret: string };
};
let calls = 0;
let rejected = 0;
const distinct = new Set<string>();

/** RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64; the form's own fields otherwise. */
function authenticated(req: IncomingMessage, form: URLSearchParams, expected: { readonly id: string; readonly secret: string }): boolean {
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const unform = (v: string) => new URLSearchParams(`v=${v}`).get('v');
    return unform(decoded.slice(0, colon)) === expected.id && unform(decoded.slice(colon + 1)) === expected.secret;
  }
  return form.get('client_id') === expected.id && form.get('client_secret') === expected.secret;
}

const handler = (req: IncomingMessage, res: ServerResponse) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ calls, distinct: distinct.size, ...(client ? { rejected } : {}) }));
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const form = new URLSearchParams(body);
    if (client && !authenticated(req, form, client)) {
      rejected++;
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="as.bench"' }).end(JSON.stringify({ error: 'invalid_client' }));
      return;
    }
    const token = form.get('token') ?? '';
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
};
const server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler) : createHttpServer(handler);
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
