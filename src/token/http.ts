import { Agent, request, type Dispatcher } from 'undici';
import type { AuthorizationServerConfig } from '../config/types.js';

/** Introspection responses and key sets are small; anything bigger is a broken or hostile server. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export interface HttpResponse {
  readonly status: number;
  /** Lower-case media type without parameters, '' when absent. */
  readonly mediaType: string;
  readonly body: Buffer;
}

/** Why a call to the authorization server produced no usable answer. */
export type HttpFailureKind = 'timeout' | 'error' | 'too_large';

export class HttpFailure extends Error {
  override readonly name = 'HttpFailure';
  constructor(readonly kind: HttpFailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * One keep-alive dispatcher towards the authorization server (introspection and JWKS), with the
 * TLS material of the config: `ca` for every method, the client certificate for tls_client_auth.
 */
export function createDispatcher(config: AuthorizationServerConfig): Agent {
  const clientCertificate = config.clientCertificate ? { cert: config.clientCertificate.cert.contents, key: config.clientCertificate.key.contents } : {};
  return new Agent({
    connections: config.maxConcurrentRequests,
    pipelining: 1,
    // Backstops: each call also carries an AbortSignal covering headers and body together.
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.timeoutMs,
    connect: {
      timeout: config.timeoutMs,
      ...(config.ca ? { ca: config.ca.contents } : {}),
      ...clientCertificate,
    },
  });
}

/** A bounded request: `signal` bounds the whole exchange, the body is capped at `maxBytes`. */
export async function send(
  dispatcher: Dispatcher,
  url: string,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string; signal: AbortSignal },
  maxBytes = MAX_RESPONSE_BYTES,
): Promise<HttpResponse> {
  try {
    const res = await request(url, {
      dispatcher,
      method: init.method,
      headers: init.headers,
      body: init.body ?? null,
      signal: init.signal,
    });
    const declared = Number(res.headers['content-length']);
    if (declared > maxBytes) {
      res.body.destroy();
      throw new HttpFailure('too_large', `response of ${declared} bytes exceeds ${maxBytes}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const bytes = chunk as Buffer;
      size += bytes.length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new HttpFailure('too_large', `response exceeds ${maxBytes} bytes`);
      }
      chunks.push(bytes);
    }
    const contentType = res.headers['content-type'];
    const mediaType = (typeof contentType === 'string' ? contentType : '').split(';')[0]?.trim().toLowerCase() ?? '';
    return { status: res.statusCode, mediaType, body: Buffer.concat(chunks) };
  } catch (err) {
    if (err instanceof HttpFailure) throw err;
    if (init.signal.aborted) throw new HttpFailure('timeout', 'request timed out', { cause: err });
    throw new HttpFailure('error', err instanceof Error ? err.message : 'request failed', { cause: err });
  }
}
