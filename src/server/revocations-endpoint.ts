import { hash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { Revocation } from '../shared/revocations.js';
import { tokenKeyOf, type RevocationHub } from '../shared/revocation-hub.js';

/**
 * POST /revocations on the admin listener (issue 14). The listener is often open to the cluster
 * network for Prometheus, so the endpoint takes `Authorization: Bearer <admin secret>`, compared
 * in constant time; without it, 401 and nothing revoked. One of three JSON bodies:
 * `{"token"}` (hashed at once, never logged), `{"client_id","issued_before"}`,
 * `{"certificate_thumbprint"}`; anything else is 400. Accepted: 202.
 */
export interface RevocationEndpoint {
  /** The current config's secret; undefined: the endpoint is off (404). */
  readonly secret: () => Buffer | undefined;
  /** How long a revocation is kept: the longest a cache may hold a token. */
  readonly ttlMs: () => number;
  readonly hub: RevocationHub;
  readonly log: Logger;
}

const MAX_BODY_BYTES = 16 * 1024;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

const json = (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void =>
  void res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));

/** Constant time whatever the lengths: both sides hashed first. */
function authorized(header: string | undefined, secret: Buffer): boolean {
  const presented = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : '';
  return timingSafeEqual(hash('sha256', presented, 'buffer'), hash('sha256', secret, 'buffer'));
}

/** The revocation a body asks for, or why it is none of the three forms. */
export function revocationOf(body: unknown): Revocation | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object';
  const o = body as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys === 'token' && typeof o['token'] === 'string' && o['token'] !== '') return { kind: 'token', key: tokenKeyOf(o['token']) };
  if (keys === 'client_id,issued_before' && typeof o['client_id'] === 'string' && o['client_id'] !== '' && typeof o['issued_before'] === 'number' && Number.isFinite(o['issued_before'])) {
    return { kind: 'client', clientId: o['client_id'], issuedBefore: o['issued_before'] };
  }
  if (keys === 'certificate_thumbprint' && typeof o['certificate_thumbprint'] === 'string' && THUMBPRINT.test(o['certificate_thumbprint'])) {
    return { kind: 'certificate', thumbprint: o['certificate_thumbprint'] };
  }
  return 'expected {"token"}, {"client_id", "issued_before"} or {"certificate_thumbprint"} (base64url SHA-256)';
}

export function handleRevocation(req: IncomingMessage, res: ServerResponse, endpoint: RevocationEndpoint): void {
  const secret = endpoint.secret();
  if (secret === undefined) return json(res, 404, { error: 'not_found', error_description: 'revocations are not enabled (admin.revocation_secret_file)' });
  if (req.method !== 'POST') return json(res, 405, { error: 'method_not_allowed', error_description: 'POST only' }, { allow: 'POST' });
  if (!authorized(req.headers.authorization, secret)) {
    req.resume();
    return json(res, 401, { error: 'unauthorized', error_description: 'admin secret required' }, { 'www-authenticate': 'Bearer realm="certbound-admin"' });
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  req.on('end', () => {
    if (bytes > MAX_BODY_BYTES) return json(res, 413, { error: 'invalid_request', error_description: `body larger than ${MAX_BODY_BYTES} bytes` });
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return json(res, 400, { error: 'invalid_request', error_description: 'the body is not JSON' });
    }
    const revocation = revocationOf(body);
    if (typeof revocation === 'string') return json(res, 400, { error: 'invalid_request', error_description: revocation });
    // Never rejects: a shared store that fails leaves the revocation applied here, and says so.
    void endpoint.hub.revoke(revocation, endpoint.ttlMs()).then(() => {
      endpoint.log.info({ msg: 'revocation accepted', kind: revocation.kind, peer: req.socket.remoteAddress });
      json(res, 202, { status: 'accepted' });
    });
  });
}
