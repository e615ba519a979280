// Shared plumbing for the real-load-balancer tests: a PKI, certbound in header mode behind an
// introspection endpoint and a recording upstream, and a supervised load balancer process.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { Agent } from 'undici';
import { createCa, type Ca, type Issued } from '../../fixtures/pki.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../../helpers/servers.js';
import { call, tlsClient, type Reply } from '../../helpers/client.js';

type TestLike = Test;

export const TOKEN = 'token-bound-to-A';
export const ROUTE = '/ob/aisp/accounts';
/** Path every load balancer config sends straight to the recording upstream, bypassing certbound: shows what the LB itself forwards. */
export const PROBE = '/probe';
export const TRUSTED_PROXIES = ['127.0.0.1/32', '::1/128'];

/** Fails (never skips) when a load balancer binary is missing: `npm test` installs them first (scripts/test-setup.sh). */
export function requireBinary(path: string, debianPackage: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} not found or not executable: install the Debian package "${debianPackage}" (\`npm run test:setup\`, scripts/test-setup.sh, installs it; \`npm test\` runs it first)`);
  }
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** Limits of waits that end as soon as their condition holds: generous, so a busy machine is no failure. */
const READY_MS = 60_000;
const SOCKET_TIMEOUT_MS = 30_000;
/** SIGTERM, then this long for the LB to exit by itself before SIGKILL; then as long for its workers. */
const STOP_GRACE_MS = 10_000;

/** `count` distinct ports nobody listens on right now (the LB binds them a moment later). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  await Promise.all(
    servers.map((server) => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    })),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

export interface Fixture {
  readonly dir: string;
  readonly ca: Ca;
  readonly server: Issued;
  /** The certificate TOKEN is bound to. */
  readonly tppA: Issued;
  /** Same CA, not bound. */
  readonly tppB: Issued;
  /** Issued by a CA the load balancer does not trust. */
  readonly foreign: Issued;
  readonly gateway: TestGateway;
  readonly gatewayPort: number;
  readonly upstream: Awaited<ReturnType<typeof startUpstream>>;
  readonly upstreamPort: number;
  readonly introspection: Awaited<ReturnType<typeof startIntrospection>>;
  /** Files written to `dir` (world-readable, so LB workers that dropped privileges can read them). */
  readonly files: { readonly ca: string; readonly cert: string; readonly key: string; readonly certAndKey: string };
}

/** PKI, introspection (TOKEN bound to A), recording upstream, and certbound with `client_certificate.preset`. */
export async function startFixture(t: TestLike, preset: string): Promise<Fixture> {
  const ca = await createCa({ commonName: `LB Test CA (${preset})` });
  const otherCa = await createCa({ commonName: 'Some Other CA' });
  const [server, tppA, tppB, foreign] = await Promise.all([
    ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] }),
    ca.issue({ commonName: 'TPP A', organization: 'LB Test', kind: 'client' }),
    ca.issue({ commonName: 'TPP B', organization: 'LB Test', kind: 'client' }),
    otherCa.issue({ commonName: 'TPP A', organization: 'LB Test', kind: 'client' }),
  ]);

  const dir = mkdtempSync(join(tmpdir(), `certbound-lb-${preset}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755); // LB workers may run as another user (nobody) when the test runs as root
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), certAndKey: join(dir, 'server.pem') };
  writeFileSync(files.ca, ca.certPem, { mode: 0o644 });
  writeFileSync(files.cert, server.certPem, { mode: 0o644 });
  writeFileSync(files.key, server.keyPem, { mode: 0o644 }); // throw-away test key
  writeFileSync(files.certAndKey, server.certPem + server.keyPem, { mode: 0o644 });

  const now = Math.floor(Date.now() / 1000);
  const introspection = await startIntrospection(
    new Map([[TOKEN, { active: true, client_id: 'tpp-a', sub: 'user-1', scope: 'accounts', exp: now + 600, iss: 'https://as.example', cnf: { 'x5t#S256': tppA.thumbprint } }]]),
  );
  t.teardown(() => introspection.close());
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const gateway = await startGateway({
    authorization_server: { issuer: 'https://as.example', introspection_endpoint: introspection.endpoint, client_id: 'certbound', client_secret: 'secret', timeout_ms: 2000 },
    upstreams: { bank: upstream.url },
    routes: [{ name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] }],
    client_certificate: { source: 'header', preset, trusted_proxies: TRUSTED_PROXIES },
  });
  t.teardown(() => gateway.close());
  return {
    dir, ca, server, tppA, tppB, foreign, gateway, upstream, introspection, files,
    gatewayPort: gateway.runtime.trafficAddress.port,
    upstreamPort: Number(new URL(upstream.url).port),
  };
}

export interface LbProcess {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly child: ChildProcess;
  /** stdout + stderr so far (diagnostics). */
  output(): string;
  /** SIGTERM to the LB's process group, SIGKILL after a grace period; resolves once the main process exited. Idempotent. */
  stop(): Promise<void>;
  /** True when the main process exited and no process is left in its process group. */
  gone(): boolean;
}

const running = new Set<LbProcess>();
// Last resort if the test process dies without running teardowns: do not leave an LB behind.
process.once('exit', () => {
  for (const lb of running) killGroup(lb.child, 'SIGKILL');
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal); // the LB runs in its own process group (detached): workers included
  } catch {
    // already gone
  }
}

function groupAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(-pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Starts a load balancer in the foreground, in its own process group, and waits until `port`
 * accepts connections. Registers a teardown that stops it. Throws with the LB's output when it
 * exits early or is not ready within `readyMs`.
 */
export async function startLb(
  t: TestLike,
  opts: {
    name: string;
    command: string;
    args: string[];
    port: number;
    cwd: string;
    env?: Record<string, string>;
    readyMs?: number;
    /** Log files the LB writes besides stdout/stderr (shown with its output). */
    logFiles?: string[];
  },
): Promise<LbProcess> {
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  let spawnError: Error | undefined;
  child.on('error', (e) => (spawnError = e));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const hasExited = (): boolean => child.exitCode !== null || child.signalCode !== null;

  let stopping: Promise<void> | undefined;
  const lb: LbProcess = {
    name: opts.name,
    port: opts.port,
    url: `https://localhost:${opts.port}`,
    child,
    output: () => [out, ...(opts.logFiles ?? []).map((f) => `--- ${f} ---\n${readIfThere(f)}`)].join('\n'),
    stop: () => {
      stopping ??= (async () => {
        if (!hasExited()) {
          killGroup(child, 'SIGTERM');
          const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(timer);
        }
        // Workers that outlive their master (should not happen): give them a moment, then kill,
        // and wait until the kernel has removed them (a process just sent SIGKILL still exists).
        await until(() => !groupAlive(child.pid), STOP_GRACE_MS);
        if (groupAlive(child.pid)) killGroup(child, 'SIGKILL');
        await until(() => !groupAlive(child.pid), STOP_GRACE_MS);
        running.delete(lb);
      })();
      return stopping;
    },
    gone: () => hasExited() && !groupAlive(child.pid),
  };
  running.add(lb);
  t.teardown(() => lb.stop());

  const readyMs = opts.readyMs ?? READY_MS;
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (spawnError) throw new Error(`${opts.name}: could not start ${opts.command}: ${spawnError.message}`);
    if (hasExited()) {
      throw new Error(`${opts.name} exited during startup (code ${child.exitCode}, signal ${child.signalCode}):\n${lb.output()}`);
    }
    if (await accepts(opts.port)) return lb;
    if (Date.now() > deadline) {
      await lb.stop();
      throw new Error(`${opts.name} did not listen on 127.0.0.1:${opts.port} within ${readyMs} ms:\n${lb.output()}`);
    }
    await sleep(50);
  }
}

function readIfThere(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '(none)';
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls every 50 ms until `check` holds or `withinMs` passed. */
async function until(check: () => boolean, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check() && Date.now() < deadline) await sleep(50);
}

/** Clients (undici agents) trusting the test CA and presenting A, B, a foreign-CA certificate, or none. */
export function clients(t: TestLike, fx: Fixture): { asA: Agent; asB: Agent; foreign: Agent; anonymous: Agent } {
  const made = {
    asA: tlsClient(fx.ca.certPem, fx.tppA),
    asB: tlsClient(fx.ca.certPem, fx.tppB),
    foreign: tlsClient(fx.ca.certPem, fx.foreign),
    anonymous: tlsClient(fx.ca.certPem),
  };
  t.teardown(() => Promise.all(Object.values(made).map((a) => a.destroy())));
  return made;
}

export const bearer = (token: string = TOKEN): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** Prints the LB's output (its error log) when a check failed: call with the check's outcome. */
export function diagnose(t: TestLike, lb: LbProcess, passed: boolean): void {
  if (!passed) t.comment(`--- ${lb.name} output ---\n${lb.output().slice(-4000)}`);
}

/** 200 through LB and certbound; the upstream got the identity headers and none of `consumedHeaders`. */
export async function expectBound200(t: TestLike, fx: Fixture, lb: LbProcess, dispatcher: Agent, consumedHeaders: readonly string[]): Promise<void> {
  const before = fx.upstream.seen.length;
  const res = await call(`${lb.url}${ROUTE}`, { dispatcher, headers: bearer() });
  t.equal(res.status, 200, `bound certificate → 200 (body: ${res.text})`);
  diagnose(t, lb, res.status === 200);
  t.equal(fx.upstream.seen.length, before + 1, 'forwarded once');
  const h = fx.upstream.seen[fx.upstream.seen.length - 1]?.headers ?? {};
  t.equal(h['x-certbound-client-id'], 'tpp-a');
  t.equal(h['x-certbound-subject'], 'user-1');
  t.equal(h['x-certbound-certificate-thumbprint'], fx.tppA.thumbprint, 'thumbprint of A, computed from the LB header');
  t.equal(h.authorization, undefined, 'Authorization not forwarded');
  for (const name of consumedHeaders) t.equal(h[name], undefined, `${name} stripped before the upstream`);
}

/** 401 invalid_token in body and WWW-Authenticate, nothing forwarded. */
export async function expect401(
  t: TestLike,
  fx: Fixture,
  lb: LbProcess,
  res: Reply | Promise<Reply>,
  description: RegExp,
): Promise<Reply> {
  const before = fx.upstream.seen.length;
  const reply = await res;
  t.equal(reply.status, 401, `401 expected (body: ${reply.text})`);
  diagnose(t, lb, reply.status === 401);
  const body = reply.status === 401 ? reply.json() : {};
  t.equal(body.error, 'invalid_token');
  t.match(body.error_description, description);
  t.match(reply.headers['www-authenticate'], /^Bearer realm="certbound", error="invalid_token"/);
  t.equal(fx.upstream.seen.length, before, 'nothing forwarded');
  return reply;
}

export const MISMATCH = /^client certificate does not match/;
/** "client certificate required", optionally with a reason: never a parse (certificate_malformed) error. */
export const REQUIRED = /^client certificate required(: |$)/;

/** Sends a request that fails at the TLS layer or answers; returns the error, or the reply. */
export async function attempt(url: string, dispatcher: Agent, headers: Record<string, string> = bearer()): Promise<{ error: Error } | { reply: Reply }> {
  try {
    return { reply: await call(url, { dispatcher, headers }) };
  } catch (e) {
    return { error: e as Error };
  }
}

/**
 * Raw TLS connection presenting `cert`: resolves with the TLS alert (error code) the LB sends,
 * or `answered` when it responds to an HTTP request instead. Under TLS 1.3 the client's side of
 * the handshake completes before the server has checked the certificate, so the alert arrives
 * on the first read.
 */
export function handshakeOutcome(fx: Fixture, port: number, cert: Issued): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.ca.certPem, cert: cert.certPem, key: cert.keyPem });
    let settled = false;
    const done = (outcome: string): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(outcome);
    };
    socket.once('secureConnect', () => socket.write(`GET ${ROUTE} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`));
    socket.once('data', () => done('answered'));
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    socket.once('close', () => done('closed'));
    socket.setTimeout(SOCKET_TIMEOUT_MS, () => done('timeout'));
  });
}

export interface RawOutcome {
  readonly status: number;
  readonly reused: boolean;
  readonly session: Buffer | undefined;
}

/** One request with TOKEN over a fresh TLS connection presenting `cert`, optionally resuming `session`. */
export function rawRequest(fx: Fixture, port: number, cert: Issued, session?: Buffer): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1', port, servername: 'localhost', ca: fx.ca.certPem, cert: cert.certPem, key: cert.keyPem,
      ...(session ? { session } : {}),
    });
    let latest: Buffer | undefined;
    let reused = false;
    let text = '';
    socket.on('session', (s: Buffer) => (latest = s));
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused(); // false once the socket is closed
      socket.write(`GET ${ROUTE} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${TOKEN}\r\nconnection: close\r\n\r\n`);
    });
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.once('error', reject);
    socket.once('close', () => {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
      if (status === undefined) reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      else resolve({ status: Number(status), reused, session: latest });
    });
    socket.setTimeout(SOCKET_TIMEOUT_MS, () => socket.destroy(new Error('timeout')));
  });
}

/** A resumed TLS session (no certificate message on the wire) still carries the client certificate to certbound. */
export async function expectResumptionKeepsCertificate(t: TestLike, fx: Fixture, lb: LbProcess): Promise<void> {
  const first = await rawRequest(fx, lb.port, fx.tppA);
  t.equal(first.status, 200, 'full handshake with A → 200');
  t.ok(first.session, 'the LB issued a session ticket / id');
  if (!first.session) return;
  const second = await rawRequest(fx, lb.port, fx.tppA, first.session);
  t.ok(second.reused, 'second connection resumed the session');
  t.equal(second.status, 200, 'resumed session → still 200 (the LB still knows the certificate)');
  diagnose(t, lb, second.status === 200);
}

/** What the LB itself put in `name` for the probe request (straight to the upstream, not through certbound). */
export async function probe(fx: Fixture, lb: LbProcess, dispatcher: Agent, headers: Record<string, string> = {}): Promise<Record<string, string | string[] | undefined>> {
  const res = await call(`${lb.url}${PROBE}`, { dispatcher, headers });
  if (res.status !== 200) throw new Error(`probe answered ${res.status}: ${res.text}\n--- ${lb.name} output ---\n${lb.output().slice(-4000)}`);
  const seen = [...fx.upstream.seen].reverse().find((s) => s.url.startsWith(PROBE));
  if (!seen) throw new Error('probe request not seen by the upstream');
  return seen.headers;
}

/** Writes a config file into the fixture directory. */
export function writeConfig(fx: Fixture, name: string, text: string): string {
  const path = join(fx.dir, name);
  writeFileSync(path, text, { mode: 0o644 });
  return path;
}

/**
 * A certificate from another CA, presented to a load balancer that verifies optional client
 * certificates: the handshake ends with a TLS alert and certbound is never asked.
 */
export async function expectForeignCaRejected(t: TestLike, fx: Fixture, lb: LbProcess, port: number, foreign: Agent): Promise<void> {
  const calls = fx.introspection.calls.length;
  const before = fx.upstream.seen.length;
  const r = await attempt(`${lb.url}${ROUTE}`, foreign);
  t.ok('error' in r, `TLS failure expected (got ${'reply' in r ? r.reply.status : ''})`);
  diagnose(t, lb, 'error' in r);
  // Under TLS 1.3 the client notices the alert on its first read: a raw handshake shows which.
  const alert = await handshakeOutcome(fx, port, fx.foreign);
  t.match(alert, /^ERR_SSL_.*ALERT/, `the TLS alert the client receives (${alert})`);
  t.equal(fx.introspection.calls.length, calls, 'certbound never asked');
  t.equal(fx.upstream.seen.length, before);
}
