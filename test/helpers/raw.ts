// Raw HTTP/1.x over a plain or TLS socket: exact bytes out, a strict parse of what comes back.
// For tests where a client library would normalise the request (pipelining, smuggling).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

/** One HTTP response as it came off the wire. */
export interface RawResponse {
  /** `1.0` or `1.1`, from the status line. */
  readonly version: string;
  readonly status: number;
  readonly reason: string;
  /** Lower-case name → every value, in the order received. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  /** Every header line in order, name as sent. */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>;
  /** The body, de-chunked. */
  readonly body: Buffer;
  /** `content-length`, `chunked`, `close` (read until the connection ended) or `none`. */
  readonly framing: 'content-length' | 'chunked' | 'close' | 'none';
  /** Trailer fields of a chunked body (lower-case names). */
  readonly trailers: Readonly<Record<string, readonly string[]>>;
  /** 1xx responses (other than 101) that came before this one. */
  readonly interim: readonly RawResponse[];
  /** The one value of a header; undefined when absent; throws when the header is repeated. */
  header(name: string): string | undefined;
  readonly text: string;
  json(): unknown;
}

export interface ParseResult {
  /** Final responses, in order (1xx interim ones are in their `interim`). */
  readonly responses: RawResponse[];
  /** Bytes after the last complete response: a response not complete yet (or truncated, when `ended`). */
  readonly rest: Buffer;
}

export class ResponseParseError extends Error {
  override readonly name = 'ResponseParseError';
  constructor(
    message: string,
    /** Offset in the buffer where the response that failed to parse starts. */
    readonly offset: number,
  ) {
    super(`${message} (response starting at byte ${offset})`);
  }
}

export interface ParseOptions {
  /**
   * The stream is over (the server closed): a body without length runs to the end of the buffer.
   * Default true; false while bytes may still arrive.
   */
  readonly ended?: boolean;
}

const STATUS_LINE = /^HTTP\/(1\.[01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/** Incomplete input: more bytes are needed. */
const MORE = Symbol('more');

function makeResponse(
  head: { version: string; status: number; reason: string; rawHeaders: Array<readonly [string, string]>; headers: Record<string, string[]> },
  body: Buffer,
  framing: RawResponse['framing'],
  trailers: Record<string, string[]>,
  interim: RawResponse[],
): RawResponse {
  const { headers } = head;
  return {
    version: head.version,
    status: head.status,
    reason: head.reason,
    headers,
    rawHeaders: head.rawHeaders,
    body,
    framing,
    trailers,
    interim,
    header(name: string): string | undefined {
      const values = headers[name.toLowerCase()];
      if (values === undefined) return undefined;
      if (values.length !== 1) throw new Error(`header ${name} repeated: ${JSON.stringify(values)}`);
      return values[0];
    },
    text: body.toString('utf8'),
    json: (): unknown => JSON.parse(body.toString('utf8')),
  };
}

/** Parses header lines (no obs-fold, CRLF only); lower-cased names, repeats kept. */
function parseFields(block: string, at: number, what: string): { rawHeaders: Array<readonly [string, string]>; headers: Record<string, string[]> } {
  const rawHeaders: Array<readonly [string, string]> = [];
  const headers: Record<string, string[]> = {};
  if (block === '') return { rawHeaders, headers };
  for (const line of block.split('\r\n')) {
    if (line.includes('\n') || line.includes('\r')) throw new ResponseParseError(`bare CR or LF in ${what}`, at);
    if (line.startsWith(' ') || line.startsWith('\t')) throw new ResponseParseError(`obsolete line folding in ${what}`, at);
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ResponseParseError(`malformed ${what} line ${JSON.stringify(line)}`, at);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new ResponseParseError(`invalid ${what} name ${JSON.stringify(name)}`, at);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw new ResponseParseError(`invalid ${what} value for ${name}`, at);
    rawHeaders.push([name, value]);
    (headers[name.toLowerCase()] ??= []).push(value);
  }
  return { rawHeaders, headers };
}

/** Decodes a chunked body starting at `from`; returns the body, trailers and where the message ends. */
function readChunked(buf: Buffer, from: number, start: number): typeof MORE | { body: Buffer; trailers: Record<string, string[]>; end: number } {
  const parts: Buffer[] = [];
  let pos = from;
  for (;;) {
    const eol = buf.indexOf(CRLF, pos);
    if (eol === -1) {
      if (buf.length - pos > 1024) throw new ResponseParseError('chunk size line too long', start);
      return MORE;
    }
    const line = buf.subarray(pos, eol).toString('latin1');
    const m = /^([0-9A-Fa-f]{1,16})(?:[ \t]*;.*)?$/.exec(line);
    if (!m) throw new ResponseParseError(`malformed chunk size line ${JSON.stringify(line)}`, start);
    const size = Number.parseInt(m[1] as string, 16);
    pos = eol + 2;
    if (size === 0) {
      // Trailer section: fields, then an empty line.
      if (buf.length >= pos + 2 && buf[pos] === 13 && buf[pos + 1] === 10) {
        return { body: Buffer.concat(parts), trailers: {}, end: pos + 2 };
      }
      const endOfTrailers = buf.indexOf(HEADER_END, pos);
      if (endOfTrailers === -1) return MORE;
      const { headers } = parseFields(buf.subarray(pos, endOfTrailers).toString('latin1'), start, 'trailer');
      return { body: Buffer.concat(parts), trailers: headers, end: endOfTrailers + 4 };
    }
    if (buf.length < pos + size + 2) return MORE;
    parts.push(buf.subarray(pos, pos + size));
    pos += size;
    if (buf[pos] !== 13 || buf[pos + 1] !== 10) throw new ResponseParseError('chunk data not followed by CRLF', start);
    pos += 2;
  }
}

/**
 * A strict HTTP/1.x response stream parser: status line, header fields (lower-cased names, repeats
 * kept), bodies framed by chunked encoding, Content-Length, or the end of the connection; no body
 * for HEAD requests, 1xx, 204 and 304. `methods` are the requests' methods in order (default GET),
 * so that a response to HEAD is read without a body. Throws ResponseParseError on anything a
 * conforming server would not send (bare LF, folding, conflicting lengths, Content-Length with
 * chunked, a bad chunk). A 101 ends the HTTP stream: what follows is left in `rest`.
 */
export function parseResponses(buffer: Buffer | string, methods: readonly string[] = [], options: ParseOptions = {}): ParseResult {
  const buf = typeof buffer === 'string' ? Buffer.from(buffer, 'latin1') : buffer;
  const ended = options.ended ?? true;
  const responses: RawResponse[] = [];
  let interim: RawResponse[] = [];
  let pos = 0;
  let consumed = 0;
  while (pos < buf.length) {
    const start = pos;
    const headEnd = buf.indexOf(HEADER_END, pos);
    if (headEnd === -1) {
      // A status line must start right here; check what is there already.
      const prefix = buf.subarray(pos, Math.min(buf.length, pos + 5)).toString('latin1');
      if (!'HTTP/'.startsWith(prefix) && !prefix.startsWith('HTTP/')) throw new ResponseParseError(`expected a status line, got ${JSON.stringify(prefix)}`, start);
      break;
    }
    const head = buf.subarray(pos, headEnd).toString('latin1');
    const firstEol = head.indexOf('\r\n');
    const statusLine = firstEol === -1 ? head : head.slice(0, firstEol);
    const m = STATUS_LINE.exec(statusLine);
    if (!m) throw new ResponseParseError(`malformed status line ${JSON.stringify(statusLine.slice(0, 80))}`, start);
    const version = m[1] as string;
    const status = Number(m[2]);
    const reason = m[3] ?? '';
    const fields = parseFields(firstEol === -1 ? '' : head.slice(firstEol + 2), start, 'header');
    const parsedHead = { version, status, reason, ...fields };
    const bodyStart = headEnd + 4;
    const method = (methods[responses.length] ?? 'GET').toUpperCase();

    if (status >= 100 && status < 200) {
      const response = makeResponse(parsedHead, Buffer.alloc(0), 'none', {}, []);
      if (status === 101) {
        responses.push(makeResponse(parsedHead, Buffer.alloc(0), 'none', {}, interim));
        consumed = bodyStart;
        break;
      }
      interim.push(response);
      pos = bodyStart;
      consumed = pos;
      continue;
    }

    const te = fields.headers['transfer-encoding'];
    const cl = fields.headers['content-length'];
    let result: typeof MORE | { body: Buffer; framing: RawResponse['framing']; trailers: Record<string, string[]>; end: number };
    if (method === 'HEAD' || status === 204 || status === 304) {
      if (status === 204 && (te !== undefined || (cl !== undefined && cl.some((v) => v !== '0')))) {
        throw new ResponseParseError('204 with a body length', start);
      }
      result = { body: Buffer.alloc(0), framing: 'none', trailers: {}, end: bodyStart };
    } else if (te !== undefined) {
      if (cl !== undefined) throw new ResponseParseError('both Transfer-Encoding and Content-Length', start);
      const codings = te.join(',').split(',').map((c) => c.trim().toLowerCase()).filter(Boolean);
      if (codings.at(-1) === 'chunked') {
        if (codings.filter((c) => c === 'chunked').length !== 1) throw new ResponseParseError('chunked applied twice', start);
        const chunked = readChunked(buf, bodyStart, start);
        result = chunked === MORE ? MORE : { ...chunked, framing: 'chunked' };
      } else if (ended) {
        result = { body: buf.subarray(bodyStart), framing: 'close', trailers: {}, end: buf.length };
      } else result = MORE;
    } else if (cl !== undefined) {
      const values = new Set(cl.join(',').split(',').map((v) => v.trim()));
      const [only] = values;
      if (values.size !== 1 || only === undefined || !/^[0-9]{1,15}$/.test(only)) {
        throw new ResponseParseError(`bad Content-Length ${JSON.stringify(cl)}`, start);
      }
      const length = Number(only);
      result = buf.length >= bodyStart + length
        ? { body: buf.subarray(bodyStart, bodyStart + length), framing: 'content-length', trailers: {}, end: bodyStart + length }
        : MORE;
    } else if (ended) {
      result = { body: buf.subarray(bodyStart), framing: 'close', trailers: {}, end: buf.length };
    } else result = MORE;

    if (result === MORE) break;
    responses.push(makeResponse(parsedHead, Buffer.from(result.body), result.framing, result.trailers, interim));
    interim = [];
    pos = result.end;
    consumed = pos;
  }
  return { responses, rest: buf.subarray(consumed) };
}

export interface RawTlsOptions {
  /** PEM of the CA that issued the server's certificate (verified: rejectUnauthorized). */
  readonly ca: string;
  /** Client certificate and key to present, if any. */
  readonly cert?: string;
  readonly key?: string;
  /** SNI and the name the server certificate is checked against; default `localhost`. */
  readonly servername?: string;
}

export interface RawConnectOptions {
  readonly port: number;
  readonly host?: string;
  /** TLS instead of plain TCP. */
  readonly tls?: RawTlsOptions;
  /** Request methods in order, for parsing (HEAD responses have no body). */
  readonly methods?: readonly string[];
}

export interface RawResult {
  /** Everything the server sent. */
  readonly bytes: Buffer;
  readonly responses: RawResponse[];
  /** Bytes after the last complete response. */
  readonly rest: Buffer;
  /** The server closed (or reset) the connection. */
  readonly closed: boolean;
  /** Gave up waiting. */
  readonly timedOut: boolean;
  /** A socket error (e.g. ECONNRESET), if one happened. */
  readonly socketError?: string;
  /** What the parser refused, if anything. */
  readonly parseError?: string;
  /** The response stream as text (latin1): for diagnostics. */
  readonly text: string;
}

export interface RawConnection {
  readonly socket: Socket | TLSSocket;
  /** One write() call with exactly these bytes; resolves once Node handed them to the kernel. */
  write(data: string | Buffer): Promise<void>;
  /** Half-close: send FIN, keep reading. */
  end(): void;
  /** Reset the connection from the client side. */
  destroy(): void;
  /** What arrived so far. */
  snapshot(): RawResult;
  /**
   * Resolves with what arrived once `count` responses were parsed (when given), the server
   * closed, the parser failed, or `timeoutMs` passed (default 10 s); never rejects.
   */
  wait(count?: number, timeoutMs?: number): Promise<RawResult>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Opens a plain or TLS connection (TLS: verified against `tls.ca`, SNI `localhost` by default). */
export function rawConnect(options: RawConnectOptions): Promise<RawConnection> {
  const host = options.host ?? '127.0.0.1';
  const methods = options.methods ?? [];
  return new Promise<RawConnection>((resolve, reject) => {
    let socket: Socket | TLSSocket;
    const ready = (): void => {
      socket.off('error', reject);
      resolve(connection);
    };
    if (options.tls) {
      const t = options.tls;
      socket = tlsConnect(
        {
          host,
          port: options.port,
          ca: t.ca,
          ...(t.cert !== undefined ? { cert: t.cert } : {}),
          ...(t.key !== undefined ? { key: t.key } : {}),
          servername: t.servername ?? 'localhost',
          rejectUnauthorized: true,
        },
        ready,
      );
    } else {
      socket = netConnect({ host, port: options.port }, ready);
    }
    socket.setNoDelay(true);
    socket.once('error', reject);

    const chunks: Buffer[] = [];
    let closed = false;
    let socketError: string | undefined;
    const waiters = new Set<() => void>();
    const notify = (): void => {
      for (const w of [...waiters]) w();
    };
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      notify();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      socketError = e.code ?? e.message;
    });
    socket.on('close', () => {
      closed = true;
      notify();
    });

    const snapshot = (): RawResult => {
      const bytes = Buffer.concat(chunks);
      let parsed: ParseResult = { responses: [], rest: bytes };
      let parseError: string | undefined;
      try {
        parsed = parseResponses(bytes, methods, { ended: closed });
      } catch (e) {
        parseError = e instanceof Error ? e.message : String(e);
      }
      return {
        bytes,
        responses: parsed.responses,
        rest: parsed.rest,
        closed,
        timedOut: false,
        ...(socketError !== undefined ? { socketError } : {}),
        ...(parseError !== undefined ? { parseError } : {}),
        text: bytes.toString('latin1'),
      };
    };

    const connection: RawConnection = {
      socket,
      write: (data) =>
        new Promise<void>((res, rej) => {
          socket.write(data, (error) => (error ? rej(error) : res()));
        }),
      end: () => void socket.end(),
      destroy: () => void socket.destroy(),
      snapshot,
      wait: (count, timeoutMs = DEFAULT_TIMEOUT_MS) =>
        new Promise<RawResult>((res) => {
          let timer: NodeJS.Timeout | undefined;
          const check = (): void => {
            const now = snapshot();
            if (closed || now.parseError !== undefined || (count !== undefined && now.responses.length >= count)) {
              waiters.delete(check);
              clearTimeout(timer);
              res(now);
            }
          };
          timer = setTimeout(() => {
            waiters.delete(check);
            res({ ...snapshot(), timedOut: true });
          }, timeoutMs);
          waiters.add(check);
          check();
        }),
    };
  });
}

export interface RawExchangeOptions extends RawConnectOptions {
  /**
   * The bytes to send: a string or Buffer is written in ONE write() call; a list is written as
   * that many separate writes, `gapMs` apart (so they tend to arrive as separate segments).
   */
  readonly send: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Between writes of a list; default 2 ms. */
  readonly gapMs?: number;
  /** Half-close after the last write (the server sees end of input). Default false. */
  readonly end?: boolean;
  /** Resolve as soon as this many responses were parsed (else: when the server closes, or on timeout). */
  readonly expect?: number;
  /** Default 10 s. */
  readonly timeoutMs?: number;
  /**
   * Once `expect` responses arrived, go on reading until the server closes, for at most this
   * long (`closed` says whether it did; anything sent meanwhile is in the result too).
   */
  readonly awaitCloseMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Connects, writes exactly the bytes given, and collects the answer: until `expect` responses
 * were parsed, the server closed, or the timeout. The connection is destroyed afterwards.
 */
export async function rawExchange(options: RawExchangeOptions): Promise<RawResult> {
  const conn = await rawConnect(options);
  try {
    const pieces = typeof options.send === 'string' || Buffer.isBuffer(options.send) ? [options.send] : options.send;
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0) await sleep(options.gapMs ?? 2);
      // The server may close before everything was sent (a bad request): stop writing then.
      if (conn.socket.destroyed || !conn.socket.writable) break;
      const written = await conn.write(pieces[i] as string | Buffer).then(() => true, () => false);
      if (!written) break;
    }
    if (options.end && conn.socket.writable) conn.end();
    const result = await conn.wait(options.expect, options.timeoutMs);
    if (options.awaitCloseMs === undefined || result.closed || result.timedOut || result.parseError !== undefined) return result;
    return { ...(await conn.wait(undefined, options.awaitCloseMs)), timedOut: false };
  } finally {
    conn.destroy();
  }
}

export interface RequestBytes {
  readonly method: string;
  /** The request target exactly as sent, e.g. `/ob/aisp/accounts?x=1`. */
  readonly target: string;
  /** Default `1.1`. */
  readonly version?: '1.0' | '1.1';
  /** Header lines, `name: value`, sent in this order after `Host: x` (none when `host` is false). */
  readonly headers?: readonly string[];
  readonly host?: boolean;
  readonly body?: string;
  /** The Content-Length to declare; default the body's length (none without a body). */
  readonly contentLength?: number;
}

/** One HTTP/1.x request as the exact bytes to write (CRLF line ends, nothing normalised). */
export function requestBytes(r: RequestBytes): string {
  const lines = [`${r.method} ${r.target} HTTP/${r.version ?? '1.1'}`, ...(r.host === false ? [] : ['Host: x']), ...(r.headers ?? [])];
  if (r.body !== undefined || r.contentLength !== undefined) lines.push(`content-length: ${r.contentLength ?? Buffer.byteLength(r.body ?? '')}`);
  return `${lines.join('\r\n')}\r\n\r\n${r.body ?? ''}`;
}
