import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { createCa } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startIntrospection } from '../helpers/servers.js';

// WebSocket upgrades through certbound to a real WebSocket upstream (ws): the same checks as any
// request, then a tunnel on the route's upstream pool within its limits, recorded once the
// upstream answered.
t.setTimeout(60_000);
const ca = await createCa({ commonName: 'Upgrade CA' });
const tpp = await ca.issue({ commonName: 'TPP', kind: 'client' });
const exp = Math.floor(Date.now() / 1000) + 300;
const as = await startIntrospection(new Map([['tok', { active: true, scope: 'accounts', client_id: 'tpp-a', exp, cnf: { 'x5t#S256': tpp.thumbprint } }]]));
t.teardown(() => as.close());

/** An echo WebSocket server, remembering each upgrade request's headers. */
const seen: IncomingMessage[] = [];
const echo = new WebSocketServer({ host: '127.0.0.1', port: 0 });
echo.on('connection', (ws, req) => {
  seen.push(req);
  ws.on('message', (data) => ws.send(`echo:${data.toString()}`));
});
await once(echo, 'listening');
t.teardown(() => new Promise<void>((resolve) => echo.close(() => resolve())));
const echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;

/** An upstream refusing every upgrade with a 403 and a body. */
const refuser = createServer((_req, res) => res.writeHead(404).end());
refuser.on('upgrade', (_req, socket: Socket) => socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nkeep-alive: timeout=5\r\n\r\ndenied'));
refuser.listen(0, '127.0.0.1');
await once(refuser, 'listening');
t.teardown(() => new Promise<void>((resolve) => refuser.close(() => resolve())));

const doc = (upstreams: Record<string, unknown>) => ({
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
  upstreams,
  routes: [
    { name: 'live', path_prefix: '/live', methods: ['GET'], upstream: 'ws', scopes: ['accounts'] },
    { name: 'refused', path_prefix: '/refused', methods: ['GET'], upstream: 'refuser', auth: 'none' },
    { name: 'down', path_prefix: '/down', methods: ['GET'], upstream: 'down', auth: 'none' },
  ],
});
const credentials = { authorization: 'Bearer tok', 'x-wso2-client-certificate': encodeURIComponent(tpp.certPem) };
const ID = '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a';

function open(gw: TestGateway, path: string, headers: Record<string, string> = credentials): Promise<{ ws: WebSocket; response: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}${path}`, { headers: { ...headers, 'x-fapi-interaction-id': ID } });
    ws.once('upgrade', (response) => ws.once('open', () => resolve({ ws, response })));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** The raw answer to an upgrade request written over a socket. */
function rawUpgrade(gw: TestGateway, path: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect(Number(new URL(gw.url).port), '127.0.0.1', () => {
      const lines = [`GET ${path} HTTP/1.1`, 'host: x', 'connection: Upgrade', 'upgrade: websocket', 'sec-websocket-version: 13', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      s.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    let data = '';
    s.on('data', (d: Buffer) => (data += d.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', reject);
  });
}

const lastRequest = (gw: TestGateway) => gw.logs.filter((l) => l.msg === 'request').at(-1);
const metric = async (gw: TestGateway, kind: string, upstream: string) =>
  (await gw.metrics.upstreamErrors.get()).values.find((v) => v.labels.kind === kind && v.labels.upstream === upstream)?.value ?? 0;
const until = async (check: () => boolean): Promise<void> => {
  const deadline = Date.now() + 30_000;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
};

t.test('a checked upgrade is tunnelled: the 101 carries the interaction id, the upstream gets the identity, the record comes after the answer', async (t) => {
  const gw = await startGateway(doc({ ws: echoUrl, refuser: `http://127.0.0.1:${(refuser.address() as AddressInfo).port}`, down: 'http://127.0.0.1:1' }));
  t.teardown(() => gw.close());
  const { ws, response } = await open(gw, '/live/feed?x=1');
  t.equal(response.statusCode, 101);
  t.equal(response.headers['x-fapi-interaction-id'], ID);
  const reply = once(ws, 'message');
  ws.send('ping');
  t.equal(String((await reply)[0]), 'echo:ping');
  const req = seen.at(-1);
  t.equal(req?.url, '/live/feed?x=1');
  t.equal(req?.headers['x-certbound-client-id'], 'tpp-a');
  t.equal(req?.headers['x-certbound-certificate-thumbprint'], tpp.thumbprint);
  t.equal(req?.headers.authorization, undefined, 'the token stays with certbound');
  t.equal(req?.headers['x-wso2-client-certificate'], undefined, 'so does the certificate header');
  t.equal(req?.headers['x-fapi-interaction-id'], ID);
  t.match(lastRequest(gw), { route: 'live', upstream: 'ws', path: '/live/feed', status: 101, outcome: 'forwarded', upstream_latency_ms: Number, client_id: 'tpp-a', certificate_thumbprint: tpp.thumbprint });
  ws.close();
  await once(ws, 'close');

  const unauthenticated = await rawUpgrade(gw, '/live/feed');
  t.match(unauthenticated, /^HTTP\/1\.1 401 Unauthorized\r\n/);
  t.match(lastRequest(gw), { route: 'live', status: 401, reason: 'missing_token', outcome: 'rejected' });
  t.notOk('upstream' in (lastRequest(gw) ?? {}), 'never sent upstream');
});

t.test('an upstream that refuses the upgrade: its answer, cleaned, with Connection: close; recorded as its status', async (t) => {
  const gw = await startGateway(doc({ ws: echoUrl, refuser: `http://127.0.0.1:${(refuser.address() as AddressInfo).port}`, down: 'http://127.0.0.1:1' }));
  t.teardown(() => gw.close());
  const answer = await rawUpgrade(gw, '/refused/x', { 'x-fapi-interaction-id': ID });
  const [head = '', body] = answer.split('\r\n\r\n');
  t.match(head, /^HTTP\/1\.1 403 Forbidden\r\n/);
  t.match(head, /\r\nconnection: close/i);
  t.notMatch(head, /keep-alive: timeout/i, 'hop-by-hop headers of the upstream removed');
  t.equal(head.match(/x-fapi-interaction-id: /gi)?.length, 1);
  t.match(head, new RegExp(`x-fapi-interaction-id: ${ID}`, 'i'));
  t.equal(body, 'denied');
  t.match(lastRequest(gw), { route: 'refused', upstream: 'refuser', status: 403, outcome: 'forwarded' });
});

t.test('an upstream that is down: 502, counted as refused', async (t) => {
  const gw = await startGateway(doc({ ws: echoUrl, refuser: echoUrl, down: 'http://127.0.0.1:1' }));
  t.teardown(() => gw.close());
  const answer = await rawUpgrade(gw, '/down/x');
  t.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.match(answer, /"error":"bad_gateway"/);
  t.equal(await metric(gw, 'refused', 'down'), 1);
  t.match(lastRequest(gw), { route: 'down', upstream: 'down', status: 502, reason: 'upstream_unavailable', outcome: 'error' });
});

t.test('an open tunnel holds one of connections + max_pending: beyond, 503 at once; the slot frees when it closes', async (t) => {
  const gw = await startGateway(doc({ ws: { url: echoUrl, connections: 1, max_pending: 0 }, refuser: echoUrl, down: 'http://127.0.0.1:1' }));
  t.teardown(() => gw.close());
  const first = await open(gw, '/live/a');
  const busy = await rawUpgrade(gw, '/live/b', credentials);
  t.match(busy, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  t.match(busy, /\r\nretry-after: 1\r\n/i);
  t.equal(await metric(gw, 'overloaded', 'ws'), 1);
  first.ws.close();
  await once(first.ws, 'close');
  await until(() => gw.runtime.current().upstreams.get('ws')?.inFlight() === 0);
  const again = await open(gw, '/live/c');
  t.equal(again.response.statusCode, 101, 'the slot came back when the tunnel closed');
  again.ws.close();
  await once(again.ws, 'close');
});

t.test('a tunnel where nothing moves for tunnel_idle_timeout_ms is closed', async (t) => {
  const gw = await startGateway(doc({ ws: { url: echoUrl, tunnel_idle_timeout_ms: 300 }, refuser: echoUrl, down: 'http://127.0.0.1:1' }));
  t.teardown(() => gw.close());
  const { ws } = await open(gw, '/live/quiet');
  const [code] = (await once(ws, 'close')) as [number];
  t.equal(code, 1006, 'cut (no close frame): the tunnel went silent');
  await until(() => gw.runtime.current().upstreams.get('ws')?.inFlight() === 0);
  t.equal(gw.runtime.current().upstreams.get('ws')?.inFlight(), 0, 'its slot freed');
});
