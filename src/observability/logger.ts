import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines. Nothing that reaches a log may carry a token, a secret or a whole certificate:
 * callers log thumbprints, client ids and reason codes only; `redact` is the safety net.
 */
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
    destination ?? pino.destination({ dest: 1, sync: false }),
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
