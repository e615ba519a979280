import { pino, type DestinationStream, type Logger } from 'pino';
import { AccessBatching, accessLineFormat } from './access.js';
import type { RequestRecord } from './record.js';

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

/** The logger and the access-line writer, sharing one destination, lines in the order written. */
export interface Logging {
  readonly log: Logger;
  /**
   * Writes a request's access line at `info`, in the shape of every other line. The level is read
   * on every line, so a reload that changes it applies at once. About a third of what pino's
   * generic serializer costs for the same line (redaction, formatters, a timestamp per line).
   */
  readonly access: (record: RequestRecord) => void;
}

/**
 * JSON lines. Nothing that reaches a log may carry a token, a secret or a whole certificate:
 * callers log thumbprints, client ids and reason codes only; `redact` is the safety net.
 */
export function createLogging(level: string, destination: DestinationStream = logDestination(0)): Logging {
  const batching = new AccessBatching(destination);
  const log = pino(
    {
      level,
      base: { service: 'certbound' },
      // The access line's envelope (access.ts) is these two: keep them in step.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Exact paths only: wildcard redaction cost ~7% of the request hot path (BENCHMARKS.md).
      // Every line is built field by field; the log-scan tests are the guard against leaks.
      redact: { paths: ['authorization', 'token', 'client_secret', 'private_key', 'dpop', 'proof', 'nonce_secret'], censor: '[redacted]' },
    },
    batching,
  );
  const line = accessLineFormat(log.bindings());
  return {
    log,
    access: (record) => {
      if (log.isLevelEnabled('info')) batching.push(line(record));
    },
  };
}

/** The logger alone, for callers that write no access lines. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return createLogging(level, destination).log;
}
