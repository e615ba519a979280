// `BENCH_ONLY=instructions npm run bench`: instructions per request under valgrind's callgrind, the
// bare Node TLS proxy (peers' (P4)) against certbound (peers' (P5)), alternated. Not a target: an
// A/B instrument that this VM's noise hardly moves (req/s rounds here spread 1.3–2.3 ×; these
// counts repeat within 0.5 % for the proxy, ±4 % for certbound), for measuring a change.
// Each server runs under `valgrind --tool=callgrind --separate-threads=yes`; the bench's own client
// (undici, client certificate tppA, 8 connections) sends a warm-up, the counters are zeroed
// (callgrind_control -z), a fixed number of requests follow, and the counters are dumped (-d).
// Under valgrind a process runs ~50 × slower, so whatever is cached per millisecond (certbound's
// log envelope) or per second (node:http's Date header) is rebuilt more often than at full speed,
// and V8's compiler threads are still busy after the warm-up: the main thread's count is the one
// to compare, and for certbound it follows V8's tiers (±4 % from round to round): compare
// changes function by function (BENCH_INSTRUCTIONS_KEEP), totals over several rounds.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import type { DemoPki } from '../test/fixtures/pki.js';
import { compiledScript } from './lib/proc.js';
import { env, midpointMedian } from './lib/stats.js';

/** BENCH_INSTRUCTIONS_WARMUP, BENCH_INSTRUCTIONS_REQUESTS: requests before the counters are zeroed, and counted after. */
const WARMUP = env('BENCH_INSTRUCTIONS_WARMUP', 6000);
const REQUESTS = env('BENCH_INSTRUCTIONS_REQUESTS', 4000);
/** BENCH_INSTRUCTIONS_KEEP: a directory that keeps the dumps, with V8's perf map (--perf-basic-prof) to name JIT code addresses. */
const KEEP = process.env.BENCH_INSTRUCTIONS_KEEP;
const CONNECTIONS = 8;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

export interface InstructionsPhase {
  readonly upstreamUrl: string;
  readonly rounds: number;
  readonly path: string;
  readonly token: string;
  readonly pki: DemoPki;
  /** certbound's arguments for servers/gateway.ts (peers' (P5): TLS, certificate_bound_token, log info). */
  gatewayArg(): unknown;
  log(message: string): void;
}

interface Count {
  /** Instructions per request: the main thread, and every thread. */
  readonly main: number;
  readonly all: number;
}

const k = (x: number): string => `${(x / 1000).toFixed(1)}k`;

/** `summary:` (or `totals:`) of each per-thread dump of the first dump (`cg.<pid>.1-NN`), by thread number. */
function threadTotals(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const file of readdirSync(dir)) {
    const m = /\.1-(\d+)$/.exec(file);
    const total = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'));
    if (m && total) out.set(Number(m[1]), Number(total[1]));
  }
  return out;
}

/** `requests` GETs with the hot token over `pool`'s keep-alive connections; returns how many were not 200. */
async function send(pool: Pool, p: InstructionsPhase, requests: number): Promise<number> {
  let left = requests;
  let refused = 0;
  const worker = async () => {
    while (left-- > 0) {
      const r = await pool.request({ method: 'GET', path: p.path, headers: { authorization: `Bearer ${p.token}` } });
      await r.body.dump();
      if (r.statusCode !== 200) refused++;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  return refused;
}

/** One server under callgrind: warm-up, zero, count, dump. */
async function count(name: string, script: string, arg: unknown, p: InstructionsPhase): Promise<Count> {
  const out = mkdtempSync(join(KEEP ?? tmpdir(), 'certbound-callgrind-'));
  const nodeArgs = KEEP ? ['--perf-basic-prof'] : [];
  const child = spawn('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}/cg.%p`, process.execPath, ...nodeArgs, compiledScript(script), JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => void (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: not listening after ${START_TIMEOUT_MS / 1000}s`)), START_TIMEOUT_MS);
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (!line.startsWith('{')) return;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      });
      void exited.then(() => reject(new Error(`${name} exited: ${stderr.trim().split('\n').slice(-5).join(' | ')}`)));
    });
    const pid = String(child.pid);
    p.log(`${name}: ${WARMUP} requests of warm-up under callgrind`);
    // One pool for both: the counted requests reuse the warm-up's connections (no handshake counted).
    const { pki } = p;
    const pool = new Pool(`https://127.0.0.1:${port}`, { connections: CONNECTIONS, keepAliveTimeout: 600_000, connect: { ca: pki.ca.certPem, cert: pki.tppA.certPem, key: pki.tppA.keyPem, servername: 'localhost' } });
    const refusedWarm = await send(pool, p, WARMUP).catch(async (error: unknown) => {
      await pool.destroy();
      throw error;
    });
    spawnSync('callgrind_control', ['-z', pid], { stdio: 'ignore' });
    const refused = await send(pool, p, REQUESTS).finally(() => pool.close());
    spawnSync('callgrind_control', ['-d', pid], { stdio: 'ignore' });
    if (refusedWarm + refused > 0) throw new Error(`${name}: ${refusedWarm + refused} response(s) not 200`);
    const totals = threadTotals(out);
    const main = totals.get(1);
    if (main === undefined) throw new Error(`${name}: no callgrind dump in ${out}`);
    const all = [...totals.values()].reduce((a, b) => a + b, 0);
    const c = { main: main / REQUESTS, all: all / REQUESTS };
    p.log(`${name}: ${k(c.main)} instructions per request on the main thread, ${k(c.all)} over ${totals.size} threads`);
    return c;
  } finally {
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(kill);
    if (KEEP) p.log(`${name}: dumps in ${out}, JIT names in /tmp/perf-${child.pid}.map`);
    else rmSync(out, { recursive: true, force: true });
  }
}

export interface InstructionsFigures {
  readonly notMeasured?: string;
  readonly warmup: number;
  readonly requests: number;
  readonly node: readonly Count[];
  readonly certbound: readonly Count[];
}

export async function instructionsPhase(p: InstructionsPhase): Promise<InstructionsFigures> {
  const figures = { warmup: WARMUP, requests: REQUESTS, node: [] as Count[], certbound: [] as Count[] };
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    const missing = 'valgrind not found: apt-get update && apt-get install -y valgrind';
    console.log(`info  instructions: not measured — ${missing}`);
    return { ...figures, notMeasured: missing };
  }
  const { pki } = p;
  const proxyArg = { upstream: p.upstreamUrl, cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, logFile: '/dev/null' };
  try {
    for (let round = 0; round < p.rounds; round++) {
      figures.node.push(await count(`(P4) bare Node TLS proxy, round ${round + 1}`, 'servers/tls-passthrough.ts', proxyArg, p));
      figures.certbound.push(await count(`(P5) certbound, round ${round + 1}`, 'servers/gateway.ts', p.gatewayArg(), p));
    }
  } catch (error) {
    const failure = (error as Error).message;
    console.log(`info  instructions: not measured — ${failure}`);
    return { ...figures, notMeasured: failure };
  }
  const line = (field: keyof Count) => {
    const node = midpointMedian(figures.node.map((c) => c[field]));
    const cb = midpointMedian(figures.certbound.map((c) => c[field]));
    const rounds = (xs: readonly Count[]) => xs.map((c) => k(c[field])).join(', ');
    return `(P4) ${k(node)} (${rounds(figures.node)}), (P5) ${k(cb)} (${rounds(figures.certbound)}): certbound ${(cb / node).toFixed(3)} ×, +${k(cb - node)}`;
  };
  console.log(`info  instructions per request (callgrind, ${REQUESTS} after ${WARMUP} of warm-up, medians of ${p.rounds}), main thread: ${line('main')}`);
  console.log(`info  instructions per request, every thread (V8's compiler and GC threads included): ${line('all')}`);
  return figures;
}
