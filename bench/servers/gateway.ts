// certbound itself, as `certbound serve` runs it (same log destination, to a file instead of stdout),
// from a config document given on the command line.
import { buildConfig } from '../../src/config/load.js';
import { createLogging, logDestination } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startRuntime } from '../../src/server/runtime.js';

const { doc, baseDir, logFile } = JSON.parse(process.argv[2] ?? '{}') as { doc: Record<string, unknown>; baseDir: string; logFile: string };
const config = buildConfig(doc, { env: {}, baseDir });
const { log, access } = createLogging(config.logging.level, logDestination(config.logging.flushIntervalMs, logFile));
const runtime = await startRuntime(config, { log, access, metrics: createMetrics() });
process.stdout.write(`${JSON.stringify({ port: runtime.trafficAddress.port })}\n`);
process.once('SIGTERM', () => void runtime.shutdown().then(() => process.exit(0)));

// BENCH_GC_STATS=1: GC pauses of this process, printed to stderr when it stops (tuning aid).
if (process.env.BENCH_GC_STATS) {
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  const pauses: Record<string, number[]> = {};
  const kinds: Record<number, string> = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-sweep', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak' };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = kinds[((e as unknown as { detail?: { kind: number } }).detail?.kind ?? -1)] ?? 'other';
      (pauses[kind] ??= []).push(e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  process.prependListener('SIGTERM', () => {
    for (const [kind, d] of Object.entries(pauses)) {
      d.sort((a, b) => a - b);
      const total = d.reduce((a, b) => a + b, 0);
      process.stderr.write(`gc ${kind}: ${d.length} pauses, total ${total.toFixed(0)} ms, p50 ${d[Math.floor(d.length / 2)]?.toFixed(2)} ms, max ${d.at(-1)?.toFixed(2)} ms\n`);
    }
  });
}
