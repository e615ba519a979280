import { Writable } from 'node:stream';
import { buildConfig } from '../../src/config/load.js';
import { createLogging } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { startRuntime, type Runtime } from '../../src/server/runtime.js';
import type { Config } from '../../src/config/types.js';

export interface TestGateway {
  readonly url: string;
  readonly adminUrl: string;
  readonly runtime: Runtime;
  readonly metrics: Metrics;
  /** Every JSON log line the gateway wrote. */
  readonly logs: Array<Record<string, unknown>>;
  readonly rawLogs: string[];
  close(): Promise<void>;
}

export interface RunOptions {
  readonly env?: Record<string, string>;
  readonly configPath?: string;
  readonly clock?: () => number;
  readonly defaultMetrics?: boolean;
}

/** Runs the real runtime in-process on a validated config, capturing its JSON log lines. */
export async function runCaptured(config: Config, opts: RunOptions = {}): Promise<TestGateway> {
  const rawLogs: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        rawLogs.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? false });
  const { log, access } = createLogging(config.logging.level, sink);
  const runtime = await startRuntime(config, {
    log,
    access,
    metrics,
    ...(opts.configPath ? { configPath: opts.configPath } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  return {
    url: `${config.listen.tls ? 'https' : 'http'}://127.0.0.1:${runtime.trafficAddress.port}`,
    adminUrl: `http://127.0.0.1:${runtime.adminAddress.port}`,
    runtime,
    metrics,
    logs,
    rawLogs,
    close: () => runtime.shutdown(),
  };
}

/** Starts the real gateway in-process on ephemeral loopback ports, from a config document. */
export async function startGateway(
  doc: Record<string, unknown>,
  opts: RunOptions & { baseDir?: string } = {},
): Promise<TestGateway> {
  const withPorts = {
    ...doc,
    listen: { host: '127.0.0.1', port: 0, ...(doc.listen as object | undefined) },
    admin: { host: '127.0.0.1', port: 0, ...(doc.admin as object | undefined) },
    logging: { level: 'info', ...(doc.logging as object | undefined) },
  };
  const config = buildConfig(withPorts, { env: opts.env ?? {}, ...(opts.baseDir ? { baseDir: opts.baseDir } : {}) });
  return runCaptured(config, opts);
}
