#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { compileGateway } from './gateway.js';
import { createLogging, logDestination } from './observability/logger.js';
import { createMetrics } from './observability/metrics.js';
import { startRuntime, type Runtime } from './server/runtime.js';

const USAGE = `Usage: certbound [serve] [--config FILE]
       certbound validate [--config FILE]

Enforces certificate-bound OAuth access tokens (RFC 8705) in front of an API.

Commands:
  serve       run the gateway (default)
  validate    check the configuration; print every problem with its key path

Options:
  -c, --config FILE   configuration file (default: $CERTBOUND_CONFIG, else ./gateway.yaml)
  -h, --help          show this help
  -v, --version       print the version

Signals: SIGHUP reloads the configuration; SIGTERM drains and exits.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Every problem on its own line, with its key path; exit status 1. */
function report(error: ConfigError): void {
  for (const problem of error.problems) process.stderr.write(`${problem}\n`);
  process.exitCode = 1;
}

/** Loads and compiles the gateway exactly as `serve` does (which compiles it at start), then lets it go: no listener, no network. */
async function validate(path: string): Promise<Config | undefined> {
  try {
    const config = loadConfig(path);
    await compileGateway(config).close();
    return config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return void report(error);
  }
}

function load(path: string): Config | undefined {
  try {
    return loadConfig(path);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return void report(error);
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const { values, positionals } = parsed;
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  if (values.version) return void process.stdout.write(`${version()}\n`);
  const command = positionals[0] ?? 'serve';
  if (positionals.length > 1 || (command !== 'serve' && command !== 'validate')) {
    process.stderr.write(`unknown command: ${positionals.join(' ')}\n\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const path = values.config ?? process.env.CERTBOUND_CONFIG ?? 'gateway.yaml';
  if (command === 'validate') {
    const valid = await validate(path);
    if (valid) process.stdout.write(`${path}: valid (${valid.routes.length} routes)\n`);
    return;
  }
  const config = load(path);
  if (!config) return;

  const { log, access } = createLogging(config.logging.level, logDestination(config.logging.flushIntervalMs));
  const metrics = createMetrics();
  // The last guard: an error no request path caught is a bug, but a process that exits on it takes
  // every in-flight request of the pod along, and a client that can trigger it can keep every replica
  // restarting. Logged (with its stack, never request data) and counted; the process keeps serving.
  const uncaught = (kind: string) => (error: unknown): void => {
    metrics.uncaughtErrors.inc();
    log.error({ msg: `${kind}; still serving`, err: error instanceof Error ? { message: error.message, stack: error.stack } : String(error) });
  };
  process.on('uncaughtException', uncaught('uncaught exception'));
  process.on('unhandledRejection', uncaught('unhandled rejection'));
  // SIGHUP's default action ends the process: take it over before anything can send one.
  let runtime: Runtime | undefined;
  process.on('SIGHUP', () => void runtime?.reload('SIGHUP'));
  try {
    runtime = await startRuntime(config, { log, access, metrics, configPath: path });
  } catch (error) {
    // What the compile step refuses (startRuntime compiles before it listens) reads as validate's output.
    if (error instanceof ConfigError) report(error);
    else process.stderr.write(`cannot start: ${(error as Error).message}\n`);
    log.fatal({ msg: 'cannot start', err: (error as Error).message });
    log.flush(() => process.exit(1));
    return;
  }
  const started = runtime;
  const stop = (signal: string): void => {
    log.info({ msg: 'signal', signal });
    started.shutdown().then(
      () => log.flush(() => process.exit(0)),
      (error: unknown) => {
        log.error({ msg: 'shutdown failed', err: String(error) });
        log.flush(() => process.exit(1));
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`certbound: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
