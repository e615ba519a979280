// The servers of phase `peers`, each started fresh: nginx and Apache (with or without
// mod_auth_openidc) from the templates in this directory ({{NAME}} substituted at run time), the
// bare Node TLS proxy, certbound (through run.ts), and the HTTPS fake AS that (P3) introspects at.
import { spawn } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DemoPki, Issued } from '../../test/fixtures/pki.js';
import { startChild, type Child } from '../lib/proc.js';
import { killTree } from './tree.js';

/** BENCH_PEERS_NGINX, BENCH_PEERS_APACHE, BENCH_PEERS_APACHE_MODULES: other binaries or module directory (Debian's by default). */
export const NGINX = process.env.BENCH_PEERS_NGINX ?? '/usr/sbin/nginx';
export const APACHE = process.env.BENCH_PEERS_APACHE ?? '/usr/sbin/apache2';
export const APACHE_MODULES = process.env.BENCH_PEERS_APACHE_MODULES ?? '/usr/lib/apache2/modules';
export const OPENIDC_MODULE = `${APACHE_MODULES}/mod_auth_openidc.so`;
const TEMPLATES = new URL('./', import.meta.url);
const CLIENT_ID = 'certbound';
const CLIENT_SECRET = 'bench';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** BENCH_PEERS_WORKERS: the worker processes of (P6), the bare proxy under node:cluster (default: one per CPU). */
export const CLUSTER_WORKERS = Number(process.env.BENCH_PEERS_WORKERS ?? availableParallelism());

export type Kind = 'nginx' | 'apache' | 'openidc' | 'node' | 'certbound' | 'cluster';
export const KINDS: readonly Kind[] = ['nginx', 'apache', 'openidc', 'node', 'certbound', 'cluster'];
export const TOKEN_CHECKING: ReadonlySet<Kind> = new Set(['openidc', 'certbound']);
export const LABEL: Readonly<Record<Kind, string>> = {
  nginx: '(P1) nginx', apache: '(P2) Apache pass-through', openidc: '(P3) Apache + mod_auth_openidc', node: '(P4) bare Node TLS proxy', certbound: '(P5) certbound',
  cluster: `(P6) bare Node TLS proxy × ${CLUSTER_WORKERS} (node:cluster)`,
};
/** `(P1)`…`(P5)`. */
export const short = (kind: Kind): string => LABEL[kind].split(' ')[0] ?? kind;

/** A server under test: one process, or a master and its workers/children. */
export interface Server {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export interface Started {
  readonly server: Server;
  /** Deletes its files (after stop); returns the bytes of its access log. */
  cleanup(): number;
}

/** mod_auth_openidc's introspection endpoint, and the `-D` names apache.conf's <IfDefine>s test. */
export interface OpenidcSetup {
  readonly introspectionUrl: string;
  readonly defines: readonly string[];
}

export interface ServerSetup {
  readonly pki: DemoPki;
  readonly upstreamUrl: string;
  /** tmpfs directory for the access logs. */
  readonly logDir: string;
  startGateway(): Promise<Child<{ port: number }>>;
}

export interface Servers {
  start(kind: Kind, tag: string, openidc?: OpenidcSetup): Promise<Started>;
  /** Stops every server still running. */
  stopAll(): Promise<void>;
  /** SIGKILL to every server still running (from an 'exit' listener: synchronous). */
  killAll(): void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return address.port;
}

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

function fill(template: string, values: Readonly<Record<string, string>>): string {
  return readFileSync(new URL(template, TEMPLATES), 'utf8').replace(/\{\{([A-Z_]+)\}\}/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`${template}: no value for ${whole}`);
    return value;
  });
}

/** A directory the servers' unprivileged workers (www-data) can read, on the disk (not tmpfs). */
function runDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** `SERIAL base64url(SHA-256(DER))` lines for mod_rewrite's txt map: serial as mod_ssl's SSL_CLIENT_M_SERIAL prints it. */
function fingerprintMap(certificates: readonly Issued[]): string {
  return certificates.map((c) => `${new X509Certificate(c.certPem).serialNumber.toUpperCase()} ${c.thumbprint}`).join('\n') + '\n';
}

/** The values both templates take. */
type Common = Readonly<Record<'DIR' | 'PORT' | 'ACCESS_LOG' | 'UPSTREAM' | 'SERVER_CERT' | 'SERVER_KEY' | 'CLIENT_CA', string>>;

/** Writes apache2.conf (with mod_auth_openidc for `openidc`) into `dir`; returns apache2's arguments. */
function apacheArgs(dir: string, common: Common, pki: DemoPki, openidc: OpenidcSetup | undefined): string[] {
  let auth = '';
  let modules = '';
  const defines: string[] = [];
  if (openidc) {
    const map = join(dir, 'fingerprints.txt');
    writeFileSync(map, fingerprintMap([pki.tppA, pki.tppB, pki.tppC]), { mode: 0o644 });
    modules = ['rewrite', 'auth_openidc'].map((m) => `LoadModule ${m}_module ${APACHE_MODULES}/mod_${m}.so`).join('\n');
    auth = fill('apache-openidc.conf', {
      INTROSPECTION_URL: openidc.introspectionUrl, CLIENT_ID, CLIENT_SECRET, CLIENT_CA: common.CLIENT_CA, PASSPHRASE: randomBytes(16).toString('hex'), FINGERPRINT_MAP: map,
    });
    for (const d of openidc.defines) defines.push('-D', d);
  }
  const conf = join(dir, 'apache2.conf');
  writeFileSync(conf, fill('apache.conf', { ...common, MODULE_DIR: APACHE_MODULES, MODULES: modules, AUTH: auth }));
  return ['-f', conf, '-DFOREGROUND', ...defines];
}

/** Writes nginx.conf into `dir`; returns nginx's arguments. */
function nginxArgs(dir: string, common: Common): string[] {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, fill('nginx.conf', common));
  return ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'];
}

/** Starts servers; every one started is stopped by stopAll (and killed by killAll if the bench exits first). */
export function servers(setup: ServerSetup): Servers {
  const { pki } = setup;
  const live = new Set<Server>();
  const track = (pid: number, port: number, stop: () => Promise<void>): Server => {
    const server: Server = { pid, port, stop: () => (live.delete(server), stop()) };
    live.add(server);
    return server;
  };
  const fromChild = (child: Child<{ port: number }>): Server => track(child.pid, child.ready.port, () => child.stop());

  /** An nginx or Apache process in the foreground; ready once its port accepts connections. */
  const external = async (name: string, command: string, args: readonly string[], port: number, errorLog: string): Promise<Server> => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${name}: ${command} did not start`);
    const running = () => child.exitCode === null && child.signalCode === null;
    const server = track(pid, port, async () => {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => killTree(pid), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await canConnect(port))) {
      if (!running() || Date.now() > deadline) {
        await server.stop();
        const errors = existsSync(errorLog) ? readFileSync(errorLog, 'utf8').split('\n').slice(-15).join('\n') : '';
        throw new Error(`${name} did not start (exit ${child.exitCode ?? child.signalCode ?? 'none, timed out'}): ${output.trim()}\n${errors}`);
      }
      await sleep(50);
    }
    return server;
  };

  const start = async (kind: Kind, tag: string, openidc?: OpenidcSetup): Promise<Started> => {
    // run.ts's startGateway writes and deletes its own access log (to its tmpfs directory).
    if (kind === 'certbound') return { server: fromChild(await setup.startGateway()), cleanup: () => 0 };
    const accessLog = join(setup.logDir, `${kind}-${tag}.log`);
    const logBytes = () => {
      const bytes = existsSync(accessLog) ? statSync(accessLog).size : 0;
      rmSync(accessLog, { force: true });
      return bytes;
    };
    if (kind === 'node' || kind === 'cluster') {
      const child = await startChild<{ port: number }>('servers/tls-passthrough.ts', {
        upstream: setup.upstreamUrl, cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, logFile: accessLog, workers: kind === 'cluster' ? CLUSTER_WORKERS : 1,
      });
      return { server: fromChild(child), cleanup: logBytes };
    }
    const dir = runDirectory(`certbound-peers-${kind}-`);
    const port = await freePort();
    const clientCa = join(dir, 'ca.crt');
    copyFileSync(pki.files['ca.crt'] as string, clientCa);
    chmodSync(clientCa, 0o644);
    const common: Common = {
      DIR: dir, PORT: String(port), ACCESS_LOG: accessLog, UPSTREAM: new URL(setup.upstreamUrl).host,
      SERVER_CERT: pki.files['server.crt'] as string, SERVER_KEY: pki.files['server.key'] as string, CLIENT_CA: clientCa,
    };
    const cleanup = () => {
      rmSync(dir, { recursive: true, force: true });
      return logBytes();
    };
    try {
      if (kind === 'openidc' && !openidc) throw new Error('openidc: no introspection endpoint');
      const [command, args]: [string, string[]] = kind === 'nginx' ? [NGINX, nginxArgs(dir, common)] : [APACHE, apacheArgs(dir, common, pki, kind === 'openidc' ? openidc : undefined)];
      return { server: await external(kind, command, args, port, join(dir, 'error.log')), cleanup };
    } catch (error) {
      cleanup();
      throw error;
    }
  };

  return {
    start,
    stopAll: async () => void (await Promise.all([...live].map((s) => s.stop()))),
    killAll: () => {
      for (const s of live) killTree(s.pid);
    },
  };
}

/** The fake AS of (P3): HTTPS with the bench server certificate, checking the client secret. */
export const startOpenidcAs = (pki: DemoPki): Promise<Child<{ port: number }>> =>
  startChild<{ port: number }>('servers/as.ts', {
    thumbprint: pki.tppA.thumbprint, delayMs: 5, tls: { cert: pki.server.certPem, key: pki.server.keyPem }, client: { id: CLIENT_ID, secret: CLIENT_SECRET },
  });
