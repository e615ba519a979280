import t from 'tap';
import fc from 'fast-check';
import { deepStrictEqual, equal, match } from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { rawExchange, requestBytes, type RawResponse, type RawResult, type RawTlsOptions } from '../helpers/raw.js';

// Random pipelined request sequences on one connection (fast-check, bounded; the seed of a
// failure is in the failure message, replay it with `seed` and `path` in `fc.assert`'s options).
// Properties: the gateway never crashes, answers every request once and in order (matched by
// x-fapi-interaction-id) with the status its kind calls for, and the upstream receives exactly the
// requests that passed authentication, in the order sent (one request at a time per connection).
t.setTimeout(240_000);

const ca = await createCa({ commonName: 'Fuzz CA' });
const serverCert = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyAlgorithm: 'rsa' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-pipelining-fuzz-'));
writeFileSync(join(dir, 'server.crt'), serverCert.certPem);
writeFileSync(join(dir, 'server.key'), serverCert.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

const exp = Math.floor(Date.now() / 1000) + 600;
const tokens = new Map<string, Record<string, unknown>>([
  ['tok', { active: true, scope: 'accounts', exp, cnf: { 'x5t#S256': tppA.thumbprint } }],
  ['tokB', { active: true, scope: 'accounts', exp, cnf: { 'x5t#S256': tppB.thumbprint } }],
  ['narrow', { active: true, scope: 'payments', exp, cnf: { 'x5t#S256': tppA.thumbprint } }],
]);
const as = await startIntrospection(tokens);
/** A valid token never used before: its check waits on the authorization server (no cache entry yet). */
function freshToken(): string {
  const token = `fresh-${randomUUID()}`;
  tokens.set(token, { active: true, scope: 'accounts', exp, cnf: { 'x5t#S256': tppA.thumbprint } });
  return token;
}
const upstream = await startUpstream();
const common = {
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's' },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'HEAD', 'POST'], upstream: 'bank', scopes: ['accounts'] },
    { name: 'open', path_prefix: '/open', methods: ['GET', 'HEAD', 'POST'], upstream: 'bank', auth: 'none' },
    { name: 'token', path_prefix: '/token', methods: ['POST'], upstream: 'bank', auth: 'mtls' },
  ],
  // info: the access line of every request is written (and must not fail).
  logging: { level: 'info' },
};
const plainGw = await startGateway({ ...common, client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] } });
const tlsGw = await startGateway({
  ...common,
  listen: { tls: { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key'), client_ca_file: join(dir, 'ca.crt') } },
});
t.teardown(async () => {
  await Promise.all([plainGw.close(), tlsGw.close()]);
  await Promise.all([as.close(), upstream.close()]);
});

type ListenerName = 'plain' | 'tls';
interface Listener {
  readonly port: number;
  readonly tls?: RawTlsOptions;
}
const portOf = (gw: TestGateway): number => Number(new URL(gw.url).port);
const listeners: Record<ListenerName, Listener> = {
  plain: { port: portOf(plainGw) },
  tls: { port: portOf(tlsGw), tls: { ca: ca.certPem, cert: tppA.certPem, key: tppA.keyPem } },
};

const KINDS = [
  'ok-get', 'ok-head', 'ok-post', 'missing-token', 'unknown-token', 'other-cert', 'wrong-scope',
  'no-route', 'wrong-method', 'open-get', 'open-post', 'mtls', 'mtls-no-cert',
] as const;
type Kind = (typeof KINDS)[number];
interface Spec {
  readonly kind: Kind;
  /** For the kinds that send a body. */
  readonly body: string;
}
/** How a request ends the connection: it does not; `connection: close`; HTTP/1.0; HTTP/1.0 with keep-alive. */
type Ending = 'keep-alive' | 'close' | 'http10' | 'http10-keep-alive';

interface Expected {
  readonly status: number;
  /** The JSON body's `error`. */
  readonly error?: string;
  /** Exact www-authenticate, or a pattern. */
  readonly challenge?: string | RegExp;
  readonly allow?: string;
  /** Reaches the upstream. */
  readonly forwarded: boolean;
}

const CERT_HEADER = `x-wso2-client-certificate: ${encodeURIComponent(tppA.certPem)}`;

/** The request line parts and headers of one kind; the path is unique (`suffix`). `token`: what the ok-* kinds send. */
function shapeOf(kind: Kind, suffix: string, listener: ListenerName, token: string): { method: string; path: string; headers: string[]; hasBody: boolean } {
  const BOUND = { route: '/ob/aisp', token };
  // On the TLS listener the connection presents TPP A's certificate; on the plain one a trusted proxy's header does.
  const cert = listener === 'plain' ? [CERT_HEADER] : [];
  const bearer = (token: string): string => `authorization: Bearer ${token}`;
  switch (kind) {
    case 'ok-get':
      return { method: 'GET', path: `${BOUND.route}/${suffix}`, headers: [bearer(BOUND.token), ...cert], hasBody: false };
    case 'ok-head':
      return { method: 'HEAD', path: `${BOUND.route}/${suffix}`, headers: [bearer(BOUND.token), ...cert], hasBody: false };
    case 'ok-post':
      return { method: 'POST', path: `${BOUND.route}/${suffix}`, headers: [bearer(BOUND.token), ...cert, 'content-type: text/plain'], hasBody: true };
    case 'missing-token':
      return { method: 'GET', path: `${BOUND.route}/${suffix}`, headers: cert, hasBody: false };
    case 'unknown-token':
      return { method: 'GET', path: `${BOUND.route}/${suffix}`, headers: [bearer(`unknown-${suffix}`), ...cert], hasBody: false };
    case 'other-cert':
      return { method: 'POST', path: `${BOUND.route}/${suffix}`, headers: [bearer('tokB'), ...cert], hasBody: true };
    case 'wrong-scope':
      return { method: 'GET', path: `${BOUND.route}/${suffix}`, headers: [bearer('narrow'), ...cert], hasBody: false };
    case 'no-route':
      return { method: 'GET', path: `/nowhere/${suffix}`, headers: [bearer(BOUND.token), ...cert], hasBody: false };
    case 'wrong-method':
      return { method: 'DELETE', path: `${BOUND.route}/${suffix}`, headers: [bearer(BOUND.token), ...cert], hasBody: false };
    case 'open-get':
      return { method: 'GET', path: `/open/${suffix}`, headers: [], hasBody: false };
    case 'open-post':
      return { method: 'POST', path: `/open/${suffix}`, headers: [], hasBody: true };
    case 'mtls':
      return { method: 'POST', path: `/token/${suffix}`, headers: cert, hasBody: true };
    case 'mtls-no-cert':
      return { method: 'POST', path: `/token/${suffix}`, headers: [], hasBody: true };
  }
}

function expectedOf(kind: Kind, listener: ListenerName): Expected {
  switch (kind) {
    case 'ok-get':
    case 'ok-head':
    case 'ok-post':
    case 'open-get':
    case 'open-post':
    case 'mtls':
      return { status: 200, forwarded: true };
    case 'missing-token':
      return { status: 401, error: 'unauthorized', challenge: 'Bearer realm="certbound"', forwarded: false };
    case 'unknown-token':
      return { status: 401, error: 'invalid_token', challenge: /^Bearer realm="certbound", error="invalid_token", error_description="the access token is not active"$/, forwarded: false };
    case 'other-cert':
      return { status: 401, error: 'invalid_token', challenge: /^Bearer realm="certbound", error="invalid_token", error_description="client certificate does not match/, forwarded: false };
    case 'wrong-scope':
      return { status: 403, error: 'insufficient_scope', challenge: /^Bearer realm="certbound", error="insufficient_scope", .*scope="accounts"$/, forwarded: false };
    case 'no-route':
      return { status: 404, error: 'not_found', forwarded: false };
    case 'wrong-method':
      return { status: 405, error: 'method_not_allowed', allow: 'GET, HEAD, POST', forwarded: false };
    case 'mtls-no-cert':
      // On TLS the connection carries the certificate whatever the headers say.
      return listener === 'tls' ? { status: 200, forwarded: true } : { status: 400, error: 'invalid_request', forwarded: false };
  }
}

interface Built {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly body: string | undefined;
  readonly bytes: string;
  readonly expected: Expected;
}

let runs = 0;
function build(spec: Spec, index: number, run: number, listener: ListenerName, ending: Ending = 'keep-alive', token = 'tok'): Built {
  const id = randomUUID();
  const { method, path, headers, hasBody } = shapeOf(spec.kind, `r${run}-${index}`, listener, token);
  const endingHeaders = ending === 'close' ? ['connection: close'] : ending === 'http10-keep-alive' ? ['connection: keep-alive'] : [];
  const body = hasBody ? spec.body : undefined;
  const bytes = requestBytes({
    method,
    target: path,
    ...(ending === 'http10' || ending === 'http10-keep-alive' ? { version: '1.0' as const } : {}),
    headers: [`x-fapi-interaction-id: ${id}`, ...headers, ...endingHeaders],
    ...(body !== undefined ? { body } : {}),
  });
  return { id, method, path, body, bytes, expected: expectedOf(spec.kind, listener) };
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One response is the answer `req` should get. Throws (with the details) when not. */
function checkResponse(res: RawResponse, req: Built, i: number): void {
  const where = `response ${i} (${req.method} ${req.path})`;
  equal(res.status, req.expected.status, `${where}: status`);
  equal(res.header('x-fapi-interaction-id'), req.id, `${where}: interaction id (answers out of order?)`);
  const e = req.expected;
  if (e.error !== undefined) equal((res.json() as { error?: unknown }).error, e.error, `${where}: error`);
  if (typeof e.challenge === 'string') equal(res.header('www-authenticate'), e.challenge, `${where}: www-authenticate`);
  else if (e.challenge) match(res.header('www-authenticate') ?? '', e.challenge, `${where}: www-authenticate`);
  else equal(res.header('www-authenticate'), undefined, `${where}: no www-authenticate`);
  if (e.allow !== undefined) equal(res.header('allow'), e.allow, `${where}: allow`);
  if (e.forwarded) {
    if (req.method === 'HEAD') equal(res.body.length, 0, `${where}: HEAD has no body`);
    else deepStrictEqual(res.json(), { ok: true, path: req.path }, `${where}: the upstream's answer to this request`);
  }
}

/**
 * The upstream got exactly the forwarded requests, each once and in the order sent (certbound runs
 * one request at a time per connection), with its own body and interaction id.
 */
function checkUpstream(since: number, forwarded: readonly Built[]): void {
  const seen = upstream.seen.slice(since);
  deepStrictEqual(seen.map((s) => `${s.method} ${s.url}`), forwarded.map((r) => `${r.method} ${r.path}`), 'what reached the upstream, in order');
  for (const r of forwarded) {
    const s = seen.find((x) => x.url === r.path);
    equal(s?.headers['x-fapi-interaction-id'], r.id, `${r.path}: interaction id at the upstream`);
    equal(s?.headers.authorization === undefined || r.path.startsWith('/token/'), true, `${r.path}: no bearer token forwarded`);
    equal(s?.bodyBytes, Buffer.byteLength(r.body ?? ''), `${r.path}: body length at the upstream`);
    if (r.body !== undefined) equal(s?.bodySha256, sha256(r.body), `${r.path}: body at the upstream`);
  }
}

/** The bytes split at these offsets (each taken modulo the length), for several writes. */
function pieces(wire: string, cuts: readonly number[] | null): string | string[] {
  if (cuts === null) return wire;
  const at = [...new Set(cuts.map((c) => c % wire.length).filter((c) => c > 0))].sort((a, b) => a - b);
  const out: string[] = [];
  let from = 0;
  for (const c of at) {
    out.push(wire.slice(from, c));
    from = c;
  }
  out.push(wire.slice(from));
  return out;
}

/** Writes `wire` (in one write, or split at `cuts`), reads `expect` responses, then (`awaitClose`) until the server closes. */
async function exchange(listener: ListenerName, sent: readonly { readonly method: string }[], expect: number, wire: string, cuts: readonly number[] | null, awaitClose: boolean): Promise<RawResult> {
  const l = listeners[listener];
  return rawExchange({
    port: l.port,
    ...(l.tls ? { tls: l.tls } : {}),
    send: pieces(wire, cuts),
    gapMs: 1,
    methods: sent.map((r) => r.method),
    expect,
    ...(awaitClose ? { awaitCloseMs: 1000 } : {}),
  });
}

function describe(result: RawResult): string {
  return `${result.responses.length} response(s): ${result.responses.map((r) => `${r.status} ${r.headers['x-fapi-interaction-id']?.join('|') ?? '-'}`).join(', ')}; closed ${result.closed}, timed out ${result.timedOut}${result.parseError ? `, parse error: ${result.parseError}` : ''}\n${result.text.slice(0, 3000)}`;
}

const specArb: fc.Arbitrary<Spec> = fc.record({
  kind: fc.constantFrom(...KINDS),
  body: fc.string({ unit: fc.constantFrom(...'abcxyz019 {}":,-'.split('')), minLength: 0, maxLength: 24 }),
});
const listenerArb = fc.constantFrom<ListenerName>('plain', 'tls');
const cutsArb = fc.option(fc.array(fc.nat({ max: 20_000 }), { minLength: 1, maxLength: 6 }), { nil: null });
const BUDGET_MS = 25_000;

t.test('well-formed pipelined sequences: every request answered once, in order; only authenticated ones forwarded', async (t) => {
  const property = fc.asyncProperty(
    listenerArb,
    fc.array(specArb, { minLength: 1, maxLength: 8 }),
    fc.constantFrom<Ending>('keep-alive', 'keep-alive', 'close', 'http10', 'http10-keep-alive'),
    cutsArb,
    async (listener, specs, ending, cuts) => {
      const run = ++runs;
      const reqs = specs.map((s, i) => build(s, i, run, listener, i === specs.length - 1 ? ending : 'keep-alive'));
      const since = upstream.seen.length;
      const closes = ending === 'close' || ending === 'http10';
      const result = await exchange(listener, reqs, reqs.length, reqs.map((r) => r.bytes).join(''), cuts, closes);
      try {
        equal(result.parseError, undefined, 'the response stream parses');
        equal(result.responses.length, reqs.length, 'one response per request');
        result.responses.forEach((res, i) => checkResponse(res, reqs[i] as Built, i));
        equal(result.rest.length, 0, 'nothing after the last response');
        if (closes) equal(result.closed, true, 'the connection closes after the last response');
        await sleep(20);
        checkUpstream(since, reqs.filter((r) => r.expected.forwarded));
      } catch (error) {
        throw new Error(`${error instanceof Error ? error.message : String(error)}\n${describe(result)}`, { cause: error });
      }
    },
  );
  await fc.assert(property, { numRuns: 60, plugins: [fc.interruptAfterTimeLimit(BUDGET_MS)] });
  t.comment(`${runs} runs so far`);
  t.pass('property held');
});

t.test('a sequence ends at a bad request line, connection: close or HTTP/1.0: what comes before is answered, nothing after', async (t) => {
  // FAILS until fixed: on a parse error (a bad request line, or bytes after a request that closes
  // the connection: HPE_CLOSED_CONNECTION) the clientError handler answers 400 at once (no
  // response has sent headers yet) and destroys the socket, dropping the answers still being
  // prepared for the requests before it, which the upstream may well have executed.
  const property = fc.asyncProperty(
    listenerArb,
    fc.array(specArb, { minLength: 0, maxLength: 6 }),
    fc.oneof(fc.constant<'bad-line'>('bad-line'), fc.record({ ending: fc.constantFrom<Ending>('close', 'http10'), spec: specArb })),
    fc.array(specArb, { minLength: 1, maxLength: 3 }),
    cutsArb,
    async (listener, specs, terminator, trailing, cuts) => {
      const run = ++runs;
      const reqs = specs.map((s, i) => build(s, i, run, listener));
      let answered: Built[];
      let expectBadRequest = false;
      let wire = reqs.map((r) => r.bytes).join('');
      if (terminator === 'bad-line') {
        expectBadRequest = true;
        answered = reqs;
        wire += 'NOT A REQUEST LINE\r\n\r\n';
      } else {
        const last = build(terminator.spec, specs.length, run, listener, terminator.ending);
        answered = [...reqs, last];
        wire += last.bytes;
      }
      const after = trailing.map((s, i) => build(s, specs.length + 1 + i, run, listener));
      wire += after.map((r) => r.bytes).join('');
      const since = upstream.seen.length;
      // The bad line's 400 has a body: the response parser must not read it as a HEAD's answer.
      const methods = expectBadRequest ? [...answered, { method: 'NOT' }, ...after] : [...answered, ...after];
      const result = await exchange(listener, methods, answered.length + (expectBadRequest ? 1 : 0), wire, cuts, true);
      try {
        equal(result.parseError, undefined, 'the response stream parses');
        equal(result.responses.length, answered.length + (expectBadRequest ? 1 : 0), 'one response per request up to the end, then (for a bad line) its 400');
        answered.forEach((req, i) => checkResponse(result.responses[i] as RawResponse, req, i));
        if (expectBadRequest) equal(result.responses[answered.length]?.status, 400, 'the bad request line: 400');
        equal(result.rest.length, 0, 'nothing after the last response');
        equal(result.closed, true, 'the connection closes');
        await sleep(20);
        checkUpstream(since, answered.filter((r) => r.expected.forwarded));
      } catch (error) {
        throw new Error(`${error instanceof Error ? error.message : String(error)}\n${describe(result)}`, { cause: error });
      }
    },
  );
  await fc.assert(property, {
    numRuns: 30,
    plugins: [fc.interruptAfterTimeLimit(BUDGET_MS)],
    // Found by a full run (seed 1645573903): bytes after a connection: close request, arriving in
    // later segments once its answer was written; the socket, already ending, was destroyed at once
    // and the client got nothing. Replaying that seed and path failed on every run before the fix in
    // guard.ts; this example alone does not (it needs what the earlier runs leave behind), but keeps
    // the shape in every run.
    examples: [['plain', [], { ending: 'close', spec: { kind: 'ok-get', body: '' } }, [{ kind: 'ok-get', body: '' }], [4575, 11755, 2639]]],
  });
  t.pass('property held');
});

t.test('pipelined sequences with an unsafe method reach the upstream in the order sent', async (t) => {
  // FAILS until fixed (RFC 9112 §9.3.2: a server may process pipelined requests in parallel only
  // if they all have safe methods): each request is forwarded as soon as it is checked, so one
  // whose token is not cached yet (here: every ok-* request, with a fresh token) reaches the
  // upstream after the ones behind it that need no introspection; and over whichever upstream
  // connection is free, so even checked ones can overtake each other. Answers to the client still
  // come back in order (first property).
  const passing: readonly Kind[] = ['ok-get', 'ok-post', 'open-get', 'open-post', 'mtls'];
  const property = fc.asyncProperty(
    listenerArb,
    fc.array(fc.record({ kind: fc.constantFrom(...passing), body: fc.constant('unsafe') }), { minLength: 2, maxLength: 6 }).filter((specs) => specs.some((s) => s.kind.endsWith('post') || s.kind === 'mtls')),
    async (listener, specs) => {
      const run = ++runs;
      const reqs = specs.map((s, i) => build(s, i, run, listener, 'keep-alive', freshToken()));
      const since = upstream.seen.length;
      const result = await exchange(listener, reqs, reqs.length, reqs.map((r) => r.bytes).join(''), null, false);
      equal(result.responses.length, reqs.length, describe(result));
      result.responses.forEach((res, i) => checkResponse(res, reqs[i] as Built, i));
      await sleep(20);
      checkUpstream(since, reqs);
      deepStrictEqual(upstream.seen.slice(since).map((s) => `${s.method} ${s.url}`), reqs.map((r) => `${r.method} ${r.path}`), 'the upstream received them in the order sent');
    },
  );
  await fc.assert(property, { numRuns: 40, plugins: [fc.interruptAfterTimeLimit(BUDGET_MS)] });
  t.pass('property held');
});

t.test('after all that, both listeners still answer a fresh request', async (t) => {
  for (const listener of ['plain', 'tls'] as const) {
    const req = build({ kind: 'ok-get', body: '' }, 0, ++runs, listener);
    const result = await exchange(listener, [req], 1, req.bytes, null, false);
    equal(result.responses.length, 1, describe(result));
    checkResponse(result.responses[0] as RawResponse, req, 0);
    t.pass(`${listener}: answered`);
  }
});

t.test('nothing was logged as an error during the runs', async (t) => {
  // FAILS until fixed: every forwarded request with a body loses its access line to
  // "request handler failed: TypeError: Cannot read properties of null (reading 'remoteAddress')"
  // (undici's util.destroy() of the streamed body sets req.socket to null; the access line reads it).
  for (const [name, gw] of [['plain', plainGw], ['tls', tlsGw]] as const) {
    const errors = gw.logs.filter((line) => line.level === 'error' || line.level === 'fatal');
    t.same(errors.slice(0, 3), [], `${name}: ${errors.length} error line(s)`);
  }
});
