// An OCSP request over HTTP (RFC 6960 Appendix A), bounded in time and in size.
import { request as send, type Dispatcher } from 'undici';
import type { OcspRequest } from './ocsp.js';
import { RevocationError } from './types.js';

/** The default bound on a response body: real answers are a few KiB. */
export const OCSP_MAX_BYTES = 64 * 1024;
/** Appendix A: GET when the URL-encoded base64 of the request is shorter than this. */
const GET_BELOW = 255;

export interface OcspQueryOptions {
  /** Bounds the whole exchange: connecting, the headers and the body. */
  readonly timeoutMs: number;
  /** The largest response body read; default OCSP_MAX_BYTES. */
  readonly maxBytes?: number;
}

/** Sends the request, GET when short and POST otherwise; the response body. Throws RevocationError('unavailable') on any failure. */
export async function queryOcsp(url: string, request: Pick<OcspRequest, 'der'>, options: OcspQueryOptions): Promise<Uint8Array> {
  const encoded = encodeURIComponent(request.der.toString('base64'));
  const get = encoded.length < GET_BELOW;
  const common = {
    // Connection: close, one request per connection: openssl's responder serves no more, and spins on an idle one.
    reset: true,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    signal: AbortSignal.timeout(options.timeoutMs),
  };
  try {
    const response = get
      ? await send(`${url}${url.endsWith('/') ? '' : '/'}${encoded}`, { ...common, method: 'GET' })
      : await send(url, { ...common, method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: request.der });
    if (response.statusCode !== 200) {
      discard(response.body);
      throw new RevocationError('unavailable', `HTTP ${response.statusCode}`);
    }
    return await readAtMost(response.body, options.maxBytes ?? OCSP_MAX_BYTES);
  } catch (e) {
    if (e instanceof RevocationError) throw e;
    throw new RevocationError('unavailable', `no answer: ${String(e)}`);
  }
}

async function readAtMost(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      discard(body);
      throw new RevocationError('unavailable', `the response is over ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Drops a body unread; undici reports that as an error event, expected here. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined).destroy();
}
