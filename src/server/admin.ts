import { createServer, type Server } from 'node:http';
import type { Metrics } from '../observability/metrics.js';
import { handleRevocation, type RevocationEndpoint } from './revocations-endpoint.js';

export interface Readiness {
  readonly ready: boolean;
  /** Why not, when not: `starting`, `draining`, or what validation still waits for. */
  readonly reason?: string;
}

export interface Health {
  /** Config loaded, listeners up, what validation needs loaded; false while draining. */
  readiness(): Readiness;
}

/** The admin listener, apart from traffic: /metrics, /healthz, /readyz, and POST /revocations. */
export function createAdminServer(metrics: Metrics, health: Health, revocations?: RevocationEndpoint): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/revocations' && revocations) return handleRevocation(req, res, revocations);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const { ready, reason } = health.readiness();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(ready ? 'ready\n' : `not ready: ${reason ?? 'unknown'}\n`);
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n'),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}
