import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import type { UpstreamConfig } from '../config/types.js';
import { clientResponseHeaders } from './headers.js';

export interface UpstreamCall {
  readonly method: string;
  /** Encoded path plus query. */
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: IncomingMessage | undefined;
  /** Headers certbound adds to the response (interaction id). */
  readonly responseHeaders: Readonly<Record<string, string>>;
}

export interface ForwardOutcome {
  readonly status: number;
  /** Seconds to the upstream's response headers. */
  readonly upstreamSeconds: number;
}

export type UpstreamErrorKind = 'refused' | 'reset' | 'timeout';

export interface Upstream {
  readonly config: UpstreamConfig;
  /**
   * Streams the request to the upstream and its response back, with backpressure both ways.
   * Throws GatewayError (upstream_unavailable / upstream_timeout) only before response headers
   * went out; a failure after that destroys the client connection, which is all HTTP allows.
   */
  forward(call: UpstreamCall, res: ServerResponse, onError: (kind: UpstreamErrorKind) => void): Promise<ForwardOutcome>;
  close(): Promise<void>;
}

function classify(error: unknown): UpstreamErrorKind {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.ConnectTimeoutError || error instanceof undiciErrors.BodyTimeoutError) {
    return 'timeout';
  }
  const code = (error as { code?: string } | null)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' ? 'refused' : 'reset';
}

export function createUpstream(config: UpstreamConfig): Upstream {
  const pool = new Pool(config.url, {
    connections: config.connections,
    headersTimeout: config.timeoutMs,
    bodyTimeout: config.timeoutMs,
    connectTimeout: Math.min(config.timeoutMs, 10000),
    keepAliveTimeout: 4000,
    pipelining: 1,
  });

  async function forward(call: UpstreamCall, res: ServerResponse, onError: (kind: UpstreamErrorKind) => void): Promise<ForwardOutcome> {
    const started = performance.now();
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    let response: Dispatcher.ResponseData;
    try {
      response = await pool.request({
        method: call.method as Dispatcher.HttpMethod,
        path: call.path,
        headers: call.headers,
        body: call.body ?? null,
        signal: abort.signal,
      });
    } catch (error) {
      res.off('close', onClose);
      const kind = classify(error);
      onError(kind);
      if (kind === 'timeout') throw new GatewayError('upstream_timeout', 'upstream did not answer in time');
      throw new GatewayError('upstream_unavailable', 'upstream unavailable');
    }
    const upstreamSeconds = (performance.now() - started) / 1000;
    const headers = clientResponseHeaders(response.headers);
    for (const name in call.responseHeaders) headers[name] = call.responseHeaders[name] as string;
    res.writeHead(response.statusCode, headers);
    try {
      await pipeline(response.body, res);
    } catch (error) {
      if (!abort.signal.aborted) onError(classify(error));
      res.destroy();
    } finally {
      res.off('close', onClose);
    }
    return { status: response.statusCode, upstreamSeconds };
  }

  return { config, forward, close: () => pool.close() };
}
