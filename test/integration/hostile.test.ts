import t from 'tap';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { serve, startIntrospection, startUpstream } from '../helpers/servers.js';
import { rawConnect, rawExchange, type RawResult } from '../helpers/raw.js';

// A red-team pass over raw sockets: each case writes the exact bytes an attacker would, and
// asserts the status, the headers, and what the upstream saw. No client library in between.
t.setTimeout(600_000);

const ca = await createCa({ commonName: 'Hostile CA' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const exp = Math.floor(Date.now() / 1000) + 600;
const as = await startIntrospection(new Map([['tok-a', { active: true, scope: 'accounts', exp, client_id: 'tpp-a', cnf: { 'x5t#S256': tppA.thumbprint } }]]));
const upstream = await startUpstream();

/** An upstream that counts the requests it got and how many of them were cancelled (closed before it answered). */
async function startCountingUpstream(answer: (req: IncomingMessage) => 'hang' | 'ok') {
  const events = { opened: 0, cancelled: 0, answered: 0, paths: [] as string[] };
  const listening = await serve((req, res) => {
    events.opened++;
    events.paths.push(req.url ?? '');
    res.on('close', () => {
      if (!res.writableFinished) events.cancelled++;
    });
    req.resume();
    if (answer(req) === 'hang') return;
    req.on('end', () => {
      events.answered++;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  return { ...listening, events };
}
const hanging = await startCountingUpstream((req) => (req.url?.includes('/hang') ? 'hang' : 'ok'));

const header = 'x-wso2-client-certificate';
const certOf = (pem: string) => encodeURIComponent(pem);
const base = (extra: Record<string, unknown> = {}) => ({
  client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
  upstreams: { bank: upstream.url, narrow: { url: hanging.url, connections: 1, timeout_ms: 1000 } },
  routes: [
    { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', scopes: ['accounts'] },
    { name: 'open', path_prefix: '/open', methods: ['GET', 'POST'], upstream: 'bank', auth: 'none' },
    { name: 'narrow', path_prefix: '/narrow', methods: ['GET', 'POST'], upstream: 'narrow', auth: 'none' },
  ],
  ...extra,
});
const gw = await startGateway(base());
const portOf = (g: TestGateway) => Number(new URL(g.url).port);
const port = portOf(gw);
t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), upstream.close(), hanging.close()]);
});

const metric = async (g: TestGateway, name: string, labels: Record<string, string> = {}): Promise<number> => {
  const m = (await g.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  const hit = m.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return hit?.value ?? 0;
};
const seenSince = (n: number) => upstream.seen.slice(n);
const only = (r: RawResult) => {
  if (r.responses.length !== 1) throw new Error(`expected one response, got ${r.responses.length}: ${r.text.slice(0, 300)}`);
  return r.responses[0]!;
};
const elapsedSince = (start: number) => performance.now() - start;
/** Waits for something another process reports asynchronously (bounded; the assertion that follows says what it was). */
async function eventually(check: () => boolean, withinMs = 10_000): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!check() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

t.test('a stalled request body: the upstream request is cancelled after timeout_ms of no progress and the pool is free again', async (t) => {
  const conn = await rawConnect({ port });
  const start = performance.now();
  // Content-Length promises 100000 bytes; three arrive, then nothing, and the client never reads.
  await conn.write('POST /narrow/hang-upload HTTP/1.1\r\nHost: bank.example\r\nContent-Length: 100000\r\n\r\nabc');
  conn.socket.pause();
  while (hanging.events.opened === 0) await new Promise((r) => setTimeout(r, 10));
  conn.socket.resume();
  const result = await conn.wait(1, 30_000);
  const response = only(result);
  t.equal(response.status, 408);
  t.equal(response.header('connection'), 'close');
  t.same(response.json(), { error: 'request_timeout', error_description: 'the request body stalled' });
  t.ok(elapsedSince(start) >= 1000, 'not before timeout_ms (1000)');
  t.equal((await conn.wait(undefined, 10_000)).closed, true, 'the connection ends with the 408');
  await eventually(() => hanging.events.cancelled === 1);
  t.equal(hanging.events.cancelled, 1, 'the upstream request was cancelled');
  // The only upstream connection (connections: 1) serves the next request.
  const next = only(await rawExchange({ port, send: 'GET /narrow/after HTTP/1.1\r\nHost: bank.example\r\n\r\n', expect: 1 }));
  t.equal(next.status, 200);
  t.equal(next.text, 'ok');
  t.equal(await metric(gw, 'certbound_client_errors_total', { kind: 'body_stalled' }), 1);
});

t.test('a slow upload that keeps moving is not a stalled one; a request that waits for a connection keeps the deadline only until its headers come', async (t) => {
  const slowUp = await serve((req, res) => {
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => hash.update(c));
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(hash.digest('hex')), 300));
  });
  const g = await startGateway(base({ upstreams: { bank: upstream.url, narrow: { url: slowUp.url, connections: 1, timeout_ms: 1000 } } }));
  t.teardown(async () => {
    await g.close();
    await slowUp.close();
  });
  const p = portOf(g);
  const parts = Array.from({ length: 8 }, (_, i) => `part-${i};`);
  const body = parts.join('');
  const upload = await rawConnect({ port: p });
  await upload.write(`POST /narrow/upload HTTP/1.1\r\nHost: bank.example\r\nContent-Length: ${body.length}\r\n\r\n`);
  // 8 pieces 400 ms apart: 3.2 s in all, more than timeout_ms (1000), never a pause as long.
  for (const part of parts) {
    await new Promise((r) => setTimeout(r, 400));
    await upload.write(part);
  }
  const done = only(await upload.wait(1, 30_000));
  upload.destroy();
  t.equal(done.status, 200);
  t.equal(done.text, createHash('sha256').update(body).digest('hex'), 'the whole body reached the upstream');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'body_stalled' }), 0);
  // Two at once on one connection: the second waits ~300 ms for it, then its headers come in time.
  const [a, b] = await Promise.all(['a', 'b'].map((x) => rawExchange({ port: p, send: `GET /narrow/${x} HTTP/1.1\r\nHost: bank.example\r\n\r\n`, expect: 1, timeoutMs: 30_000 })));
  t.same([only(a!).status, only(b!).status], [200, 200]);
  t.equal(await metric(g, 'certbound_upstream_errors_total', { upstream: 'narrow', kind: 'timeout' }), 0);
});

t.test('TLS: the token endpoint (auth: mtls) with a trusted certificate, a stalled body and a slowloris are both cut', async (t) => {
  const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
  const dir = mkdtempSync(join(tmpdir(), 'certbound-hostile-'));
  for (const [name, text] of [['server.crt', server.certPem], ['server.key', server.keyPem], ['ca.crt', ca.certPem]] as const) writeFileSync(join(dir, name), text);
  const stuck = await startCountingUpstream(() => 'hang');
  const g = await startGateway({
    listen: { headers_timeout_ms: 1000, tls: { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key'), client_ca_file: join(dir, 'ca.crt') } },
    upstreams: { as: { url: stuck.url, connections: 1, timeout_ms: 1000 } },
    routes: [{ name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'as', auth: 'mtls' }],
  });
  t.teardown(async () => {
    await g.close();
    await stuck.close();
  });
  const tls = { ca: ca.certPem, cert: tppA.certPem, key: tppA.keyPem };
  const upload = await rawConnect({ port: portOf(g), tls });
  await upload.write('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ngrant_type=');
  const stalled = only(await upload.wait(1, 30_000));
  t.equal(stalled.status, 408);
  t.equal(stalled.header('connection'), 'close');
  t.equal((await upload.wait(undefined, 10_000)).closed, true);
  await eventually(() => stuck.events.cancelled === 1);
  t.same({ opened: stuck.events.opened, cancelled: stuck.events.cancelled }, { opened: 1, cancelled: 1 }, 'the authorization server\'s request was cancelled');
  upload.destroy();

  const slow = await rawConnect({ port: portOf(g), tls });
  const start = performance.now();
  const request = `POST /token HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${'a'.repeat(200)}`;
  let i = 0;
  const drip = setInterval(() => slow.socket.writable && i < request.length && slow.socket.write(request[i++] as string), 100);
  t.teardown(() => clearInterval(drip));
  const cut = await slow.wait(undefined, 30_000);
  clearInterval(drip);
  t.equal(cut.closed, true);
  t.ok(elapsedSince(start) >= 1000, 'not before headers_timeout_ms');
  t.match(cut.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'body_stalled' }), 1);
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'request_timeout' }), 1);
});

t.test('request_timeout_ms: the client is destroyed (not half-closed) and its upstream request aborted', async (t) => {
  const before = { ...hanging.events };
  const g = await startGateway(base({
    listen: { request_timeout_ms: 1500, headers_timeout_ms: 1000 },
    upstreams: { bank: upstream.url, narrow: { url: hanging.url, connections: 1, timeout_ms: 60_000 } },
  }));
  t.teardown(() => g.close());
  const conn = await rawConnect({ port: portOf(g) });
  const start = performance.now();
  await conn.write('POST /narrow/hang-request HTTP/1.1\r\nHost: bank.example\r\nContent-Length: 100000\r\n\r\nabc');
  const result = await conn.wait(undefined, 30_000);
  const elapsed = elapsedSince(start);
  t.equal(result.closed, true, 'closed by the gateway');
  t.ok(elapsed >= 1500, `not before request_timeout_ms (${Math.round(elapsed)} ms)`);
  // Node's own check runs every 30 s by default; certbound checks every 500 ms.
  t.ok(elapsed < 1500 + 15_000, `well before Node's 30 s check interval (${Math.round(elapsed)} ms)`);
  t.equal(hanging.events.opened - before.opened, 1);
  await eventually(() => hanging.events.cancelled - before.cancelled === 1);
  t.equal(hanging.events.cancelled - before.cancelled, 1, 'the upstream request was cancelled');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'request_timeout' }), 1);
  await eventually(() => g.logs.some((l) => l.msg === 'request' && l.path === '/narrow/hang-request'));
  t.match(g.logs.find((l) => l.msg === 'request' && l.path === '/narrow/hang-request'), { status: 408, reason: 'request_timeout', outcome: 'rejected', upstream: 'narrow' }, 'recorded as the timeout it was, not as a client that left');
  const next = only(await rawExchange({ port: portOf(g), send: 'GET /narrow/after HTTP/1.1\r\nHost: bank.example\r\n\r\n', expect: 1 }));
  t.equal(next.status, 200, 'the pool is free');
});

t.test('slowloris: one header byte at a time is cut at headers_timeout_ms', async (t) => {
  const g = await startGateway(base({ listen: { headers_timeout_ms: 1000 } }));
  t.teardown(() => g.close());
  const conn = await rawConnect({ port: portOf(g) });
  const start = performance.now();
  const request = 'GET /open/slow HTTP/1.1\r\nHost: bank.example\r\nX-Padding: ' + 'a'.repeat(200);
  let i = 0;
  const drip = setInterval(() => {
    if (conn.socket.writable && i < request.length) conn.socket.write(request[i++] as string);
  }, 100);
  t.teardown(() => clearInterval(drip));
  const result = await conn.wait(undefined, 30_000);
  clearInterval(drip);
  const elapsed = elapsedSince(start);
  t.equal(result.closed, true);
  t.ok(elapsed >= 1000 && elapsed < 1000 + 15_000, `cut after ${Math.round(elapsed)} ms (headers_timeout_ms 1000)`);
  t.match(result.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  t.ok(i < request.length, 'the request never completed');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'request_timeout' }), 1);
});

t.test('listen.max_connections: beyond it new connections are closed at once, and counted', async (t) => {
  const g = await startGateway(base({ listen: { max_connections: 3 } }));
  t.teardown(() => g.close());
  const p = portOf(g);
  const held = await Promise.all([0, 1, 2].map(() => rawConnect({ port: p })));
  // The three are open and served (keep-alive).
  for (const c of held) await c.write('GET /open/held HTTP/1.1\r\nHost: bank.example\r\n\r\n');
  for (const c of held) t.equal((await c.wait(1)).responses[0]?.status, 200);
  const refused = await rawExchange({ port: p, send: 'GET /open/fourth HTTP/1.1\r\nHost: bank.example\r\n\r\n' });
  t.equal(refused.closed, true);
  t.equal(refused.responses.length, 0, 'no answer: the connection was closed on arrival');
  t.equal(await metric(g, 'certbound_connections_refused_total', { reason: 'max_connections' }), 1);
  t.equal(await metric(g, 'certbound_open_connections'), 3);
  held[0]!.destroy();
  while ((await metric(g, 'certbound_open_connections')) > 2) await new Promise((r) => setTimeout(r, 10));
  const fresh = only(await rawExchange({ port: p, send: 'GET /open/fifth HTTP/1.1\r\nHost: bank.example\r\n\r\n', expect: 1 }));
  t.equal(fresh.status, 200, 'a slot freed is usable again');
  for (const c of held) c.destroy();
});

t.test('an upstream that does not answer: beyond connections + max_pending 503 at once, the rest 504 by the deadline from dispatch', async (t) => {
  const stuck = await startCountingUpstream(() => 'hang');
  const g = await startGateway(base({ upstreams: { bank: upstream.url, narrow: { url: stuck.url, connections: 2, max_pending: 3, timeout_ms: 1500 } } }));
  t.teardown(async () => {
    await g.close();
    await stuck.close();
  });
  const p = portOf(g);
  const conns = await Promise.all(Array.from({ length: 20 }, () => rawConnect({ port: p })));
  const start = performance.now();
  await Promise.all(conns.map((c, i) => c.write(`GET /narrow/${i} HTTP/1.1\r\nHost: bank.example\r\n\r\n`)));
  const results = await Promise.all(conns.map((c) => c.wait(1, 30_000)));
  for (const c of conns) c.destroy();
  const statuses = results.map((r) => r.responses[0]?.status);
  t.equal(statuses.filter((s) => s === 503).length, 15, 'beyond 2 connections and 3 waiting: 503');
  t.equal(statuses.filter((s) => s === 504).length, 5, 'the 5 admitted: 504 at the deadline');
  for (const r of results.filter((x) => x.responses[0]?.status === 503)) {
    const res = r.responses[0]!;
    t.equal(res.header('retry-after'), '1');
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'upstream busy: every connection and queue slot is taken' });
  }
  t.ok(elapsedSince(start) >= 1500, 'the 504s came at the deadline, not before');
  t.equal(stuck.events.opened, 2, 'the upstream saw only what its two connections carried');
  t.equal(await metric(g, 'certbound_upstream_errors_total', { upstream: 'narrow', kind: 'overloaded' }), 15);
  t.equal(await metric(g, 'certbound_upstream_errors_total', { upstream: 'narrow', kind: 'timeout' }), 5);
  // The 3 that waited were answered 504 while still queued; undici drops them when a connection frees.
  await t.resolves(async () => {
    while (g.runtime.current().upstreams.get('narrow')?.inFlight() !== 0) await new Promise((r) => setTimeout(r, 20));
  }, 'every admitted request ended: nothing left in undici\'s queue');
  t.equal(stuck.events.opened, 2, 'the abandoned queued requests never reached the upstream');
});

t.test('XFCC (Envoy): a URI SAN holding ",Cert=<victim>" cannot authenticate as the victim', async (t) => {
  const g = await startGateway(base({ client_certificate: { source: 'header', preset: 'envoy', trusted_proxies: ['127.0.0.1/32'] } }));
  t.teardown(() => g.close());
  const hash = createHash('sha256').update(tppB.der).digest('hex');
  // What Envoy writes for tpp-b's certificate whose URI SAN is `spiffe://x/y,Cert=<tpp-a's PEM, URL-encoded>`.
  const xfcc = `By=spiffe://cluster.local/ns/bank/sa/certbound;Hash=${hash};Cert="${certOf(tppB.certPem)}";Subject="CN=TPP B";URI=spiffe://x/y,Cert=${certOf(tppA.certPem)}`;
  const before = upstream.seen.length;
  const send = `GET /ob/aisp/accounts HTTP/1.1\r\nHost: bank.example\r\nAuthorization: Bearer tok-a\r\nX-Forwarded-Client-Cert: ${xfcc}\r\n\r\n`;
  const res = only(await rawExchange({ port: portOf(g), send, expect: 1 }));
  t.equal(res.status, 401);
  t.equal(res.header('www-authenticate'), 'Bearer realm="certbound", error="invalid_token", error_description="XFCC has 2 elements; at most 1 accepted (client_certificate.xfcc_max_elements)"');
  t.same(seenSince(before), [], 'nothing forwarded');
  // The risk xfcc_max_elements takes on (docs/load-balancers.md): with 2, the injected element is the last.
  const lax = await startGateway(base({ client_certificate: { source: 'header', preset: 'envoy', trusted_proxies: ['127.0.0.1/32'], xfcc_max_elements: 2 } }));
  t.teardown(() => lax.close());
  t.equal(only(await rawExchange({ port: portOf(lax), send, expect: 1 })).status, 200, 'why the default is 1');
});

t.test('headers an upstream reads as protected ones (`_` for `-`, any x-certbound-*) never reach it', async (t) => {
  const untrusted = await startGateway(base({ client_certificate: { source: 'header', trusted_proxies: ['10.0.0.0/8'] } }));
  t.teardown(() => untrusted.close());
  for (const [name, g] of [['trusted proxy', gw], ['untrusted peer', untrusted]] as const) {
    const before = upstream.seen.length;
    const send = 'GET /open/aliases HTTP/1.1\r\nHost: bank.example\r\nx_certbound_client_id: forged\r\nx_forwarded_for: forged\r\nx-certbound-roles: forged\r\n'
      + 'X_Original_URL: /admin\r\nx_real_ip: 6.6.6.6\r\nx_custom: kept\r\n\r\n';
    t.equal(only(await rawExchange({ port: portOf(g), send, expect: 1 })).status, 200);
    const seen = seenSince(before)[0]!.headers;
    for (const h of ['x_certbound_client_id', 'x_forwarded_for', 'x-certbound-roles', 'x_original_url', 'x_real_ip']) t.equal(seen[h], undefined, `${name}: ${h}`);
    t.equal(seen['x-forwarded-for'], '127.0.0.1', `${name}: certbound's own X-Forwarded-For`);
    t.equal(seen.x_custom, 'kept');
  }
});

t.test('Host must be one valid host: RFC 9112 §3.2 requires 400 otherwise', async (t) => {
  const before = upstream.seen.length;
  const cases = [
    ['GET /open/h HTTP/1.1\r\nHost: bank.example evil.example\r\n\r\n', 'invalid Host header'],
    ['GET /open/h HTTP/1.1\r\nHost: bank.example\r\nHost: evil.example\r\n\r\n', 'more than one Host header'],
    ['GET /open/h HTTP/1.1\r\nHost: bank.example\r\nhost: bank.example\r\n\r\n', 'more than one Host header'],
    ['GET /open/h HTTP/1.1\r\nHost: bank.example/x\r\n\r\n', 'invalid Host header'],
    // A comma would make X-Forwarded-Host a list of two hosts for the upstream.
    ['GET /open/h HTTP/1.1\r\nHost: bank.example,evil.example\r\n\r\n', 'invalid Host header'],
    ['GET /open/h HTTP/1.1\r\nHost: bank.example;evil.example\r\n\r\n', 'invalid Host header'],
  ] as const;
  for (const [send, description] of cases) {
    const res = only(await rawExchange({ port, send, expect: 1 }));
    t.equal(res.status, 400, JSON.stringify(send));
    t.same(res.json(), { error: 'invalid_request', error_description: description });
  }
  // HTTP/1.1 without Host: certbound's own 400, in turn behind a pipelined request, with an interaction id.
  const none = await rawExchange({ port, send: 'GET /open/first HTTP/1.1\r\nHost: x\r\n\r\nGET /open/h HTTP/1.1\r\n\r\n', expect: 2 });
  t.same(none.responses.map((r) => r.status), [200, 400]);
  t.same(none.responses[1]?.json(), { error: 'invalid_request', error_description: 'missing Host header' });
  t.match(none.responses[1]?.header('x-fapi-interaction-id'), /^[0-9a-f-]{36}$/);
  t.same(seenSince(before).map((x) => x.url), ['/open/first'], 'nothing else forwarded');
  t.equal(only(await rawExchange({ port, send: 'GET /open/h HTTP/1.0\r\n\r\n', expect: 1 })).status, 200, 'HTTP/1.0 needs no Host');
  for (const host of ['bank.example', 'bank.example:8443', '127.0.0.1:1', '[::1]:8443', '']) {
    t.equal(only(await rawExchange({ port, send: `GET /open/h HTTP/1.1\r\nHost: ${host}\r\n\r\n`, expect: 1 })).status, 200, `Host: ${host}`);
  }
});

t.test('more header lines than listen.max_headers: 431; certbound\'s own headers come first for the upstream', async (t) => {
  const many = (n: number) => Array.from({ length: n }, (_, i) => `x-h${i}: v\r\n`).join('');
  const before = upstream.seen.length;
  const send = `GET /ob/aisp/many HTTP/1.1\r\nHost: bank.example\r\nAuthorization: Bearer tok-a\r\n${header}: ${certOf(tppA.certPem)}\r\n${many(2000)}\r\n`;
  const res = only(await rawExchange({ port, send, expect: 1 }));
  t.equal(res.status, 431);
  // Node 24's parser refuses a header block with this many lines itself (HPE_HEADER_OVERFLOW),
  // before certbound counts them: the same 431 and body shape, its own description and metric kind.
  const byNode = (res.json() as { error_description?: string }).error_description === 'request header fields too large';
  t.same(res.json(), { error: 'invalid_request', error_description: byNode ? 'request header fields too large' : 'more than 100 request header fields' });
  t.equal(res.header('content-type'), 'application/json');
  t.same(seenSince(before), []);
  t.equal(await metric(gw, 'certbound_client_errors_total', { kind: byNode ? 'header_overflow' : 'too_many_headers' }), 1);
  t.equal(only(await rawExchange({ port, send: `GET /open/h HTTP/1.1\r\nHost: x\r\n${many(98)}\r\n`, expect: 1 })).status, 200, '99 lines with Host: within the limit');

  // An upstream that keeps only its first 1,000 headers still gets certbound's.
  const kept: Array<Record<string, string | string[] | undefined>> = [];
  const small: Server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    kept.push(req.headers);
    res.end('ok');
  });
  small.maxHeadersCount = 1000;
  await new Promise<void>((r) => small.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { small.closeAllConnections(); small.close(() => r()); }));
  const wide = await startGateway(base({
    listen: { max_headers: 3000, max_header_bytes: 131072 },
    upstreams: { bank: `http://127.0.0.1:${(small.address() as AddressInfo).port}`, narrow: hanging.url },
  }));
  t.teardown(() => wide.close());
  const big = `GET /ob/aisp/many HTTP/1.1\r\nHost: bank.example\r\nAuthorization: Bearer tok-a\r\n${header}: ${certOf(tppA.certPem)}\r\n${many(2000)}\r\n`;
  const through = only(await rawExchange({ port: portOf(wide), send: big, expect: 1 }));
  if (byNode) {
    // Node 24 refuses 2,000 header lines whatever max_headers says (see above): nothing forwarded.
    t.equal(through.status, 431, 'Node 24: refused by its parser');
    t.same(kept, []);
    return;
  }
  t.equal(through.status, 200);
  const h = kept[0]!;
  t.equal(h['x-certbound-client-id'], 'tpp-a');
  t.equal(h['x-certbound-certificate-thumbprint'], tppA.thumbprint);
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.equal(h['x-h1999'], undefined, 'the client\'s last headers are the ones the upstream cut');
});

t.test('a double-encoded octet (%25XX) in the path: 400 unless the route allows it', async (t) => {
  const before = upstream.seen.length;
  const res = only(await rawExchange({ port, send: 'GET /open/%252e%252e/ob/aisp/accounts HTTP/1.1\r\nHost: bank.example\r\n\r\n', expect: 1 }));
  t.equal(res.status, 400);
  t.same(res.json(), { error: 'invalid_request', error_description: 'path contains a double-encoded octet (%25 and two hex digits)' });
  t.same(seenSince(before), []);
  const allowing = await startGateway(base({ routes: [{ name: 'files', path_prefix: '/files', upstream: 'bank', auth: 'none', allow_double_encoding: true }] }));
  t.teardown(() => allowing.close());
  t.equal(only(await rawExchange({ port: portOf(allowing), send: 'GET /files/a%252Fb HTTP/1.1\r\nHost: x\r\n\r\n', expect: 1 })).status, 200);
  t.equal(upstream.seen.at(-1)?.url, '/files/a%252Fb', 'forwarded as it came');
});

t.test('a WebSocket 101 reaches the client without the upstream\'s hop-by-hop headers', async (t) => {
  const ws = await serve((_req, res) => res.end());
  ws.server.on('upgrade', (_req, socket: Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Secret: s\r\nSec-WebSocket-Accept: abc=\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(d));
  });
  const g = await startGateway(base({ upstreams: { bank: ws.url, narrow: hanging.url }, shutdown: { grace_period_seconds: 1 } }));
  t.teardown(async () => {
    await g.close();
    await ws.close();
  });
  const send = 'GET /open/ws HTTP/1.1\r\nHost: bank.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  const result = await rawExchange({ port: portOf(g), send, expect: 1 });
  const res = result.responses[0]!;
  t.equal(res.status, 101);
  t.equal(res.header('upgrade'), 'websocket');
  t.equal(res.header('connection'), 'Upgrade');
  t.equal(res.header('sec-websocket-accept'), 'abc=');
  for (const h of ['keep-alive', 'proxy-connection', 'x-secret']) t.equal(res.header(h), undefined, h);
  t.match(res.header('x-fapi-interaction-id'), /^[0-9a-f-]{36}$/, 'the interaction id, as on every answer');
});

t.test('one connection cannot queue requests without bound: beyond 64 pipelined the connection is cut', async (t) => {
  const g = await startGateway(base());
  t.teardown(() => g.close());
  const before = hanging.events.opened;
  const queued = Array.from({ length: 80 }, (_, i) => `GET /open/q${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join('');
  const result = await rawExchange({ port: portOf(g), send: `GET /narrow/hang-first HTTP/1.1\r\nHost: x\r\n\r\n${queued}`, timeoutMs: 30_000 });
  t.equal(result.closed, true, 'cut');
  t.same(result.responses, [], 'nothing answered: the first request still waited on its upstream');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'pipeline_overflow' }), 1, 'counted once per connection');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(hanging.events.opened - before <= 1, 'none of the queued requests was started (the first may have been, before the cut)');
  t.equal(only(await rawExchange({ port: portOf(g), send: 'GET /open/after HTTP/1.1\r\nHost: x\r\n\r\n', expect: 1 })).status, 200);
});

t.test('a request pipelined behind one that closes the connection is never started', async (t) => {
  const before = upstream.seen.length;
  // HTTP/1.0 keep-alive, and the upstream answers chunked: certbound's answer is close-delimited, so it is the last.
  const send = 'GET /open/first HTTP/1.0\r\nConnection: keep-alive\r\n\r\nPOST /open/payment HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx';
  const result = await rawExchange({ port, send, timeoutMs: 30_000 });
  t.equal(result.closed, true);
  t.same(result.responses.map((r) => r.status), [200]);
  await new Promise((r) => setTimeout(r, 200));
  t.same(seenSince(before).map((x) => x.url), ['/open/first'], 'the POST never reached the upstream (its client would retry it)');
});

t.test('a WebSocket upgrade pipelined behind a request under way is refused, not answered out of turn', async (t) => {
  const before = hanging.events.opened;
  const send = 'GET /narrow/hang-ws HTTP/1.1\r\nHost: x\r\n\r\nGET /open/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  const result = await rawExchange({ port, send, timeoutMs: 30_000 });
  t.equal(result.closed, true);
  t.same(result.responses, [], 'no answer at all rather than one out of order');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(hanging.events.opened - before <= 1, 'at most the first request reached the upstream');
  t.equal(only(await rawExchange({ port, send: 'GET /open/after HTTP/1.1\r\nHost: x\r\n\r\n', expect: 1 })).status, 200);
});

t.test('a client that stops reading what certbound sends is cut after send_timeout_ms; the upstream connection is freed', async (t) => {
  const g = await startGateway(base({ listen: { send_timeout_ms: 1000 }, upstreams: { bank: { url: upstream.url, connections: 1, timeout_ms: 60_000 }, narrow: hanging.url } }));
  t.teardown(() => g.close());
  const conn = await rawConnect({ port: portOf(g) });
  conn.socket.pause(); // never reads: 8 MiB cannot all go out
  const start = performance.now();
  await conn.write('GET /open/big HTTP/1.1\r\nHost: x\r\n\r\n');
  // A paused socket does not see the close: wait for the gateway to count the cut, then read.
  for (let i = 0; i < 600 && (await metric(g, 'certbound_client_errors_total', { kind: 'read_stalled' })) === 0; i++) await new Promise((r) => setTimeout(r, 50));
  conn.socket.resume();
  const result = await conn.wait(undefined, 30_000);
  t.equal(result.closed, true, 'cut by the gateway');
  t.ok(elapsedSince(start) >= 1000, 'not before send_timeout_ms');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'read_stalled' }), 1);
  t.equal(only(await rawExchange({ port: portOf(g), send: 'GET /open/small HTTP/1.1\r\nHost: x\r\n\r\n', expect: 1, timeoutMs: 30_000 })).status, 200, 'the only upstream connection is free');
});

t.test('a timed-out pipelined request gets no 408 that the client would read as the earlier request\'s answer', async (t) => {
  const g = await startGateway(base({ listen: { headers_timeout_ms: 1000 }, upstreams: { bank: upstream.url, narrow: { url: hanging.url, timeout_ms: 60_000 } } }));
  t.teardown(() => g.close());
  const result = await rawExchange({ port: portOf(g), send: 'GET /narrow/hang-a HTTP/1.1\r\nHost: x\r\n\r\nGET /open/b HTTP/1.1\r\nHost: x\r\nX-Partial: ', timeoutMs: 30_000 });
  t.equal(result.closed, true);
  t.equal(result.text, '', 'no 408 in place of the first answer');
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'request_timeout' }), 1);
});

t.test('TLS: a client that never finishes the handshake is cut at headers_timeout_ms and counted', async (t) => {
  const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
  const dir = mkdtempSync(join(tmpdir(), 'certbound-hostile-hs-'));
  writeFileSync(join(dir, 'server.crt'), server.certPem);
  writeFileSync(join(dir, 'server.key'), server.keyPem);
  const g = await startGateway({
    listen: { headers_timeout_ms: 1000, tls: { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key') } },
    upstreams: { bank: upstream.url },
    routes: [{ name: 'open', path_prefix: '/', upstream: 'bank', auth: 'none' }],
  });
  t.teardown(() => g.close());
  const start = performance.now();
  const silent = await rawExchange({ port: portOf(g), send: '', timeoutMs: 30_000 }); // TCP only: no ClientHello
  t.equal(silent.closed, true);
  t.ok(elapsedSince(start) >= 1000, 'not before the handshake timeout');
  for (let i = 0; i < 100 && (await metric(g, 'certbound_client_errors_total', { kind: 'tls_handshake_timeout' })) === 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await metric(g, 'certbound_client_errors_total', { kind: 'tls_handshake_timeout' }), 1);
});

t.test('an upstream refusing an upgrade with a chunked answer: clean framing and the interaction id reach the client', async (t) => {
  const refusing = await serve((_req, res) => res.end());
  refusing.server.on('upgrade', (_req, socket: Socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nContent-Type: text/plain\r\n\r\n9\r\nforbidden\r\n0\r\n\r\n');
  });
  const g = await startGateway(base({ upstreams: { bank: refusing.url, narrow: hanging.url } }));
  t.teardown(async () => {
    await g.close();
    await refusing.close();
  });
  const id = '5d3a9a8e-2f4b-4c1e-9a7d-0b6f1e2d3c4b';
  const send = `GET /open/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-fapi-interaction-id: ${id}\r\n\r\n`;
  const result = await rawExchange({ port: portOf(g), send, timeoutMs: 30_000 });
  const res = only(result);
  t.equal(res.status, 403);
  t.equal(res.framing, 'close');
  t.equal(res.text, 'forbidden');
  t.equal(res.header('connection'), 'close');
  t.equal(res.header('x-fapi-interaction-id'), id);
  for (const h of ['transfer-encoding', 'x-secret', 'keep-alive']) t.equal(res.header(h), undefined, h);
});

t.test('a client cut for reading nothing (send_timeout_ms) is recorded as a cut, not as a client that left', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  for (const [label, listen, timeoutMs] of [
    ['send_timeout_ms', { send_timeout_ms: 1000 }, 60_000],
    ['the upstream timeout_ms', { send_timeout_ms: 60_000 }, 1000],
  ] as const) {
    const g = await startGateway({
      listen,
      upstreams: { bank: { url: upstream.url, timeout_ms: timeoutMs } },
      routes: [{ name: 'open', path_prefix: '/open', upstream: 'bank', auth: 'none' }],
    });
    const conn = await rawConnect({ port: Number(new URL(g.url).port) });
    conn.socket.pause(); // never reads the 8 MiB answer
    await conn.write('GET /open/big HTTP/1.1\r\nHost: x\r\n\r\n');
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !g.logs.some((l) => l.msg === 'request')) await new Promise((r) => setTimeout(r, 25));
    conn.socket.destroy();
    t.match(g.logs.find((l) => l.msg === 'request'), { status: 200, outcome: 'forwarded', upstream: 'bank' }, `cut by ${label}`);
    const cut = (await g.metrics.clientErrors.get()).values.find((v) => v.labels.kind === 'read_stalled')?.value;
    t.equal(cut, 1, `counted as read_stalled (${label})`);
    await g.close();
  }
});
