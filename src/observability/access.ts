import build from 'fast-json-stringify';
import type { DestinationStream } from 'pino';
import { NO_ROUTE, type RequestRecord } from './record.js';

/** The access line's members after `msg`, as JSON: what the schema below serializes. */
interface AccessMembers {
  readonly interaction_id: string;
  readonly route: string;
  readonly upstream: string | undefined;
  readonly method: string;
  readonly path: string | undefined;
  readonly status: number;
  readonly outcome: string;
  readonly reason: string | undefined;
  readonly latency_ms: number;
  readonly upstream_latency_ms: number | undefined;
  readonly response_bytes: number;
  readonly client_id: string | undefined;
  readonly certificate_thumbprint: string | undefined;
  readonly dpop_jkt: string | undefined;
  readonly peer: string | undefined;
}

/**
 * The access line, member by member, in this order. fast-json-stringify compiles it into one
 * function that escapes every string (JSON.stringify's escaping: quotes, backslashes, control
 * characters, lone surrogates) and leaves out members that are undefined. U+2028 and
 * non-ASCII stay as they are, valid JSON, as in pino's own lines.
 */
const ACCESS_LINE_SCHEMA: build.ObjectSchema = {
  type: 'object',
  properties: {
    interaction_id: { type: 'string' },
    route: { type: 'string' },
    upstream: { type: 'string' },
    method: { type: 'string' },
    path: { type: 'string' },
    status: { type: 'integer' },
    outcome: { type: 'string' },
    reason: { type: 'string' },
    latency_ms: { type: 'number' },
    upstream_latency_ms: { type: 'number' },
    response_bytes: { type: 'integer' },
    client_id: { type: 'string' },
    certificate_thumbprint: { type: 'string' },
    dpop_jkt: { type: 'string' },
    peer: { type: 'string' },
  },
  // fast-json-stringify writes required members before all others: only the first one is, so the
  // order stays the schema's. The others are always there when AccessMembers says so.
  required: ['interaction_id'],
};

const serializeMembers: (members: AccessMembers) => string = build(ACCESS_LINE_SCHEMA);

/** Milliseconds with µs precision. */
const ms = (seconds: number): number => Math.round(seconds * 1e6) / 1e3;

/** The path without a query string, should one ever arrive: the query can carry client data and tokens. */
const pathOnly = (path: string | undefined): string | undefined => {
  if (path === undefined) return undefined;
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
};

function membersOf(r: RequestRecord): AccessMembers {
  return {
    interaction_id: r.interactionId,
    route: r.route ?? NO_ROUTE,
    upstream: r.upstream,
    method: r.method,
    path: pathOnly(r.path),
    status: r.status,
    outcome: r.outcome,
    reason: r.reason,
    latency_ms: ms(r.latencySeconds),
    upstream_latency_ms: r.upstreamSeconds === undefined ? undefined : ms(r.upstreamSeconds),
    response_bytes: r.responseBytes,
    // Empty values are absent, as before: nothing to search for.
    client_id: r.clientId || undefined,
    certificate_thumbprint: r.thumbprint || undefined,
    dpop_jkt: r.jkt || undefined,
    peer: r.peer || undefined,
  };
}

/**
 * `time` as pino's isoTime writes it, `new Date(now).toISOString()`: the text up to the seconds
 * is made once a second, the milliseconds spliced in (toISOString once a millisecond cost ~0.7k
 * instructions a request under load, BENCHMARKS.md).
 */
function isoClock(): (now: number) => string {
  let second = Number.NaN;
  let upToSeconds = '';
  return (now) => {
    const s = Math.floor(now / 1000);
    if (s !== second) {
      second = s;
      // "2026-12-02T15:10:54." (years 0–9999: what Date.now() gives).
      upToSeconds = new Date(s * 1000).toISOString().slice(0, 20);
    }
    const milli = now - s * 1000;
    return `${upToSeconds}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  };
}

/**
 * Formats access lines in exactly the shape of the logger's own lines:
 * `{"level":"info","time":"<ISO>",<bindings>,"msg":"request",<members>}\n`. The envelope is
 * pino's, rebuilt once per millisecond (level formatter and ISO time as logger.ts configures
 * them; `bindings` is the logger's, JSON.stringify'd); the members are the schema's.
 * `now`: the clock, milliseconds (a test's own).
 */
export function accessLineFormat(bindings: object, now: () => number = Date.now): (record: RequestRecord) => string {
  const bound = JSON.stringify(bindings).slice(1, -1);
  const tail = `${bound === '' ? '' : `,${bound}`},"msg":"request",`;
  const iso = isoClock();
  let stampedAt = Number.NaN;
  let prefix = '';
  return (record) => {
    const members = serializeMembers(membersOf(record));
    const at = now();
    if (at !== stampedAt) {
      stampedAt = at;
      prefix = `{"level":"info","time":"${iso(at)}"${tail}`;
    }
    // The members' opening brace gives way to the envelope.
    return `${prefix}${members.slice(1)}\n`;
  };
}

/** Beyond this many characters, waiting access lines are written at once rather than at the end of the turn. */
const MAX_BATCH_CHARS = 65536;

interface Flushable {
  flush(cb: (err?: Error | null) => void): void;
}
const isFlushable = (stream: DestinationStream): stream is DestinationStream & Flushable =>
  typeof (stream as Partial<Flushable>).flush === 'function';

/**
 * The destination pino writes to, in front of the real one. Access lines of one event-loop turn
 * wait and go out in one write() at the end of the turn (sonic-boom's per-write bookkeeping cost
 * ~1.5 µs a line under load); a pino line written meanwhile takes them along first, so lines stay
 * in the order they were logged. While lines wait, a process exit writes them to the destination
 * first, so its own exit handling (pino.destination's) flushes them with the rest.
 */
export class AccessBatching implements DestinationStream {
  /** Joined once per write: one flat string, not a chain of concatenations. */
  private readonly pending: string[] = [];
  private chars = 0;
  private scheduled = false;
  private readonly atTurnEnd = (): void => {
    this.scheduled = false;
    process.removeListener('exit', this.atTurnEnd);
    if (this.pending.length > 0) this.destination.write(this.take());
  };

  constructor(private readonly destination: DestinationStream) {}

  /** A pino line. */
  write(line: string): void {
    this.destination.write(this.pending.length === 0 ? line : this.take() + line);
  }

  /** An access line (with its newline). */
  push(line: string): void {
    this.pending.push(line);
    this.chars += line.length;
    if (this.chars > MAX_BATCH_CHARS) this.destination.write(this.take());
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.atTurnEnd);
      // First in line: the destination's own exit handler (registered earlier) then flushes them.
      process.prependListener('exit', this.atTurnEnd);
    }
  }

  /** pino's `logger.flush(cb)`: what waits here, then the destination's own flush. */
  flush(cb: (err?: Error | null) => void): void {
    if (this.pending.length > 0) this.destination.write(this.take());
    if (isFlushable(this.destination)) this.destination.flush(cb);
    else cb();
  }

  private take(): string {
    const lines = this.pending.join('');
    this.pending.length = 0;
    this.chars = 0;
    return lines;
  }
}
