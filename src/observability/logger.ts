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
