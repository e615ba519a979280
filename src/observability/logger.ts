import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines. Nothing that reaches a log may carry a token, a secret or a whole certificate:
 * callers log thumbprints, client ids and reason codes only; `redact` is the safety net.
 */
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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'certbound' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Exact paths only: wildcard redaction cost ~7% of the request hot path (BENCHMARKS.md).
      // Every line is built field by field; the log-scan tests are the guard against leaks.
      redact: { paths: ['authorization', 'token', 'client_secret', 'private_key'], censor: '[redacted]' },
    },
    destination ?? logDestination(0),
  );
}

/** The fields of one access line (JSON values: strings, numbers). */
export type AccessLine = Readonly<Record<string, string | number | undefined>>;

/**
 * Writes the access line, once per request, in exactly the shape of every other line
 * (`{"level":"info","time":…,"service":"certbound",…fields}`) into pino's own destination, so it
 * stays in order with them. pino's generic serializer costs ~3.5 µs a line (redaction,
 * formatters, a timestamp per line); this costs ~0.7 µs: JSON.stringify of the fields and a
 * timestamp prefix rebuilt once per millisecond. The level is read on every line, so a reload
 * that changes it applies at once. Callers pass only fields they built (no tokens, no secrets).
 */
export function createAccessLog(log: Logger): (line: AccessLine) => void {
  const stream = (log as unknown as Record<symbol, DestinationStream | undefined>)[pino.symbols.streamSym];
  // pino's bindings: `base` (service) and those of a child logger, in pino's order.
  const bindings = JSON.stringify(log.bindings()).slice(1, -1);
  let stampedAt = Number.NaN;
  let prefix = '';
  return (line) => {
    if (!log.isLevelEnabled('info')) return;
    if (stream === undefined) return void log.info(line);
    const now = Date.now();
    if (now !== stampedAt) {
      stampedAt = now;
      prefix = `{"level":"info","time":"${new Date(now).toISOString()}"${bindings ? `,${bindings}` : ''}`;
    }
    const fields = JSON.stringify(line);
    stream.write(fields.length > 2 ? `${prefix},${fields.slice(1)}\n` : `${prefix}}\n`);
  };
}
