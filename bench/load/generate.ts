// A load generator for what wrk cannot do: client certificates, constant-rate (open loop) runs
// with latency also measured from the intended send time (as wrk2 does), and a distinct token per
// request, or a DPoP proof per request (made before the run, each sent once). Runs in its own
// process; prints one JSON line with the result.
import type { JsonWebKey } from 'node:crypto';
import { proofSigner } from '../lib/dpop-proofs.js';
import { Histogram, type Summary } from '../lib/histogram.js';
import { cpuSeconds } from '../lib/proc.js';
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
  /**
   * DPoP (RFC 9449): `proofs` ES256 proofs (fresh jti, iat = when made, htm GET, this htu, the
   * access token's ath) are made before the warm-up, and each request (warm-up included) carries
   * the next one as its `DPoP` header: none is sent twice, and no signing happens during the run.
   * Closed loop only; a run that uses them all stops early (`proofs.exhausted`).
   */
  readonly dpop?: { readonly privateJwk: JsonWebKey; readonly htu: string; readonly accessToken: string; readonly proofs: number };
  /** A process (the server under test) whose CPU time over the measured run, not the warm-up, the result reports as `cpuSeconds`. */
  readonly cpuPid?: number;
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

if (spec.dpop && spec.rate !== undefined) throw new Error('dpop: closed loop only');
const madeAt = Date.now();
/** Every request of the run, serialized before it (DPoP): one proof each. */
const proofRequests: Buffer[] | undefined = spec.dpop ? makeProofRequests(spec.dpop) : undefined;
const makeSeconds = (Date.now() - madeAt) / 1000;
let proofsUsed = 0;
const proofsLeft = (): boolean => proofRequests === undefined || proofsUsed < proofRequests.length;

function makeProofRequests(dpop: NonNullable<LoadSpec['dpop']>): Buffer[] {
  const next = proofSigner(dpop.privateJwk, { htm: 'GET', htu: dpop.htu, accessToken: dpop.accessToken });
  const out = new Array<Buffer>(dpop.proofs);
  for (let i = 0; i < dpop.proofs; i++) out[i] = Buffer.from(`${fixedHead}dpop: ${next()}\r\n\r\n`, 'latin1');
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
    // proofsLeft() and the proof's use in once() happen in one synchronous step (a connection is idle).
    while (tickets > 0 && performance.now() < deadline && proofsLeft()) {
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
const cpuBefore = spec.cpuPid === undefined ? 0 : cpuSeconds(spec.cpuPid);
const t = await run(spec.durationSec, spec.requests);
const cpuDuring = spec.cpuPid === undefined ? undefined : cpuSeconds(spec.cpuPid) - cpuBefore;
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
