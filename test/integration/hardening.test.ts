import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, createSelfSigned } from '../fixtures/pki.js';
import { startGateway } from '../helpers/gateway.js';
import { serve, startIntrospection, startUpstream } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';

// Regression tests for what a review of the request path found: each one failed before its fix.
// Three of them bound how long the next request waits for the only upstream connection at 10 s:
// the bugs they guard against hold it for timeout_ms (20 s) or forever. Failing, the file would
// outlast tap's 30 s default, which would hide which assertion failed.
t.setTimeout(120_000);
/** How long the next request may wait for the only upstream connection: well below the 20 s the bugs take. */
const FREED_WITHIN_MS = 10_000;
const ca = await createCa({ commonName: 'Hardening CA' });
const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
const tpp = await ca.issue({ commonName: 'TPP', kind: 'client' });
const expired = await createSelfSigned({ commonName: 'Old TPP', kind: 'client', notBefore: new Date(Date.now() - 2 * 86400000), notAfter: new Date(Date.now() - 86400000) });
const dir = mkdtempSync(join(tmpdir(), 'certbound-hardening-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);

const exp = Math.floor(Date.now() / 1000) + 300;
const bound = (thumbprint: string, extra: Record<string, unknown> = {}) => ({ active: true, scope: 'accounts', exp, cnf: { 'x5t#S256': thumbprint }, ...extra });
const as = await startIntrospection(new Map([
  ['tok', bound(tpp.thumbprint)],
  ['unicode', bound(tpp.thumbprint, { sub: 'José 用户\r\nx-evil: 1', client_id: 'tpp-ü' })],
  ['old', bound(expired.thumbprint)],
]));
// An introspection endpoint that answers after 300 ms, for a client that leaves meanwhile.
// `close`: the exchange is over, answered or cancelled by certbound.
let slowAsSeen = 0;
let slowAsDone = 0;
const slowAs = await serve((req, res) => {
  slowAsSeen++;
  req.resume();
  res.on('close', () => slowAsDone++);
  setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(bound(tpp.thumbprint))), 300);
});
const waitFor = async (check: () => boolean, what: string, withinMs = 30_000): Promise<void> => {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
const upstream = await startUpstream();
const doc = (overrides: Record<string, unknown> = {}) => ({
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
  upstreams: { bank: upstream.url, narrow: { url: upstream.url, connections: 1, timeout_ms: 20000 } },
  routes: [
    { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', scopes: ['accounts'] },
    { name: 'narrow', path_prefix: '/narrow', methods: ['GET'], upstream: 'narrow', scopes: ['accounts'] },
    { name: 'open', path_prefix: '/open', methods: ['GET', 'POST'], upstream: 'bank', auth: 'none' },
  ],
  ...overrides,
});
const gw = await startGateway(doc());
const cert = { 'x-wso2-client-certificate': encodeURIComponent(tpp.certPem) };
const lastSeen = () => upstream.seen[upstream.seen.length - 1];
t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), slowAs.close(), upstream.close()]);
});

const raw = (port: number, request: string, reset: boolean) =>
  new Promise<string>((resolve) => {
    const s = netConnect(port, '127.0.0.1', () => {
      s.write(request);
      if (reset) {
        s.resetAndDestroy();
        resolve('reset');
      }
    });
    let data = '';
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.on('close', () => resolve(data));
    s.on('error', () => resolve(data));
  });

t.test('an Upgrade request reset by the client does not take the process down', async (t) => {
  const port = Number(new URL(gw.url).port);
  for (let i = 0; i < 5; i++) {
    await raw(port, 'GET /ob/aisp/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n', true);
    await raw(port, 'GET /open/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n', true);
  }
  await new Promise((r) => setTimeout(r, 100));
  t.equal((await call(`${gw.url}/open/alive`)).status, 200, 'still serving');
});

t.test('only GET websocket upgrades are accepted', async (t) => {
  const port = Number(new URL(gw.url).port);
  const h2c = await raw(port, 'POST /open/x HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: h2c\r\ncontent-length: 0\r\n\r\n', false);
  t.match(h2c, /^HTTP\/1\.1 400 Bad Request\r\n/);
  t.match(h2c, /\r\ndate: /);
  t.match(h2c, /only GET upgrades to websocket are supported/);
});

t.test('a client that leaves during introspection does not leak an upstream connection', async (t) => {
  const slow = await startGateway(doc({ authorization_server: { issuer: 'https://as.example', introspection_endpoint: `${slowAs.url}/introspect`, client_id: 'c', client_secret: 's' } }));
  t.teardown(() => slow.close());
  const port = Number(new URL(slow.url).port);
  const headers = `authorization: Bearer tok\r\nx-wso2-client-certificate: ${cert['x-wso2-client-certificate']}\r\n`;
  const asked = slowAsSeen;
  const done = slowAsDone;
  const s = netConnect(port, '127.0.0.1', () => s.write(`GET /narrow/big HTTP/1.1\r\nhost: x\r\n${headers}\r\n`));
  s.on('error', () => undefined);
  // The client leaves while certbound is asking the introspection endpoint (not before: a
  // connection reset before certbound read the request never gets as far as introspection).
  await waitFor(() => slowAsSeen > asked, 'certbound is introspecting the token');
  s.resetAndDestroy();
  // Introspection answers with the client gone; the bug then started the forward without a client.
  await waitFor(() => slowAsDone > done, 'the introspection exchange is over');
  t.notOk(slow.logs.some((l) => l.msg === 'certificate header from an untrusted peer ignored'), 'the request was read while the client was there');
  await waitFor(() => slow.logs.some((l) => l.msg === 'request' && l.path === '/narrow/big'), 'the request is recorded');
  const left = slow.logs.find((l) => l.msg === 'request' && l.path === '/narrow/big');
  t.match(left, { route: 'narrow', status: 499, outcome: 'client_closed', reason: 'client_closed' }, 'recorded as the client leaving, like nginx');
  t.notOk(left && 'upstream' in left, 'never forwarded');
  t.notOk(upstream.seen.some((r) => r.url === '/narrow/big'), 'the upstream never saw it');
  const errors = (await slow.metrics.upstreamErrors.get()).values.reduce((n, v) => n + v.value, 0);
  t.equal(errors, 0, 'not an upstream error');
  const started = Date.now();
  const next = await call(`${slow.url}/narrow/small`, { headers: { authorization: 'Bearer tok', ...cert } });
  t.equal(next.status, 200);
  t.ok(Date.now() - started < FREED_WITHIN_MS, `the only upstream connection (connections: 1, timeout_ms: 20000) was free (${Date.now() - started} ms)`);
});

t.test('a client that leaves while the upstream is still answering frees the upstream connection at once', async (t) => {
  const gone = await startGateway(doc());
  t.teardown(() => gone.close());
  const port = Number(new URL(gone.url).port);
  const seen = upstream.seen.length;
  const s = netConnect(port, '127.0.0.1', () => {
    s.write(`GET /narrow/slow HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok\r\nx-wso2-client-certificate: ${cert['x-wso2-client-certificate']}\r\n\r\n`);
  });
  // The upstream has the request (and never answers it); then the client goes.
  await waitFor(() => upstream.seen.length > seen, 'the upstream got /narrow/slow');
  s.destroy();
  const started = Date.now();
  const next = await call(`${gone.url}/narrow/small`, { headers: { authorization: 'Bearer tok', ...cert } });
  t.equal(next.status, 200);
  t.ok(Date.now() - started < FREED_WITHIN_MS, `the only upstream connection (connections: 1, timeout_ms: 20000) was freed (${Date.now() - started} ms)`);
  await waitFor(() => gone.logs.some((l) => l.msg === 'request' && l.path === '/narrow/slow'), 'the request is recorded');
  t.match(gone.logs.find((l) => l.msg === 'request' && l.path === '/narrow/slow'), { route: 'narrow', upstream: 'narrow', status: 499, outcome: 'client_closed', reason: 'client_closed' });
  const text = await gone.metrics.registry.metrics();
  t.match(text, /certbound_requests_total\{route="narrow",method="GET",status_class="4xx",outcome="client_closed"\} 1/);
  t.notMatch(text, /certbound_upstream_errors_total\{[^}]*upstream="narrow"/, 'a client that left is no upstream error');
});

t.test('a client that stops reading releases the upstream connection after timeout_ms', async (t) => {
  const stalled = await startGateway(doc({ upstreams: { bank: upstream.url, narrow: { url: upstream.url, connections: 1, timeout_ms: 500 } } }));
  t.teardown(() => stalled.close());
  const port = Number(new URL(stalled.url).port);
  const seen = upstream.seen.length;
  const s = netConnect(port, '127.0.0.1', () => {
    s.write(`GET /narrow/big HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok\r\nx-wso2-client-certificate: ${cert['x-wso2-client-certificate']}\r\n\r\n`);
    s.pause(); // never read
  });
  t.teardown(() => s.destroy());
  await waitFor(() => upstream.seen.slice(seen).some((r) => r.url === '/narrow/big'), 'the upstream got /narrow/big');
  // The response stalls once the socket buffers are full; timeout_ms later certbound cuts it. Not a
  // queued request racing that cut: a request waiting for the connection has its own timeout_ms
  // deadline from dispatch, so which came first would depend on the machine's speed.
  const readStalls = async () => (await stalled.metrics.clientErrors.get()).values.find((v) => v.labels.kind === 'read_stalled')?.value ?? 0;
  let stalls = 0;
  const deadline = Date.now() + 30_000;
  while ((stalls = await readStalls()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  t.equal(stalls, 1, 'certbound_client_errors_total{kind="read_stalled"}: the stalled response was cut');
  const started = Date.now();
  const next = await call(`${stalled.url}/narrow/small`, { headers: { authorization: 'Bearer tok', ...cert } });
  t.equal(next.status, 200, 'the only upstream connection (connections: 1) serves the next request');
  // Not freed, it would make the next request wait timeout_ms and answer 504.
  t.ok(Date.now() - started < FREED_WITHIN_MS, `answered in ${Date.now() - started} ms`);
});

t.test('";" in a path is refused: Java servers read "..;/" as ".."', async (t) => {
  const before = upstream.seen.length;
  for (const path of ['/ob/aisp/..;/pisp/payments', '/ob/aisp;x=1/accounts', '/ob/aisp/%3B']) {
    const res = await call(`${gw.url}${path}`, { headers: { authorization: 'Bearer tok', ...cert } });
    t.equal(res.status, 400, path);
    t.equal(res.json().error, 'invalid_request');
  }
  t.equal(upstream.seen.length, before);
});

t.test('URL-rewrite and method-override headers never reach the upstream; client-IP headers only from trusted proxies', async (t) => {
  const spoof = { 'x-original-url': '/admin', 'x-rewrite-url': '/admin', 'x-http-method-override': 'DELETE', 'x-real-ip': '6.6.6.6', 'true-client-ip': '6.6.6.6' };
  t.equal((await call(`${gw.url}/open/x`, { headers: spoof })).status, 200);
  const h = lastSeen()!.headers;
  for (const name of ['x-original-url', 'x-rewrite-url', 'x-http-method-override']) t.equal(h[name], undefined, name);
  t.equal(h['x-real-ip'], '6.6.6.6', 'kept from a trusted proxy (127.0.0.1 is trusted here)');
  const untrusted = await startGateway(doc({ client_certificate: { source: 'header', trusted_proxies: ['10.0.0.0/8'] } }));
  t.teardown(() => untrusted.close());
  t.equal((await call(`${untrusted.url}/open/x`, { headers: spoof })).status, 200);
  t.equal(lastSeen()!.headers['x-real-ip'], undefined, 'dropped from an untrusted peer');
  t.equal(lastSeen()!.headers['true-client-ip'], undefined);
});

t.test('claims that are not printable ASCII are percent-encoded in identity headers', async (t) => {
  const res = await call(`${gw.url}/ob/aisp/x`, { headers: { authorization: 'Bearer unicode', ...cert } });
  t.equal(res.status, 200);
  const h = lastSeen()!.headers;
  t.equal(h['x-certbound-subject'], encodeURIComponent('José 用户\r\nx-evil: 1'));
  t.equal(h['x-certbound-client-id'], 'tpp-%C3%BC');
  t.equal(h['x-evil'], undefined);
  // The access line is JSON written by certbound itself: the raw client id must survive escaping.
  const line = gw.logs.filter((l) => l.msg === 'request').at(-1);
  t.match(line, { client_id: 'tpp-ü', status: 200, route: 'accounts' });
});

t.test('another Authorization scheme is no credential: 401 without an error code', async (t) => {
  const res = await call(`${gw.url}/ob/aisp/x`, { headers: { authorization: 'Basic dXNlcjpwYXNz', ...cert } });
  t.equal(res.status, 401);
  t.equal(res.headers['www-authenticate'], 'Bearer realm="certbound"');
});

t.test('source: tls — an expired self-signed certificate is refused without a client CA; a reload that adds one governs open connections', async (t) => {
  const configPath = join(dir, 'tls.yaml');
  const tlsDoc = (clientCa: boolean) => ({
    listen: { host: '127.0.0.1', port: 0, tls: { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key'), ...(clientCa ? { client_ca_file: join(dir, 'ca.crt') } : {}) } },
    admin: { host: '127.0.0.1', port: 0 },
    authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
    upstreams: { bank: upstream.url },
    routes: [{ name: 'accounts', path_prefix: '/ob/aisp', upstream: 'bank', scopes: ['accounts'] }],
    reload: { watch: false },
  });
  writeFileSync(join(dir, 'ca.crt'), ca.certPem);
  writeFileSync(configPath, stringify(tlsDoc(false)));
  const tlsGw = await startGateway(tlsDoc(false), { configPath });
  const old = tlsClient(ca.certPem, expired);
  const selfSigned = await createSelfSigned({ commonName: 'Self', kind: 'client' });
  const keepAlive = tlsClient(ca.certPem, selfSigned);
  t.teardown(async () => {
    await tlsGw.close();
    await old.close();
    await keepAlive.close();
  });
  const expiredRes = await call(`${tlsGw.url}/ob/aisp/x`, { dispatcher: old, headers: { authorization: 'Bearer old' } });
  t.equal(expiredRes.status, 401);
  t.equal(expiredRes.json().error_description, 'client certificate expired');

  // A self-signed certificate is fine without a client CA (RFC 8705 §2.2) …
  const selfRes = await call(`${tlsGw.url}/ob/aisp/x`, { dispatcher: keepAlive, headers: { authorization: 'Bearer tok' } });
  t.equal(selfRes.status, 401, 'bound to another certificate, but read: certificate_mismatch');
  t.match(selfRes.json().error_description, /does not match/);
  // … and once a reload adds a client CA, the same kept-alive connection's certificate no longer counts.
  writeFileSync(configPath, stringify(tlsDoc(true)));
  t.equal(await tlsGw.runtime.reload(), true);
  const after = await call(`${tlsGw.url}/ob/aisp/x`, { dispatcher: keepAlive, headers: { authorization: 'Bearer tok' } });
  t.equal(after.status, 401);
  t.match(after.json().error_description, /^client certificate required: client certificate not verified/);
});
