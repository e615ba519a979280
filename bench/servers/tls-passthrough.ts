// The bare Node mTLS proxy (phase peers): node:https requiring a client certificate from the CA,
// an undici Pool out (the shape of passthrough.ts: 128 connections, streaming, hop-by-hop headers
// dropped), no token check, and one access-log line per request in nginx's and Apache's
// `combined` format, appended to a file through a WriteStream.
// With `workers` > 1 (phase peers' (P6)): node:cluster, that many worker processes sharing one
// port (the primary hands connections out round-robin), each this same proxy with its own pool.
import cluster from 'node:cluster';
import { createWriteStream } from 'node:fs';
import { createServer, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { forward } from './proxy.js';

interface Arg { upstream: string; cert: string; key: string; ca: string; logFile: string; workers?: number }
const arg = JSON.parse(process.argv[2] ?? '{}') as Arg;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number) => String(n).padStart(2, '0');
let stampSecond = -1;
let stamp = '';
/** `[02/Dec/2026:05:55:48 +0000]`, formatted once a second as nginx does. */
function timeLocal(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== stampSecond) {
    const d = new Date(now);
    stampSecond = second;
    stamp = `[${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000]`;
  }
  return stamp;
}
const quoted = (v: string | undefined) => (v === undefined || v === '' ? '"-"' : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`);

const printPort = (port: number) => process.stdout.write(`${JSON.stringify({ port })}\n`);

function serve({ upstream, cert, key, ca, logFile }: Arg): void {
  const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });
  const log = createWriteStream(logFile, { flags: 'a' });
  const options: ServerOptions = { cert, key, ca, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] };
  const server = createServer(options, (req, res) => {
    let bytes = '-';
    res.once('finish', () => {
      // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
      log.write(`${req.socket.remoteAddress ?? '-'} - - ${timeLocal()} ${quoted(`${req.method} ${req.url} HTTP/${req.httpVersion}`)} ${res.statusCode} ${bytes} ${quoted(req.headers.referer)} ${quoted(req.headers['user-agent'])}\n`);
    });
    forward(pool, req, res, (headers) => {
      const length = headers['content-length'];
      if (typeof length === 'string') bytes = length;
    });
  });
  server.keepAliveTimeout = 65000;
  server.listen(0, '127.0.0.1', () => {
    if (!cluster.isWorker) printPort((server.address() as AddressInfo).port); // a cluster's primary prints it
  });
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => void pool.close().then(() => log.end(() => process.exit(0))));
  });
}

/** The primary of `workers` processes: they run this file with the same argument; the first one listening gives the shared port. */
function primary(workers: number): void {
  for (let i = 0; i < workers; i++) cluster.fork();
  let printed = false;
  cluster.on('listening', (_worker, address) => {
    if (!printed) printPort(address.port);
    printed = true;
  });
  let alive = workers;
  cluster.on('exit', () => {
    if (--alive === 0) process.exit(0);
  });
  process.once('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  });
}

if ((arg.workers ?? 1) > 1 && cluster.isPrimary) primary(arg.workers ?? 1);
else serve(arg);
