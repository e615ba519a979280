import t, { type Test } from 'tap';
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, type Issued } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream, type SeenRequest } from '../helpers/servers.js';
import { parseResponses, rawConnect, rawExchange, requestBytes, type RawResult, type RawTlsOptions } from '../helpers/raw.js';

// Pipelined requests on one connection: each written as exact bytes over a raw socket, on the plain
// listener (certificate forwarded in a header by a trusted proxy) and on the TLS listener.
t.setTimeout(180_000);

const ca = await createCa({ commonName: 'Pipelining CA' });
const serverCert = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-pipelining-'));
writeFileSync(join(dir, 'server.crt'), serverCert.certPem);
writeFileSync(join(dir, 'server.key'), serverCert.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

const exp = Math.floor(Date.now() / 1000) + 600;
const bound = (who: Issued, scope = 'accounts') => ({ active: true, client_id: 'tpp-a', scope, exp, cnf: { 'x5t#S256': who.thumbprint } });
// `fresh-*` tokens are each used once, so that their check waits on the authorization server.
const as = await startIntrospection(new Map<string, Record<string, unknown>>([
  ['tok', bound(tppA)],
  ['tokB', bound(tppB)],
  ['narrow', bound(tppA, 'payments')],
  ...['plain', 'tls'].map((l) => [`fresh-${l}`, bound(tppA)] as [string, Record<string, unknown>]),
  ...['plain', 'tls'].map((l) => [`close-${l}`, bound(tppA)] as [string, Record<string, unknown>]),
]));
const upstream = await startUpstream();

const routes = [
  { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'HEAD', 'POST'], upstream: 'bank', scopes: ['accounts'] },
  { name: 'open', path_prefix: '/open', methods: ['GET', 'HEAD', 'POST'], upstream: 'bank', auth: 'none' },
  { name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'bank', auth: 'mtls' },
];
const common = {
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
  upstreams: { bank: upstream.url },
  routes,
  shutdown: { grace_period_seconds: 5 },
};
const plainDoc = () => ({ ...common, client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] } });
const tlsDoc = () => ({
  ...common,
  listen: { tls: { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key'), client_ca_file: join(dir, 'ca.crt') } },
});

interface Listener {
  readonly name: 'plain' | 'tls';
  readonly gw: TestGateway;
  readonly port: number;
  /** Raw-socket TLS options presenting TPP A's certificate (TLS listener only). */
  readonly tls?: RawTlsOptions;
  /** Header lines presenting TPP A's certificate: the proxy header on the plain listener; none on TLS (the connection has it). */
  readonly cert: string[];
}
const portOf = (gw: TestGateway): number => Number(new URL(gw.url).port);
const listenerOf = (name: Listener['name'], gw: TestGateway): Listener =>
  name === 'plain'
    ? { name, gw, port: portOf(gw), cert: [`x-wso2-client-certificate: ${encodeURIComponent(tppA.certPem)}`] }
    : { name, gw, port: portOf(gw), tls: { ca: ca.certPem, cert: tppA.certPem, key: tppA.keyPem }, cert: [] };

const plainGw = await startGateway(plainDoc());
const tlsGw = await startGateway(tlsDoc());
const listeners: Listener[] = [listenerOf('plain', plainGw), listenerOf('tls', tlsGw)];
t.teardown(async () => {
  await Promise.all([plainGw.close(), tlsGw.close()]);
  await Promise.all([as.close(), upstream.close()]);
});

interface Req {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly bytes: string;
}
interface ReqOptions {
  readonly version?: '1.0' | '1.1';
  readonly headers?: readonly string[];
  readonly body?: string;
  /** Declared length; default the body's. */
  readonly contentLength?: number;
}
/** One request as exact bytes, carrying its own x-fapi-interaction-id. */
function request(method: string, path: string, opts: ReqOptions = {}): Req {
  const id = randomUUID();
  const bytes = requestBytes({
    method,
    target: path,
    headers: [`x-fapi-interaction-id: ${id}`, ...(opts.headers ?? [])],
    ...(opts.version ? { version: opts.version } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(opts.contentLength !== undefined ? { contentLength: opts.contentLength } : {}),
  });
  return { id, method, path, bytes };
}
const bearer = (token: string): string => `authorization: Bearer ${token}`;
/** Token and certificate that pass the accounts route. */
const creds = (l: Listener): string[] => [bearer('tok'), ...l.cert];

let counter = 0;
const unique = (name: string): string => `${name}-${++counter}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

interface SendOptions {
  readonly expect?: number;
  /** Bytes after the requests. */
  readonly extra?: string;
  /** The exact bytes to write instead of the requests' own (when one request's body holds the next). */
  readonly wire?: string;
  /**
   * The server is expected to close: after the responses, read on until it does (at most 3 s).
   * Otherwise read on for 100 ms only, so that anything extra it sends is still seen.
   */
  readonly closes?: boolean;
}
/** Writes every request in ONE write and collects the responses to them. */
function send(l: Listener, reqs: readonly Req[], opts: SendOptions = {}): Promise<RawResult> {
  return rawExchange({
    port: l.port,
    ...(l.tls ? { tls: l.tls } : {}),
    send: (opts.wire ?? reqs.map((r) => r.bytes).join('')) + (opts.extra ?? ''),
    methods: reqs.map((r) => r.method),
    expect: opts.expect ?? reqs.length,
    awaitCloseMs: opts.closes ? 3000 : 100,
  });
}

/** What reached the upstream since `mark`, after a moment for anything late. */
async function seenSince(mark: number, settleMs = 150): Promise<SeenRequest[]> {
  await sleep(settleMs);
  return upstream.seen.slice(mark);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The responses are exactly `statuses`, answering `reqs` in order (by x-fapi-interaction-id),
 * the wire parsed cleanly and nothing follows the last response.
 */
function answeredInOrder(t: Test, result: RawResult, reqs: readonly Req[], statuses: readonly number[]): void {
  t.equal(result.parseError, undefined, 'the response stream parses');
  t.equal(result.timedOut, false, 'answered in time');
  t.same(result.responses.map((r) => r.status), statuses, 'statuses, in request order');
  t.same(
    result.responses.map((r) => r.header('x-fapi-interaction-id')),
    reqs.slice(0, statuses.length).map((r) => r.id),
    'each response carries its own request\'s interaction id, in request order',
  );
  t.equal(result.rest.length, 0, 'nothing after the last response');
}

const errorOf = (result: RawResult, i: number): unknown => (result.responses[i]?.json() as { error?: unknown } | undefined)?.error;

/** A fresh connection and request still get a 200 from the upstream. */
async function stillServes(t: Test, l: Listener): Promise<void> {
  const probe = request('GET', `/open/${unique('alive')}`);
  const result = await send(l, [probe]);
  t.equal(result.responses[0]?.status, 200, `${l.name}: still serving`);
  t.equal(result.responses[0]?.header('x-fapi-interaction-id'), probe.id);
}

t.test('parseResponses', async (t) => {
  t.test('chunked and content-length responses back to back', async (t) => {
    const wire =
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: yes\r\n\r\n' +
      'HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}';
    const { responses, rest } = parseResponses(wire);
    t.equal(responses.length, 2);
    t.equal(rest.length, 0);
    t.match(responses[0], { version: '1.1', status: 200, reason: 'OK', framing: 'chunked', text: 'hello world' });
    t.same(responses[0]?.headers['set-cookie'], ['a=1', 'b=2'], 'repeated header kept, name lower-cased');
    t.same(responses[0]?.trailers, { 'x-trailer': ['yes'] });
    t.throws(() => responses[0]?.header('set-cookie'), /repeated/);
    t.match(responses[1], { status: 404, reason: 'Not Found', framing: 'content-length', text: '{}' });
    t.equal(responses[1]?.header('content-length'), '2');
  });
  t.test('HEAD, 204, 304 and 1xx have no body; a body without length runs to the close', async (t) => {
    const wire =
      'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n' + // HEAD: the length is the GET's, no body follows
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n' +
      'HTTP/1.0 200 OK\r\n\r\nuntil the end';
    const { responses, rest } = parseResponses(wire, ['HEAD', 'GET', 'GET', 'GET']);
    t.same(responses.map((r) => [r.status, r.framing, r.text]), [[200, 'none', ''], [204, 'none', ''], [304, 'none', ''], [200, 'close', 'until the end']]);
    t.same(responses[1]?.interim.map((r) => r.status), [100]);
    t.equal(rest.length, 0);
    const open = parseResponses('HTTP/1.0 200 OK\r\n\r\nsofar', [], { ended: false });
    t.equal(open.responses.length, 0, 'not complete while the connection is open');
    t.equal(open.rest.toString(), 'HTTP/1.0 200 OK\r\n\r\nsofar');
  });
  t.test('incomplete input stays in rest; malformed input throws', async (t) => {
    const partial = parseResponses('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab', [], { ended: false });
    t.equal(partial.responses.length, 0);
    t.equal(partial.rest.length, 40);
    t.equal(parseResponses('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel').responses.length, 0, 'truncated chunk');
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\nx: y\nz: w\r\n\r\n'), /bare CR or LF/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\nx: y\r\n\r\n'), /status line/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\nx: y\r\n folded\r\n\r\n'), /folding/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n'), /both/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab'), /Content-Length/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n'), /chunk size/);
    t.throws(() => parseResponses('garbage\r\n\r\n'), /status line/);
    t.throws(() => parseResponses('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxjunk'), /status line/, 'bytes after a response must be a response');
  });
});

t.test('the issue: two pipelined requests without credentials in one write', async (t) => {
  const exact = 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n';
  t.equal(Buffer.byteLength(exact), 54, 'the exact bytes of the report');
  for (const l of listeners) {
    const mark = upstream.seen.length;
    const result = await rawExchange({ port: l.port, ...(l.tls ? { tls: l.tls } : {}), send: exact, expect: 2, awaitCloseMs: 200 });
    t.equal(result.parseError, undefined);
    t.same(result.responses.map((r) => r.status), [404, 404], `${l.name}: both answered`);
    t.same(result.responses.map((r) => (r.json() as { error?: string }).error), ['not_found', 'not_found']);
    const ids = result.responses.map((r) => r.header('x-fapi-interaction-id') ?? '');
    t.ok(ids.every((id) => UUID.test(id)) && ids[0] !== ids[1], 'each response has its own minted interaction id');
    t.same(result.responses.map((r) => r.header('connection')), ['keep-alive', 'keep-alive']);
    t.equal(result.closed, false, 'the connection stays open');
    t.equal(result.rest.length, 0);
    t.same(await seenSince(mark, 50), []);
    await stillServes(t, l);
  }
  // Many times over, on several connections at once: no crash, every one answered.
  for (const l of listeners) {
    const results = await Promise.all(Array.from({ length: 20 }, () => rawExchange({ port: l.port, ...(l.tls ? { tls: l.tls } : {}), send: exact, expect: 2 })));
    t.ok(results.every((r) => r.responses.length === 2 && r.responses.every((x) => x.status === 404)), `${l.name}: 20 connections × 2 answered`);
    await stillServes(t, l);
  }
});

t.test('a request with a body queued behind another one does not take the process down', async (t) => {
  // Crashed: undici ends a streamed request body with util.destroy(), which sets the
  // IncomingMessage's `socket` to null before destroying it; drain.ts's 'close' listener for a
  // queued response then read `req.socket.destroyed` (TypeError, uncaught).
  const exact = 'GET /open/a HTTP/1.1\r\nHost: x\r\n\r\nPOST /open/b HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc';
  t.equal(Buffer.byteLength(exact), 89);
  for (const l of listeners) {
    const mark = upstream.seen.length;
    const result = await rawExchange({ port: l.port, ...(l.tls ? { tls: l.tls } : {}), send: exact, expect: 2 });
    t.equal(result.parseError, undefined);
    t.same(result.responses.map((r) => [r.status, r.text]), [[200, '{"ok":true,"path":"/open/a"}'], [200, '{"ok":true,"path":"/open/b"}']], `${l.name}: both answered, in order`);
    const seen = await seenSince(mark);
    t.same(seen.map((s) => [s.method, s.url, s.bodyBytes]).sort(), [['GET', '/open/a', 0], ['POST', '/open/b', 3]]);
    await stillServes(t, l);
  }
});

for (const l of listeners) {
  t.test(`${l.name}: the second request is answered even when the first is refused, and the reverse`, async (t) => {
    const mark = upstream.seen.length;
    const refused = request('GET', `/ob/aisp/${unique('refused')}`, { headers: l.cert });
    const allowed = request('GET', `/ob/aisp/${unique('allowed')}`, { headers: creds(l) });
    const result = await send(l, [refused, allowed]);
    answeredInOrder(t, result, [refused, allowed], [401, 200]);
    t.equal(result.responses[0]?.header('www-authenticate'), 'Bearer realm="certbound"');
    t.equal(errorOf(result, 0), 'unauthorized');
    t.same(result.responses[1]?.json(), { ok: true, path: allowed.path });
    t.equal(result.closed, false);
    let seen = await seenSince(mark);
    t.same(seen.map((s) => [s.method, s.url]), [['GET', allowed.path]], 'only the authenticated request reached the upstream');
    t.equal(seen[0]?.headers['x-fapi-interaction-id'], allowed.id, 'with its own interaction id');
    t.equal(seen[0]?.headers.authorization, undefined);

    // Authenticated first, refused second: the refusal is not held back, and not answered first.
    const mark2 = upstream.seen.length;
    const first = request('GET', `/ob/aisp/${unique('first')}`, { headers: creds(l) });
    const second = request('GET', `/ob/aisp/${unique('second')}`, { headers: [bearer('tokB'), ...l.cert] });
    const third = request('GET', `/ob/aisp/${unique('third')}`, { headers: [bearer('narrow'), ...l.cert] });
    const reverse = await send(l, [first, second, third]);
    answeredInOrder(t, reverse, [first, second, third], [200, 401, 403]);
    t.equal(errorOf(reverse, 1), 'invalid_token');
    t.match(reverse.responses[1]?.header('www-authenticate'), /^Bearer realm="certbound", error="invalid_token", error_description="client certificate does not match/);
    t.equal(errorOf(reverse, 2), 'insufficient_scope');
    t.match(reverse.responses[2]?.header('www-authenticate'), /error="insufficient_scope".*scope="accounts"$/);
    seen = await seenSince(mark2);
    t.same(seen.map((s) => s.url), [first.path]);
  });

  t.test(`${l.name}: keep-alive, three requests, the last with connection: close`, async (t) => {
    const mark = upstream.seen.length;
    const a = request('GET', `/ob/aisp/${unique('ka')}`, { headers: creds(l) });
    const b = request('POST', `/open/${unique('ka')}`, { headers: ['content-type: text/plain'], body: 'the body of b' });
    const c = request('HEAD', `/ob/aisp/${unique('ka')}`, { headers: [...creds(l), 'connection: close'] });
    const result = await send(l, [a, b, c], { closes: true });
    answeredInOrder(t, result, [a, b, c], [200, 200, 200]);
    t.same(result.responses.map((r) => r.header('connection')), ['keep-alive', 'keep-alive', 'close']);
    t.equal(result.responses[2]?.body.length, 0, 'HEAD: no body');
    t.equal(result.closed, true, 'the server closes after the response to the connection: close request');
    const seen = await seenSince(mark);
    t.same(seen.map((s) => [s.method, s.url]).sort(), [['GET', a.path], ['HEAD', c.path], ['POST', b.path]].sort());
    const post = seen.find((s) => s.url === b.path);
    t.equal(post?.bodyBytes, 13);
    t.equal(post?.bodySha256, sha256('the body of b'));
  });

  t.test(`${l.name}: HTTP/1.0`, async (t) => {
    t.test('without keep-alive: one request, answered, then the connection closes', async (t) => {
      const mark = upstream.seen.length;
      const a = request('GET', `/ob/aisp/${unique('h10')}`, { version: '1.0', headers: creds(l) });
      const result = await send(l, [a], { closes: true });
      answeredInOrder(t, result, [a], [200]);
      t.equal(result.responses[0]?.header('connection'), 'close');
      t.same(result.responses[0]?.json(), { ok: true, path: a.path });
      t.equal(result.closed, true);
      t.same((await seenSince(mark)).map((s) => s.url), [a.path]);
      const refused = request('GET', `/ob/aisp/${unique('h10')}`, { version: '1.0', headers: l.cert });
      const r2 = await send(l, [refused], { closes: true });
      answeredInOrder(t, r2, [refused], [401]);
      t.equal(r2.responses[0]?.header('www-authenticate'), 'Bearer realm="certbound"');
      t.equal(r2.closed, true);
    });
    t.test('with connection: keep-alive: the second is answered even when the first is refused', async (t) => {
      // certbound's own error responses carry a Content-Length: an HTTP/1.0 keep-alive client keeps its connection.
      const mark = upstream.seen.length;
      const refused = request('GET', `/ob/aisp/${unique('h10ka')}`, { version: '1.0', headers: [...l.cert, 'connection: keep-alive'] });
      const allowed = request('GET', `/ob/aisp/${unique('h10ka')}`, { version: '1.0', headers: [...creds(l), 'connection: keep-alive'] });
      const result = await send(l, [refused, allowed]);
      answeredInOrder(t, result, [refused, allowed], [401, 200]);
      t.equal(result.responses[0]?.header('connection'), 'keep-alive');
      t.same((await seenSince(mark)).map((s) => s.url), [allowed.path]);
    });
    t.test('with connection: keep-alive: a forwarded answer of unknown length ends the connection, and nothing else is sent', async (t) => {
      const mark = upstream.seen.length;
      const a = request('GET', `/ob/aisp/${unique('h10ka')}`, { version: '1.0', headers: [...creds(l), 'connection: keep-alive'] });
      const b = request('GET', `/ob/aisp/${unique('h10ka')}`, { version: '1.0', headers: l.cert });
      const result = await send(l, [a, b], { closes: true });
      // The upstream's response is chunked; an HTTP/1.0 client can only be given it close-delimited.
      answeredInOrder(t, result, [a], [200]);
      t.equal(result.responses[0]?.framing, 'close');
      t.equal(result.responses[0]?.header('connection'), 'close');
      t.same(result.responses[0]?.json(), { ok: true, path: a.path });
      t.equal(result.closed, true);
      t.same((await seenSince(mark)).map((s) => s.url), [a.path], 'the unauthenticated second request never reached the upstream');
    });
  });

  t.test(`${l.name}: Content-Length shorter than the body: the rest is parsed as a second request and checked like any`, async (t) => {
    t.test('authenticated POST, then a smuggled request without a token', async (t) => {
      const mark = upstream.seen.length;
      const smuggled = request('GET', `/ob/aisp/${unique('smuggled')}`);
      const post = request('POST', `/ob/aisp/${unique('post')}`, { headers: creds(l), body: `hello${smuggled.bytes}`, contentLength: 5 });
      const result = await send(l, [post, smuggled], { wire: post.bytes });
      answeredInOrder(t, result, [post, smuggled], [200, 401]);
      t.equal(result.responses[1]?.header('www-authenticate'), 'Bearer realm="certbound"');
      t.equal(errorOf(result, 1), 'unauthorized');
      const seen = await seenSince(mark);
      t.same(seen.map((s) => [s.method, s.url]), [['POST', post.path]], 'the smuggled request never reached the upstream');
      t.equal(seen[0]?.bodyBytes, 5, 'the body is exactly its declared length');
      t.equal(seen[0]?.bodySha256, sha256('hello'));
    });
    t.test('a smuggled request with a token but no certificate of its own', async (t) => {
      const mark = upstream.seen.length;
      // On TLS the connection's certificate is the smuggler's too: there it carries another client's token.
      const smuggled = request('POST', `/ob/aisp/${unique('smuggled')}`, { headers: [bearer(l.name === 'tls' ? 'tokB' : 'tok')], body: 'x' });
      const post = request('POST', `/open/${unique('post')}`, { body: `hello${smuggled.bytes}`, contentLength: 5 });
      const result = await send(l, [post, smuggled], { wire: post.bytes });
      answeredInOrder(t, result, [post, smuggled], [200, 401]);
      t.equal(errorOf(result, 1), 'invalid_token');
      t.match(result.responses[1]?.header('www-authenticate'), l.name === 'tls' ? /error_description="client certificate does not match/ : /error_description="client certificate required/);
      const seen = await seenSince(mark);
      t.same(seen.map((s) => [s.method, s.url, s.bodyBytes, s.bodySha256]), [['POST', post.path, 5, sha256('hello')]]);
    });
    t.test('a refused POST whose body is not read: the smuggled request is still parsed after the declared bytes', async (t) => {
      const mark = upstream.seen.length;
      const smuggled = request('GET', `/open/${unique('smuggled')}`);
      const post = request('POST', `/ob/aisp/${unique('post')}`, { headers: l.cert, body: `hello${smuggled.bytes}`, contentLength: 5 });
      const result = await send(l, [post, smuggled], { wire: post.bytes });
      answeredInOrder(t, result, [post, smuggled], [401, 200]);
      t.same(result.responses[1]?.json(), { ok: true, path: smuggled.path });
      const seen = await seenSince(mark);
      t.same(seen.map((s) => [s.method, s.url, s.bodyBytes]), [['GET', smuggled.path, 0]], 'the refused POST did not reach the upstream; the second did, as a request of its own');
      t.equal(seen[0]?.headers['x-fapi-interaction-id'], smuggled.id);
    });
  });

  t.test(`${l.name}: every response carries its request's x-fapi-interaction-id, in request order`, async (t) => {
    const mark = upstream.seen.length;
    const reqs = [
      request('POST', `/token/${unique('mtls')}`, { headers: [...l.cert, 'authorization: Basic Y2xpZW50OnNlY3JldA=='], body: 'grant_type=client_credentials' }),
      request('GET', `/nowhere/${unique('x')}`),
      request('DELETE', `/ob/aisp/${unique('x')}`, { headers: creds(l) }),
      request('GET', `/ob/aisp/${unique('ok')}`, { headers: creds(l) }),
      request('GET', `/ob/aisp/${unique('x')}`, { headers: [bearer('unknown'), ...l.cert] }),
      request('HEAD', `/open/${unique('head')}`),
      request('GET', `/ob/aisp/${unique('x')}?access_token=tok`, { headers: l.cert }),
      request('POST', `/open/${unique('post')}`, { body: '{"a":1}' }),
    ];
    const logged = l.gw.logs.length;
    const result = await send(l, reqs);
    answeredInOrder(t, result, reqs, [200, 404, 405, 200, 401, 200, 400, 200]);
    t.same([1, 2, 4, 6].map((i) => errorOf(result, i)), ['not_found', 'method_not_allowed', 'invalid_token', 'invalid_request']);
    t.equal(result.responses[2]?.header('allow'), 'GET, HEAD, POST');
    const seen = await seenSince(mark);
    const forwarded = [reqs[0], reqs[3], reqs[5], reqs[7]] as Req[];
    t.same(seen.map((s) => s.url).sort(), forwarded.map((r) => r.path).sort(), 'exactly the requests that passed');
    for (const r of forwarded) {
      const s = seen.find((x) => x.url === r.path);
      t.equal(s?.headers['x-fapi-interaction-id'], r.id, `${r.method} ${r.path}: the upstream got its interaction id`);
    }
    const token = seen.find((s) => s.url === reqs[0]?.path);
    const forwardedCert = token?.headers['x-client-cert'];
    t.equal(typeof forwardedCert === 'string' ? new X509Certificate(decodeURIComponent(forwardedCert)).fingerprint256 : undefined, new X509Certificate(tppA.certPem).fingerprint256, 'mtls route: the certificate forwarded');
    t.equal(token?.headers.authorization, 'Basic Y2xpZW50OnNlY3JldA==', 'mtls route: the client\'s own credential is forwarded');
    // Each request has its access line, with its own interaction id and status. FAILS until fixed
    // for the two POSTs: undici's util.destroy() of a streamed request body sets the
    // IncomingMessage's `socket` to null, and the access line reads `req.socket.remoteAddress`
    // (TypeError, logged as "request handler failed"; the line is lost). Not pipelining-specific.
    const lines = l.gw.logs.slice(logged);
    const access = new Map(lines.filter((line) => line.msg === 'request').map((line) => [line.interaction_id, line.status]));
    t.same(reqs.map((r) => access.get(r.id)), [200, 404, 405, 200, 401, 200, 400, 200], 'one access line per request, with its status');
    t.same(lines.filter((line) => line.level === 'error' || line.level === 'fatal'), [], 'nothing logged as an error');
  });

  t.test(`${l.name}: requests after connection: close are not answered and never reach the upstream`, async (t) => {
    // FAILS until fixed: the bytes after a `connection: close` request make Node report
    // HPE_CLOSED_CONNECTION, and certbound's clientError handler writes a 400 at once, ahead of
    // (or instead of) the answer still being prepared for the first request.
    const mark = upstream.seen.length;
    const a = request('GET', `/ob/aisp/${unique('close')}`, { headers: [...creds(l), 'connection: close'] });
    const b = request('GET', `/open/${unique('after-close')}`);
    const result = await send(l, [a, b], { closes: true });
    answeredInOrder(t, result, [a], [200]);
    t.equal(result.responses[0]?.header('connection'), 'close');
    t.equal(result.closed, true);
    t.same((await seenSince(mark)).map((s) => s.url), [a.path]);

    // The same after an HTTP/1.0 request without keep-alive, and after a refusal.
    const c = request('GET', `/open/${unique('h10')}`, { version: '1.0' });
    const d = request('GET', `/open/${unique('after-h10')}`);
    const r2 = await send(l, [c, d], { closes: true });
    answeredInOrder(t, r2, [c], [200]);
    t.equal(r2.closed, true);
    const e = request('GET', `/ob/aisp/${unique('close')}`, { headers: [...l.cert, 'connection: close'] });
    const f = request('GET', `/open/${unique('after-close')}`);
    const r3 = await send(l, [e, f], { closes: true });
    answeredInOrder(t, r3, [e], [401]);
    t.equal(r3.closed, true);
    const seen = (await seenSince(mark)).map((s) => s.url);
    t.notOk(seen.includes(b.path) || seen.includes(d.path) || seen.includes(f.path), 'nothing after a close reached the upstream');
    await stillServes(t, l);
  });

  t.test(`${l.name}: a request after connection: close while the first still waits on the authorization server`, async (t) => {
    // The bytes after the close make Node report HPE_CLOSED_CONNECTION while the first answer
    // waits on the authorization server: that answer is still sent, then the connection closes.
    const mark = upstream.seen.length;
    const a = request('GET', `/ob/aisp/${unique('close-fresh')}`, { headers: [bearer(`close-${l.name}`), ...l.cert, 'connection: close'] });
    const b = request('GET', `/ob/aisp/${unique('after-close')}`, { headers: creds(l) });
    const result = await send(l, [a, b], { closes: true });
    answeredInOrder(t, result, [a], [200]);
    t.equal(result.closed, true);
    t.same((await seenSince(mark)).map((s) => s.url), [a.path]);
  });

  t.test(`${l.name}: a bad request line after pipelined requests: those before it are answered first, in order`, async (t) => {
    // FAILS until fixed: certbound's clientError handler writes its 400 to the socket at once,
    // before the answers to the earlier requests (still at the upstream), and ends the connection.
    const mark = upstream.seen.length;
    const a = request('GET', `/ob/aisp/${unique('before-bad')}`, { headers: creds(l) });
    const b = request('GET', `/open/${unique('before-bad')}`);
    const result = await send(l, [a, b], { extra: 'BLAH\r\n\r\n', expect: 3, closes: true });
    t.equal(result.parseError, undefined);
    t.same(result.responses.map((r) => r.status), [200, 200, 400], 'the two answers, then the 400');
    t.same(result.responses.slice(0, 2).map((r) => r.header('x-fapi-interaction-id')), [a.id, b.id]);
    t.equal(result.closed, true);
    t.same((await seenSince(mark)).map((s) => s.url).sort(), [a.path, b.path].sort());
    await stillServes(t, l);
  });

  t.test(`${l.name}: pipelined requests reach the upstream in the order sent`, async (t) => {
    // FAILS until fixed (RFC 9112 §9.3.2: only requests with safe methods may be processed in
    // parallel): the POST waits on the authorization server (an uncached token) while the GET
    // behind it, on an auth: none route, is forwarded at once and reaches the upstream first.
    const mark = upstream.seen.length;
    const post = request('POST', `/ob/aisp/${unique('order')}`, { headers: [bearer(`fresh-${l.name}`), ...l.cert], body: 'payment' });
    const get = request('GET', `/open/${unique('order')}`);
    const result = await send(l, [post, get]);
    answeredInOrder(t, result, [post, get], [200, 200]);
    t.same((await seenSince(mark)).map((s) => s.url), [post.path, get.path]);
  });

  t.test(`${l.name}: the client goes while a pipelined request is queued behind a slow one`, async (t) => {
    const gw = await startGateway(l.name === 'plain' ? plainDoc() : tlsDoc());
    const own = listenerOf(l.name, gw);
    const mark = upstream.seen.length;
    const slow = request('GET', `/open/${unique('q')}/slow`);
    const queued = [
      request('GET', `/ob/aisp/${unique('queued')}`, { headers: creds(own) }),
      request('GET', `/ob/aisp/${unique('queued')}`, { headers: own.cert }),
      request('POST', `/open/${unique('queued')}`, { body: 'queued body' }),
      request('GET', `/nowhere/${unique('queued')}`),
    ];
    const conn = await rawConnect({ port: own.port, ...(own.tls ? { tls: own.tls } : {}) });
    await conn.write([slow, ...queued].map((r) => r.bytes).join(''));
    // One request at a time per connection: the queued ones wait for the slow one to end.
    const deadline = Date.now() + 30_000;
    while (upstream.seen.length === mark && Date.now() < deadline) await sleep(10);
    await sleep(100);
    t.same(upstream.seen.slice(mark).map((s) => s.url), [slow.path], 'only the first request was started');
    t.same(conn.snapshot().responses, [], 'nothing answered yet: the first response is still pending');
    conn.destroy();
    await sleep(200);
    await stillServes(t, own);
    t.same(upstream.seen.slice(mark).map((s) => s.url).filter((u) => u.includes('queued')), [], 'the queued requests never started: the client left first');
    await gw.close();
    t.match(gw.logs.find((line) => line.msg === 'draining'), { in_flight: 0 }, 'no response left counted in flight');
    t.match(gw.logs.find((line) => line.msg === 'stopped'), { drained: true });
    t.same(gw.logs.filter((line) => line.level === 'error' || line.level === 'fatal'), [], 'nothing logged as an error');
  });

  t.test(`${l.name}: the client goes while refused pipelined requests are queued, before any answer`, async (t) => {
    const gw = await startGateway(l.name === 'plain' ? plainDoc() : tlsDoc());
    const own = listenerOf(l.name, gw);
    const reqs = [request('GET', `/open/${unique('q')}/slow`), ...Array.from({ length: 5 }, () => request('GET', `/nowhere/${unique('q')}`))];
    const mark = upstream.seen.length;
    const conn = await rawConnect({ port: own.port, ...(own.tls ? { tls: own.tls } : {}) });
    await conn.write(reqs.map((r) => r.bytes).join(''));
    const deadline = Date.now() + 10_000;
    while (upstream.seen.length === mark && Date.now() < deadline) await sleep(10);
    conn.end(); // half-close first: the server sees end of input, with responses still queued
    await sleep(50);
    conn.destroy();
    await sleep(100);
    await stillServes(t, own);
    await gw.close();
    t.match(gw.logs.find((line) => line.msg === 'draining'), { in_flight: 0 });
    t.match(gw.logs.find((line) => line.msg === 'stopped'), { drained: true });
    t.same(gw.logs.filter((line) => line.level === 'error' || line.level === 'fatal'), [], 'nothing logged as an error');
  });
}
