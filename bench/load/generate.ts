// A load generator for what wrk cannot do: client certificates, constant-rate (open loop) runs
// with latency also measured from the intended send time (as wrk2 does), and a distinct token per
// request, or a DPoP proof per request (made before the run, each sent once). Runs in its own
// process; prints one JSON line with the result.
import { spawn } from 'node:child_process';
import type { JsonWebKey } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Histogram, type Summary } from '../lib/histogram.js';
import { cpuSeconds } from '../lib/proc.js';
import { Connection } from './client.js';
import type { ProofWork } from './proof-worker.js';

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
  /**
   * Closed loop: the warm-up lasts until this many requests have also been answered. A slower
   * scenario gets as many warm-up requests as a faster one, so V8 has optimized as much of it
   * (tier-up counts calls, not seconds) before the measured run starts.
   */
  readonly warmupMinRequests?: number;
  readonly headers: Readonly<Record<string, string>>;
  /** `Authorization: Bearer <prefix><n>`, n counting from 0: every request its own token. */
  readonly distinctTokenPrefix?: string;
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string };
  /**
   * DPoP (RFC 9449): `proofs` ES256 proofs (fresh jti, iat = when made, htm GET, this htu, the
   * access token's ath) are made before the warm-up, and each request (warm-up included) carries
   * the next one as its `DPoP` header: none is sent twice, and no signing happens during the run.
   * A run that uses them all stops early (`proofs.exhausted`).
   */
  readonly dpop?: { readonly privateJwk: JsonWebKey; readonly htu: string; readonly accessToken: string; readonly proofs: number };
  /** A process (the server under test) whose CPU time over the measured run, not the warm-up, the result reports as `cpuSeconds`. */
  readonly cpuPid?: number;
  /** `perf record -e cpu-clock -g` of `cpuPid` over the measured run into this file (CPU time, not wall time). */
  readonly perfOutput?: string;
}

export interface ProofPool {
  readonly made: number;
  readonly used: number;
  readonly makeSeconds: number;
  /** The run stopped because every proof had been sent. */
  readonly exhausted: boolean;
  /** From the first proof's iat to the end of the run: no proof was older when sent. */
  readonly oldestAgeSeconds: number;
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
  /** CPU seconds (user + system) of `cpuPid` over the measured run. */
  readonly cpuSeconds?: number;
  readonly warmup?: { readonly requests: number; readonly seconds: number };
  readonly proofs?: ProofPool;
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

const madeAt = Date.now();
/** Every request of the run, serialized before it (DPoP): one proof each. */
const proofRequests: Buffer[] | undefined = spec.dpop ? await makeProofRequests(spec.dpop) : undefined;
const makeSeconds = (Date.now() - madeAt) / 1000;
let proofsUsed = 0;
const proofsLeft = (): boolean => proofRequests === undefined || proofsUsed < proofRequests.length;

/** The proofs are signed by one worker thread per core (nothing else runs yet), then serialized here. */
async function makeProofRequests(dpop: NonNullable<LoadSpec['dpop']>): Promise<Buffer[]> {
  const workers = Math.max(1, Math.min(availableParallelism(), Math.ceil(dpop.proofs / 5000)));
  const share = Math.ceil(dpop.proofs / workers);
  const chunks = await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      const work: ProofWork = { privateJwk: dpop.privateJwk, htu: dpop.htu, accessToken: dpop.accessToken, count: Math.min(share, dpop.proofs - i * share) };
      return new Promise<string[]>((resolve, reject) => {
        const worker = new Worker(new URL('./proof-worker.js', import.meta.url), { workerData: work });
        worker.once('message', (proofs: string[]) => resolve(proofs));
        worker.once('error', reject);
      });
    }),
  );
  const out: Buffer[] = [];
  for (const chunk of chunks) for (const proof of chunk) out.push(Buffer.from(`${fixedHead}dpop: ${proof}\r\n\r\n`, 'latin1'));
  return out;
}

function requestBytes(): Buffer | string {
  if (proofRequests !== undefined) {
    const bytes = proofRequests[proofsUsed++];
    if (bytes === undefined) throw new Error('no DPoP proof left');
    return bytes;
  }
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
async function once(tally: Tally, bytes: Buffer | string, intended?: number): Promise<void> {
  const connection = idle.pop() ?? (await new Promise<Connection>((resolve) => queue.push(resolve)));
  const sent = performance.now();
  try {
    const status = await connection.request(bytes);
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

async function closedLoop(tally: Tally, seconds: number | undefined, requests: number | undefined, minRequests = 0): Promise<number> {
  const started = performance.now();
  const deadline = seconds === undefined ? Infinity : started + seconds * 1000;
  let tickets = requests ?? Infinity;
  let sent = 0;
  const worker = async () => {
    while (tickets > 0 && (performance.now() < deadline || sent < minRequests) && proofsLeft()) {
      tickets--;
      sent++;
      await once(tally, requestBytes());
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
      // The request's bytes (its proof) are taken when it is due, even if it waits for a connection.
      while (sent < due && proofsLeft()) pending.push(once(tally, requestBytes(), started + sent++ * interval));
      if (sent >= total || !proofsLeft()) resolve();
      // A timer, not setImmediate: a spinning generator would steal a core from the server.
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(pending);
  return (performance.now() - started) / 1000;
}

async function run(seconds: number | undefined, requests: number | undefined, minRequests?: number): Promise<Tally & { seconds: number }> {
  const tally = newTally();
  const elapsed = spec.rate !== undefined ? await openLoop(tally, seconds ?? 10, spec.rate) : await closedLoop(tally, seconds, requests, minRequests);
  return { ...tally, seconds: elapsed };
}

const warmup = spec.warmupSec || spec.warmupMinRequests ? await run(spec.warmupSec ?? 0, undefined, spec.warmupMinRequests) : undefined;
const perf = spec.perfOutput !== undefined && spec.cpuPid !== undefined ? await startPerf(spec.perfOutput, spec.cpuPid) : undefined;
const cpuBefore = spec.cpuPid === undefined ? 0 : cpuSeconds(spec.cpuPid);
const t = await run(spec.durationSec, spec.requests);
const cpuDuring = spec.cpuPid === undefined ? undefined : cpuSeconds(spec.cpuPid) - cpuBefore;
await perf?.();

/** Starts perf on `pid` and resolves once it samples; the function returned stops it and waits for its file. */
async function startPerf(output: string, pid: number): Promise<() => Promise<void>> {
  const child = spawn('perf', ['record', '-e', 'cpu-clock', '-F', '999', '-g', '-p', String(pid), '-o', output], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stderr.resume();
  // perf prints nothing when it is attached; give it a moment (its startup is not measured).
  await new Promise((resolve) => setTimeout(resolve, 500));
  return async () => {
    child.kill('SIGINT');
    await exited;
  };
}
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
  ...(cpuDuring !== undefined ? { cpuSeconds: Math.round(cpuDuring * 100) / 100 } : {}),
  ...(warmup ? { warmup: { requests: warmup.requests, seconds: Math.round(warmup.seconds * 10) / 10 } } : {}),
  ...(proofRequests !== undefined
    ? {
        proofs: {
          made: proofRequests.length,
          used: proofsUsed,
          makeSeconds: Math.round(makeSeconds * 100) / 100,
          exhausted: !proofsLeft(),
          oldestAgeSeconds: Math.round((Date.now() - madeAt) / 100) / 10,
        },
      }
    : {}),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const c of all) c.close();
process.exit(0);
