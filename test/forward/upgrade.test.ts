import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { Duplex, PassThrough } from 'node:stream';
import { Pool } from 'undici';
import { WebSocket, WebSocketServer } from 'ws';
import type { GatewayError } from '../../src/errors.js';
import { createDropTable, upstreamRequestHeaders } from '../../src/forward/headers.js';
import type { UpstreamErrorKind } from '../../src/forward/upstream.js';
import { openTunnel, type TunnelCompletion, type TunnelLimits } from '../../src/forward/upgrade.js';
import { rawConnect, type RawConnection } from '../helpers/raw.js';

// openTunnel against real upstreams on 127.0.0.1: a ws WebSocketServer, raw TCP servers that send
// exact bytes, and a tiny http server standing in for the gateway's `upgrade` listener.
t.setTimeout(30_000);

const ID = '4f1c2a7e-8b3d-4c5e-9f60-7a8b9c0d1e2f';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = createHash('sha1').update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
const LIMITS: TunnelLimits = { timeoutMs: 2000, idleTimeoutMs: 5000 };

/** Every completion call in order, and a promise for ended(). */
class Recorder implements TunnelCompletion {
  readonly events: string[] = [];
  readonly errors: UpstreamErrorKind[] = [];
  failure: GatewayError | undefined;
  status = 0;
  endedCount = 0;
  private resolveEnded!: () => void;
  readonly done = new Promise<void>((r) => (this.resolveEnded = r));
  countError(kind: UpstreamErrorKind): void {
    this.errors.push(kind);
  }
  opened(outcome: { status: 101; upstreamSeconds: number }): void {
    this.events.push('opened');
    this.status = outcome.status;
  }
  answered(outcome: { status: number; upstreamSeconds: number }): void {
    this.events.push('answered');
    this.status = outcome.status;
  }
  failed(error: GatewayError): void {
    this.events.push('failed');
    this.failure = error;
  }
  ended(): void {
    this.events.push('ended');
    this.endedCount++;
    this.resolveEnded();
  }
}

const upgradeRequest = (path = '/chat?room=1', extra: readonly string[] = []): string =>
  [`GET ${path} HTTP/1.1`, 'Host: gateway.example', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', 'X-Fapi-Interaction-Id: client-chosen', ...extra, '', ''].join('\r\n');

/** A client frame (masked, as RFC 6455 requires), text, under 126 bytes. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** Server frames (unmasked, short) as their texts. */
function serverTexts(buf: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + 2 <= buf.length; ) {
    const len = (buf[at + 1] as number) & 0x7f;
    if (at + 2 + len > buf.length) break;
    if (((buf[at] as number) & 0x0f) === 1) out.push(buf.subarray(at + 2, at + 2 + len).toString());
    at += 2 + len;
  }
  return out;
}

async function eventually(check: () => boolean, withinMs = 10_000): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!check() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

const listen = <S extends Server | NetServer>(server: S): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

/** A net server whose sockets are all destroyed at teardown. */
async function rawUpstream(t: Test, onSocket: (socket: Socket) => void) {
  const sockets = new Set<Socket>();
  const accepted: Socket[] = [];
  const server = createNetServer((socket) => {
    sockets.add(socket);
    accepted.push(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  const port = await listen(server);
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port, sockets, accepted, url: `http://127.0.0.1:${port}` };
}

/** Reads and drops what it gets and never answers (reading, so that it sees the peer's FIN and closes). */
const hang = (socket: Socket): void => void socket.resume();

/** A ws upstream: echoes each message as `echo:<text>` and greets with `hello` on open. */
async function wsUpstream(t: Test) {
  const seen: IncomingMessage[] = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', r));
  wss.on('headers', (headers) => {
    const at = headers.findIndex((h) => h.toLowerCase().startsWith('connection:'));
    headers[at] = 'Connection: Upgrade, X-Secret';
    headers.push('X-Secret: hop', 'Keep-Alive: timeout=5', 'Proxy-Connection: keep-alive', 'X-Fapi-Interaction-Id: upstream-chosen', 'X-Kept: yes');
  });
  wss.on('connection', (ws, req) => {
    seen.push(req);
    ws.send('hello');
    ws.on('message', (data) => ws.send(`echo:${String(data)}`));
  });
  t.teardown(() => {
    for (const ws of wss.clients) ws.terminate();
    return new Promise<void>((r) => wss.close(() => r()));
  });
  return { wss, seen, url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}` };
}

function poolFor(t: Test, url: string, options: Pool.Options = {}): Pool {
  const pool = new Pool(url, { connections: 2, headersTimeout: 2000, connectTimeout: 2000, ...options });
  t.teardown(() => pool.close());
  return pool;
}

/** Stands in for the gateway: every upgrade is tunnelled; failed() is answered like the caller would. */
async function gatewayFor(t: Test, pool: Pool, limits: TunnelLimits = LIMITS) {
  const tunnels: Recorder[] = [];
  const sockets = new Set<Duplex>();
  const server = createServer();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const recorder = new Recorder();
    tunnels.push(recorder);
    const failed = recorder.failed.bind(recorder);
    recorder.failed = (error) => {
      failed(error);
      const status = error.code === 'upstream_timeout' ? '504 Gateway Timeout' : '502 Bad Gateway';
      socket.end(`HTTP/1.1 ${status}\r\nx-fapi-interaction-id: ${ID}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    };
    const headers = upstreamRequestHeaders({ incoming: req.headers, drop: createDropTable([]), add: ['x-fapi-interaction-id', ID], peer: '127.0.0.1', peerTrusted: false, proto: 'http' });
    openTunnel(pool, { path: req.url ?? '/', headers, head, interactionId: ID }, socket, limits, recorder);
  });
  const port = await listen(server);
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const only = (): Recorder => {
    if (tunnels.length !== 1) throw new Error(`expected one tunnel, got ${tunnels.length}`);
    return tunnels[0] as Recorder;
  };
  return { port, tunnels, only };
}

/** An http upstream answering every upgrade with these bytes, then closing (or cutting, with `cut`). */
async function refusingUpstream(t: Test, bytes: string | Buffer, cut = false) {
  const server = createServer();
  server.on('upgrade', (_req, socket: Duplex) => {
    socket.on('error', () => undefined);
    if (cut) socket.write(bytes, () => socket.destroy());
    else socket.end(bytes);
  });
  const port = await listen(server);
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${port}`;
}

/** A client socket stand-in whose input never ends; its writes are taken at once, a millisecond later, or never. */
function fakeClient(writes: 'accept' | 'slow' | 'stall'): Duplex & { received: Buffer[] } {
  const received: Buffer[] = [];
  const client = new Duplex({
    highWaterMark: 1024,
    read: () => undefined,
    write(chunk: Buffer, _encoding, done) {
      received.push(chunk);
      if (writes === 'accept') done();
      else if (writes === 'slow') setTimeout(done, 1);
    },
  });
  return Object.assign(client, { received });
}

/** A raw client that has sent the upgrade request. */
async function upgrading(t: Test, port: number): Promise<RawConnection> {
  const client = await connectRaw(t, port);
  await client.write(upgradeRequest());
  return client;
}

async function connectRaw(t: Test, port: number): Promise<RawConnection> {
  const conn = await rawConnect({ port });
  t.teardown(() => conn.destroy());
  return conn;
}

t.test('a ws client and a ws upstream: messages both ways, then the client closes', async (t) => {
  const up = await wsUpstream(t);
  const gw = await gatewayFor(t, poolFor(t, up.url));
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/chat`);
  const received: string[] = [];
  ws.on('message', (data) => {
    received.push(String(data));
    if (received.length === 1) ws.send('ping');
    else ws.close(1000);
  });
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  t.equal(await closed, 1000);
  t.same(received, ['hello', 'echo:ping']);
  await gw.only().done;
  t.same(gw.only().events, ['opened', 'ended']);
  t.same(gw.only().errors, []);
  t.equal(gw.only().endedCount, 1);
  await eventually(() => up.wss.clients.size === 0);
  t.equal(up.wss.clients.size, 0, 'the upstream connection is gone');
});

t.test('raw client: the cleaned 101, head bytes first, echo both ways', async (t) => {
  const up = await wsUpstream(t);
  const gw = await gatewayFor(t, poolFor(t, up.url));
  const client = await connectRaw(t, gw.port);
  // One write: the frame after the request head reaches the gateway as `head`.
  await client.write(Buffer.concat([Buffer.from(upgradeRequest()), clientFrame('in-head')]));
  const first = await client.wait(1);
  const res = first.responses[0];
  if (res === undefined) throw new Error(`no 101: ${first.text}`);
  t.equal(res.status, 101);
  t.equal(res.reason, 'Switching Protocols');
  t.same(res.headers['x-fapi-interaction-id'], [ID], 'exactly one interaction id, the call’s');
  t.equal(res.header('connection'), 'Upgrade');
  t.equal(res.header('upgrade'), 'websocket');
  t.equal(res.header('sec-websocket-accept'), ACCEPT);
  t.equal(res.header('x-kept'), 'yes');
  for (const name of ['x-secret', 'keep-alive', 'proxy-connection', 'transfer-encoding']) t.notOk(name in res.headers, `no ${name}`);

  const texts = (): string[] => serverTexts(client.snapshot().rest);
  await eventually(() => texts().length >= 2);
  t.same(texts(), ['hello', 'echo:in-head'], 'the head frame reached the upstream');
  await client.write(clientFrame('after'));
  await eventually(() => texts().length >= 3);
  t.same(texts(), ['hello', 'echo:in-head', 'echo:after']);

  const seen = up.seen[0];
  t.equal(seen?.url, '/chat?room=1');
  t.equal(seen?.headers['x-fapi-interaction-id'], ID);
  t.equal(seen?.headers.upgrade, 'websocket');

  client.destroy();
  await gw.only().done;
  t.same(gw.only().events, ['opened', 'ended']);
  t.same(gw.only().errors, []);
  await eventually(() => up.wss.clients.size === 0);
  t.equal(up.wss.clients.size, 0, 'a client that leaves closes the upstream side');
});

t.test('bytes sent with the 101 are not lost; the upstream closing closes the client', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Fapi-Interaction-Id: a\r\nX-Fapi-Interaction-Id: b\r\n\r\nEARLY');
      socket.once('data', (d) => socket.end(`got:${String(d)}`));
    });
  });
  const gw = await gatewayFor(t, poolFor(t, up.url));
  const client = await upgrading(t, gw.port);
  const first = await client.wait(1);
  t.equal(first.responses[0]?.status, 101);
  t.same(first.responses[0]?.headers['x-fapi-interaction-id'], [ID]);
  await eventually(() => client.snapshot().rest.toString() === 'EARLY');
  t.equal(client.snapshot().rest.toString(), 'EARLY');
  await client.write('bye');
  const last = await client.wait();
  t.ok(last.closed, 'the client socket was closed');
  t.equal(last.rest.toString(), 'EARLYgot:bye');
  await gw.only().done;
  t.same(gw.only().events, ['opened', 'ended']);
  t.same(gw.only().errors, []);
});

t.test('an upstream that resets an open tunnel tears the client down', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.once('data', () => socket.resetAndDestroy());
    });
  });
  const gw = await gatewayFor(t, poolFor(t, up.url));
  const client = await upgrading(t, gw.port);
  t.equal((await client.wait(1)).responses[0]?.status, 101);
  await client.write('x');
  t.ok((await client.wait()).closed);
  await gw.only().done;
  t.same(gw.only().events, ['opened', 'ended']);
  t.same(gw.only().errors, ['reset']);
});

t.test('an upstream refusing the upgrade: its answer relayed, cleaned, Connection: close', async (t) => {
  const refuser = createServer();
  refuser.on('upgrade', (_req, socket: Duplex) => {
    socket.end(
      'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\nX-Fapi-Interaction-Id: upstream-chosen\r\nX-Reason: policy\r\n\r\n' +
        '6\r\ndenied\r\n0\r\n\r\n',
    );
  });
  const port = await listen(refuser);
  t.teardown(() => new Promise<void>((r) => refuser.close(() => r())));
  const gw = await gatewayFor(t, poolFor(t, `http://127.0.0.1:${port}`));
  const client = await upgrading(t, gw.port);
  const got = await client.wait();
  t.ok(got.closed, 'closed after the body');
  const res = got.responses[0];
  if (res === undefined) throw new Error(`no response: ${got.text}`);
  t.equal(got.responses.length, 1);
  t.equal(res.status, 403);
  t.equal(res.reason, 'Forbidden');
  t.equal(res.header('connection'), 'close');
  t.equal(res.framing, 'close');
  t.equal(res.text, 'denied');
  t.same(res.headers['x-fapi-interaction-id'], [ID]);
  t.equal(res.header('x-reason'), 'policy');
  t.equal(res.header('content-type'), 'text/plain');
  for (const name of ['transfer-encoding', 'x-secret', 'keep-alive']) t.notOk(name in res.headers, `no ${name}`);
  await gw.only().done;
  t.same(gw.only().events, ['answered', 'ended']);
  t.equal(gw.only().status, 403);
  t.same(gw.only().errors, []);
});

t.test('a refusal to a client that never closes: answered, then the client is closed after timeoutMs', async (t) => {
  const url = await refusingUpstream(t, 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope');
  const recorder = new Recorder();
  const client = fakeClient('accept');
  openTunnel(poolFor(t, url), { path: '/chat', headers: [], head: Buffer.alloc(0), interactionId: ID }, client, { timeoutMs: 300, idleTimeoutMs: 5000 }, recorder);
  await recorder.done;
  t.same(recorder.events, ['answered', 'ended']);
  t.equal(recorder.status, 401);
  t.ok(client.destroyed);
  const text = Buffer.concat(client.received).toString('latin1');
  t.match(text, /^HTTP\/1\.1 401 Unauthorized\r\n/);
  t.match(text, /\r\nconnection: close\r\n/);
  t.match(text, /\r\n\r\nnope$/);
});

t.test('a refusal whose reader stalls: cut after timeoutMs, not an upstream error', async (t) => {
  const big = Buffer.alloc(256 * 1024, 0x61);
  const url = await refusingUpstream(t, Buffer.concat([Buffer.from(`HTTP/1.1 403 Forbidden\r\nContent-Length: ${big.length}\r\n\r\n`), big]));
  const recorder = new Recorder();
  const client = fakeClient('stall');
  openTunnel(poolFor(t, url), { path: '/chat', headers: [], head: Buffer.alloc(0), interactionId: ID }, client, { timeoutMs: 300, idleTimeoutMs: 5000 }, recorder);
  await recorder.done;
  t.same(recorder.events, ['answered', 'ended']);
  t.equal(recorder.status, 403);
  t.same(recorder.errors, []);
  t.ok(client.destroyed);
});

t.test('a large refusal through a slow reader arrives whole, with backpressure', async (t) => {
  const big = Buffer.alloc(256 * 1024, 0x62);
  const url = await refusingUpstream(t, Buffer.concat([Buffer.from(`HTTP/1.1 404 Not Found\r\nContent-Length: ${big.length}\r\n\r\n`), big]));
  const recorder = new Recorder();
  const client = fakeClient('slow');
  openTunnel(poolFor(t, url), { path: '/chat', headers: [], head: Buffer.alloc(0), interactionId: ID }, client, { timeoutMs: 1000, idleTimeoutMs: 5000 }, recorder);
  await recorder.done;
  t.same(recorder.events, ['answered', 'ended']);
  t.same(recorder.errors, []);
  const all = Buffer.concat(client.received);
  t.ok(all.subarray(all.length - big.length).equals(big), 'the whole body');
});

t.test('an upstream that cuts its refusal mid-body: the client is cut, counted as reset', async (t) => {
  const url = await refusingUpstream(t, 'HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\npartial', true);
  const gw = await gatewayFor(t, poolFor(t, url));
  const client = await upgrading(t, gw.port);
  const got = await client.wait();
  t.ok(got.closed);
  t.equal(got.responses.length, 0, 'no complete response');
  t.match(got.text, /^HTTP\/1\.1 403 Forbidden\r\n[^]*\r\n\r\npartial$/);
  await gw.only().done;
  t.same(gw.only().events, ['answered', 'ended']);
  t.same(gw.only().errors, ['reset']);
});

t.test('a 101 without Upgrade: undici fails it, the caller answers 502', async (t) => {
  const up = await rawUpstream(t, (socket) => socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n')));
  const gw = await gatewayFor(t, poolFor(t, up.url));
  const client = await upgrading(t, gw.port);
  const got = await client.wait();
  t.equal(got.responses[0]?.status, 502);
  await gw.only().done;
  t.same(gw.only().events, ['failed', 'ended']);
  t.equal(gw.only().failure?.code, 'upstream_unavailable');
  t.same(gw.only().errors, ['reset']);
});

t.test('upstream down: failed(upstream_unavailable), counted as refused', async (t) => {
  const gone = createNetServer();
  const port = await listen(gone);
  await new Promise<void>((r) => gone.close(() => r()));
  const gw = await gatewayFor(t, poolFor(t, `http://127.0.0.1:${port}`));
  const client = await upgrading(t, gw.port);
  const got = await client.wait();
  t.equal(got.responses[0]?.status, 502);
  await gw.only().done;
  t.same(gw.only().events, ['failed', 'ended']);
  t.equal(gw.only().failure?.code, 'upstream_unavailable');
  t.same(gw.only().errors, ['refused']);
});

t.test('an upstream that never answers: failed(upstream_timeout) after timeoutMs, its connection closed', async (t) => {
  const up = await rawUpstream(t, hang);
  // The pool's own headersTimeout is far away: the bound here is openTunnel's.
  const gw = await gatewayFor(t, poolFor(t, up.url, { headersTimeout: 30_000 }), { timeoutMs: 300, idleTimeoutMs: 5000 });
  const client = await connectRaw(t, gw.port);
  const started = performance.now();
  await client.write(upgradeRequest());
  const got = await client.wait();
  t.ok(performance.now() - started >= 250, 'not before the deadline');
  t.equal(got.responses[0]?.status, 504);
  await gw.only().done;
  t.same(gw.only().events, ['failed', 'ended']);
  t.equal(gw.only().failure?.code, 'upstream_timeout');
  t.same(gw.only().errors, ['timeout']);
  // Only the connection the upgrade went on: undici 7 reopens one after an abort (nodejs/undici#5845), idle, the pool's to reuse.
  await eventually(() => up.accepted[0]?.destroyed === true);
  t.equal(up.accepted[0]?.destroyed, true, 'the upstream connection was closed');
});

t.test('the pool’s own headersTimeout, when shorter, is an upstream_timeout too', async (t) => {
  const up = await rawUpstream(t, hang);
  const gw = await gatewayFor(t, poolFor(t, up.url, { headersTimeout: 300 }), { timeoutMs: 10_000, idleTimeoutMs: 5000 });
  const client = await upgrading(t, gw.port);
  t.equal((await client.wait()).responses[0]?.status, 504);
  await gw.only().done;
  t.same(gw.only().events, ['failed', 'ended']);
  t.equal(gw.only().failure?.code, 'upstream_timeout');
  t.same(gw.only().errors, ['timeout']);
});

t.test('an upgrade queued behind a busy connection gets its deadline from dispatch', async (t) => {
  const up = await rawUpstream(t, hang);
  const pool = poolFor(t, up.url, { connections: 1, headersTimeout: 30_000 });
  const busy = new AbortController();
  const hanging = pool.request({ method: 'GET', path: '/busy', signal: busy.signal }).catch(() => 'aborted');
  await eventually(() => up.sockets.size === 1);
  const recorder = new Recorder();
  const client = new PassThrough();
  openTunnel(pool, { path: '/chat', headers: ['sec-websocket-key', KEY, 'sec-websocket-version', '13'], head: Buffer.alloc(0), interactionId: ID }, client, { timeoutMs: 300, idleTimeoutMs: 5000 }, recorder);
  await eventually(() => recorder.events.length > 0);
  t.same(recorder.events, ['failed'], 'reported while still queued');
  t.equal(recorder.failure?.code, 'upstream_timeout');
  t.same(recorder.errors, ['timeout']);
  busy.abort();
  t.equal(await hanging, 'aborted');
  // undici reaches the queued upgrade now, and it is aborted there.
  await recorder.done;
  t.same(recorder.events, ['failed', 'ended']);
  t.equal(recorder.endedCount, 1);
  t.notOk(client.destroyed, 'the client is left to the caller');
  client.destroy();
});

t.test('idle tunnel: kept while bytes move, cut after idleTimeoutMs of silence', async (t) => {
  const up = await wsUpstream(t);
  const gw = await gatewayFor(t, poolFor(t, up.url), { timeoutMs: 2000, idleTimeoutMs: 800 });
  const client = await upgrading(t, gw.port);
  t.equal((await client.wait(1)).responses[0]?.status, 101);
  // Longer than the idle bound in all, with bytes moving every 50 ms.
  for (let i = 0; i < 24; i++) {
    await client.write(clientFrame(`k${i}`));
    await new Promise((r) => setTimeout(r, 50));
  }
  t.notOk(client.snapshot().closed, 'still open while bytes move');
  const got = await client.wait();
  t.ok(got.closed, 'cut once nothing moved');
  t.equal(serverTexts(got.rest).length, 25, 'every echo arrived before the cut');
  await gw.only().done;
  t.same(gw.only().events, ['opened', 'ended']);
  t.same(gw.only().errors, []);
  await eventually(() => up.wss.clients.size === 0);
  t.equal(up.wss.clients.size, 0, 'the upstream side was cut too');
});

t.test('a client that leaves mid-handshake aborts the upstream attempt', async (t) => {
  const up = await rawUpstream(t, hang);
  const gw = await gatewayFor(t, poolFor(t, up.url), { timeoutMs: 5000, idleTimeoutMs: 5000 });
  const client = await upgrading(t, gw.port);
  await eventually(() => up.sockets.size === 1);
  (client.socket as Socket).resetAndDestroy();
  await eventually(() => gw.tunnels.length === 1);
  await gw.only().done;
  t.same(gw.only().events, ['ended'], 'no failed(), no answer');
  t.same(gw.only().errors, []);
  await eventually(() => up.accepted[0]?.destroyed === true);
  t.equal(up.accepted[0]?.destroyed, true, 'the upstream connection was aborted');
});

t.test('a client gone before the connection is up: aborted when undici gets to it', async (t) => {
  const up = await rawUpstream(t, hang);
  const pool = poolFor(t, up.url);
  const recorder = new Recorder();
  const client = new PassThrough();
  const tunnel = openTunnel(pool, { path: '/chat', headers: [], head: Buffer.alloc(0), interactionId: ID }, client, LIMITS, recorder);
  tunnel.clientClosed();
  tunnel.clientClosed();
  client.destroy();
  await recorder.done;
  t.same(recorder.events, ['ended']);
  t.same(recorder.errors, []);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(recorder.endedCount, 1);
});

t.test('a client already destroyed: nothing dispatched, ended() at once', async (t) => {
  const up = await rawUpstream(t, hang);
  const pool = poolFor(t, up.url);
  const recorder = new Recorder();
  const client = new PassThrough();
  client.destroy();
  openTunnel(pool, { path: '/chat', headers: [], head: Buffer.alloc(0), interactionId: ID }, client, LIMITS, recorder).clientClosed();
  t.same(recorder.events, ['ended']);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(up.sockets.size, 0, 'no upstream connection');
  t.equal(recorder.endedCount, 1);
});
