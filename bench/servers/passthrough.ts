// The baseline: the least a Node reverse proxy can do. node:http in, undici Pool out, streaming
// both ways, hop-by-hop headers dropped, same pool size as a certbound upstream (128).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { forward } from './proxy.js';

const { upstream } = JSON.parse(process.argv[2] ?? '{}') as { upstream: string };
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });

const server = createServer((req, res) => forward(pool, req, res));
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => void pool.close().then(() => process.exit(0)));
});
