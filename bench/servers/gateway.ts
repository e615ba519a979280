// certbound itself, as `certbound serve` runs it (same log destination, to a file instead of stdout),
// from a config document given on the command line.
import { buildConfig } from '../../src/config/load.js';
import { createLogger, logDestination } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startRuntime } from '../../src/server/runtime.js';

const { doc, baseDir, logFile } = JSON.parse(process.argv[2] ?? '{}') as { doc: Record<string, unknown>; baseDir: string; logFile: string };
const config = buildConfig(doc, { env: {}, baseDir });
const runtime = await startRuntime(config, {
  log: createLogger(config.logging.level, logDestination(config.logging.flushIntervalMs, logFile)),
  metrics: createMetrics(),
});
process.stdout.write(`${JSON.stringify({ port: runtime.trafficAddress.port })}\n`);
process.once('SIGTERM', () => void runtime.shutdown().then(() => process.exit(0)));
