import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Bytes a buffered destination collects before it writes (below sonic-boom's 16 KiB write limit). */
const LOG_BUFFER_BYTES = 8192;

/**
 * Where lines go: stdout (or a file), asynchronously. With a flush interval, lines are written in
 * batches of up to 8 KiB and never later than the interval after they were logged: one write()
 * per ~20 access lines instead of one per line, ~4 µs CPU per request less under load
 * (BENCHMARKS.md). pino writes what is left synchronously when the process exits.
 */
export function logDestination(flushIntervalMs: number, dest: number | string = 1): DestinationStream {
  return pino.destination({
    dest,
    sync: false,
    minLength: flushIntervalMs > 0 ? LOG_BUFFER_BYTES : 0,
    periodicFlush: flushIntervalMs,
  });
}

/**
 * Access lines of one event-loop turn, written to the destination together (one write() instead
 * of one per line: sonic-boom's per-write bookkeeping cost ~1.5 µs a line under load). A pino line
 * written meanwhile takes them along first (the streamWrite hook), so lines stay in order.
 */
interface AccessBatch {
  readonly stream: DestinationStream;
  /** Lines not written yet; joined once per write (one flat string, not a chain of concatenations). */
  readonly pending: string[];
  chars: number;
  scheduled: boolean;
}
const batches = new WeakMap<Logger, AccessBatch>();
/** Beyond this many characters a batch is written at once rather than at the end of the turn. */
const MAX_BATCH_CHARS = 65536;

function takePending(batch: AccessBatch): string {
  const lines = batch.pending.join('');
  batch.pending.length = 0;
  batch.chars = 0;
  return lines;
}

function writeBatch(batch: AccessBatch): void {
  batch.scheduled = false;
  if (batch.pending.length > 0) batch.stream.write(takePending(batch));
}

/**
 * JSON lines. Nothing that reaches a log may carry a token, a secret or a whole certificate:
 * callers log thumbprints, client ids and reason codes only; `redact` is the safety net.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const stream = destination ?? logDestination(0);
  const batch: AccessBatch = { stream, pending: [], chars: 0, scheduled: false };
  const logger = pino(
    {
      level,
      base: { service: 'certbound' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Exact paths only: wildcard redaction cost ~7% of the request hot path (BENCHMARKS.md).
      // Every line is built field by field; the log-scan tests are the guard against leaks.
      redact: { paths: ['authorization', 'token', 'client_secret', 'private_key'], censor: '[redacted]' },
      hooks: {
        streamWrite: (line) => (batch.pending.length === 0 ? line : takePending(batch) + line),
      },
    },
    stream,
  );
  batches.set(logger, batch);
  return logger;
}

/** The members of one access line as JSON text without the braces: `"msg":"request","status":200`. */
export type AccessLine = string;

/**
 * Writes the access line, once per request, in exactly the shape of every other line
 * (`{"level":"info","time":…,"service":"certbound",…members}`) into pino's own destination, in
 * order with them. pino's generic serializer costs ~3.5 µs a line (redaction, formatters, a
 * timestamp per line); here the caller writes the members as JSON text, the timestamp prefix is
 * rebuilt once per millisecond, and a root logger from createLogger gets one write per
 * event-loop turn (any other logger: one per line). The level is read on every line, so a reload
 * that changes it applies at once. Callers pass only fields they built (no tokens, no secrets).
 */
export function createAccessLog(log: Logger): (line: AccessLine) => void {
  const stream = (log as unknown as Record<symbol, DestinationStream | undefined>)[pino.symbols.streamSym];
  const batch = batches.get(log);
  // pino's bindings: `base` (service) and those of a child logger, in pino's order.
  const bindings = JSON.stringify(log.bindings()).slice(1, -1);
  let stampedAt = Number.NaN;
  let prefix = '';
  return (line) => {
    if (!log.isLevelEnabled('info')) return;
    if (stream === undefined) return void log.info(JSON.parse(`{${line}}`) as object);
    const now = Date.now();
    if (now !== stampedAt) {
      stampedAt = now;
      prefix = `{"level":"info","time":"${new Date(now).toISOString()}"${bindings ? `,${bindings}` : ''}`;
    }
    const text = line === '' ? `${prefix}}\n` : `${prefix},${line}}\n`;
    if (batch === undefined) return void stream.write(text);
    batch.pending.push(text);
    batch.chars += text.length;
    if (batch.chars > MAX_BATCH_CHARS) writeBatch(batch);
    else if (!batch.scheduled) {
      batch.scheduled = true;
      setImmediate(writeBatch, batch);
    }
  };
}
