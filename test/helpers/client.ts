import { Agent, request, type Dispatcher } from 'undici';
import type { Issued } from '../fixtures/pki.js';

/** An HTTPS client presenting `cert` (or none), trusting `ca`. */
export function tlsClient(ca: string, cert?: Pick<Issued, 'certPem' | 'keyPem'>): Agent {
  return new Agent({ connect: { ca, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}), rejectUnauthorized: true, servername: 'localhost' } });
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  json(): Record<string, unknown>;
}

export async function call(
  url: string,
  opts: { dispatcher?: Dispatcher; method?: Dispatcher.HttpMethod; headers?: Record<string, string | string[]>; body?: string | Buffer } = {},
): Promise<Reply> {
  const res = await request(url, {
    method: opts.method ?? 'GET',
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    ...(opts.headers ? { headers: opts.headers } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}
