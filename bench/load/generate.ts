// A load generator for what wrk cannot do: client certificates, constant-rate (open loop) runs
// with latency also measured from the intended send time (as wrk2 does), and a distinct token per
// request. Runs in its own process; prints one JSON line with the result.
import { Histogram, type Summary } from '../lib/histogram.js';
import { Connection } from './client.js';

export interface LoadSpec {
  readonly url: string;
  readonly path: string;
  readonly connections: number;
  /** Stop after this many seconds … */
  readonly durationSec?: number;
  /** … or after this many requests (each connection's loop takes the next ticket). */
  readonly requests?: number;
  /** Open loop: this many requests per second in total, whatever the response times. */
  readonly rate?: number;
  readonly warmupSec?: number;
  readonly headers: Readonly<Record<string, string>>;
  /** `Authorization: Bearer <prefix><n>`, n counting from 0: every request its own token. */
  readonly distinctTokenPrefix?: string;
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string };
}

export interface LoadResult {
  readonly requests: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly seconds: number;
  readonly rps: number;
  /** From the moment the request was handed to undici. */
  readonly latency: Summary;
  /** Open loop only: from the moment the schedule said to send it (includes generator lag). */
  readonly latencyFromSchedule?: Summary;
  readonly statuses: Readonly<Record<string, number>>;
  readonly firstError?: string;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
const url = new URL(spec.url);
const target = {
  host: url.hostname,
  port: Number(url.port),
  ...(spec.tls ? { tls: spec.tls } : {}),
};
const idle: Connection[] = Array.from({ length: spec.connections }, () => new Connection(target));
const all = [...idle];
/** Requests waiting for a free connection (open loop only). */
const queue: Array<(connection: Connection) => void> = [];

const fixedHead = `GET ${spec.path} HTTP/1.1\r\nhost: ${url.host}\r\n${Object.entries(spec.headers)
  .filter(([name]) => spec.distinctTokenPrefix === undefined || name !== 'authorization')
  .map(([k, v]) => `${k}: ${v}\r\n`)
  .join('')}`;
const fixedRequest = Buffer.from(`${fixedHead}\r\n`, 'latin1');
let tokenCounter = 0;
function requestBytes(): Buffer | string {
  if (spec.distinctTokenPrefix === undefined) return fixedRequest;
  return `${fixedHead}authorization: Bearer ${spec.distinctTokenPrefix}${tokenCounter++}\r\n\r\n`;
}

interface Tally {
  histogram: Histogram;
  scheduled: Histogram;
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  statuses: Record<string, number>;
  firstError?: string;
}
const newTally = (): Tally => ({ histogram: new Histogram(), scheduled: new Histogram(), requests: 0, ok: 0, non2xx: 0, errors: 0, statuses: {} });

/** One request on a free connection; `intended` is the scheduled send time in open loop. */
async function once(tally: Tally, intended?: number): Promise<void> {
  const connection = idle.pop() ?? (await new Promise<Connection>((resolve) => queue.push(resolve)));
  const sent = performance.now();
  try {
    const status = await connection.request(requestBytes());
    const done = performance.now();
    tally.histogram.record((done - sent) * 1000);
    if (intended !== undefined) tally.scheduled.record((done - intended) * 1000);
    tally.requests++;
    tally.statuses[status] = (tally.statuses[status] ?? 0) + 1;
    if (status >= 200 && status < 300) tally.ok++;
    else tally.non2xx++;
  } catch (error) {
    tally.requests++;
    tally.errors++;
    tally.firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } finally {
    // Straight to the longest waiter, so no later request can take it first.
    const next = queue.shift();
    if (next) next(connection);
    else idle.push(connection);
  }
}

async function closedLoop(tally: Tally, seconds: number | undefined, requests: number | undefined): Promise<number> {
  const started = performance.now();
  const deadline = seconds === undefined ? Infinity : started + seconds * 1000;
  let tickets = requests ?? Infinity;
  const worker = async () => {
    while (tickets > 0 && performance.now() < deadline) {
      tickets--;
      await once(tally);
    }
  };
  await Promise.all(Array.from({ length: spec.connections }, worker));
  return (performance.now() - started) / 1000;
}

async function openLoop(tally: Tally, seconds: number, rate: number): Promise<number> {
  const started = performance.now();
  const interval = 1000 / rate;
  const total = Math.floor(seconds * rate);
  const pending: Promise<void>[] = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - started) / interval) + 1);
      while (sent < due) pending.push(once(tally, started + sent++ * interval));
      if (sent >= total) resolve();
      // A timer, not setImmediate: a spinning generator would steal a core from the server.
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(pending);
  return (performance.now() - started) / 1000;
}

async function run(seconds: number | undefined, requests: number | undefined): Promise<Tally & { seconds: number }> {
  const tally = newTally();
  const elapsed = spec.rate !== undefined ? await openLoop(tally, seconds ?? 10, spec.rate) : await closedLoop(tally, seconds, requests);
  return { ...tally, seconds: elapsed };
}

if (spec.warmupSec) await run(spec.warmupSec, undefined);
const t = await run(spec.durationSec, spec.requests);
const result: LoadResult = {
  requests: t.requests,
  ok: t.ok,
  non2xx: t.non2xx,
  errors: t.errors,
  seconds: Math.round(t.seconds * 1000) / 1000,
  rps: Math.round(t.requests / t.seconds),
  latency: t.histogram.summary(),
  ...(spec.rate !== undefined ? { latencyFromSchedule: t.scheduled.summary() } : {}),
  statuses: t.statuses,
  ...(t.firstError ? { firstError: t.firstError } : {}),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const c of all) c.close();
process.exit(0);
