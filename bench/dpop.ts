// `npm run bench` phase `dpop` (issue 13): the DPoP route (RFC 9449, ES256 proofs made by the load
// generator before each run, each sent once) against the certificate-bound hot path (header mode),
// same gateway configuration, same upstream, same generator, connections and duration, alternated
// in fresh processes. The target is on the gateway's CPU per request: a DPoP request may cost one
// ES256 verification (measured in the same run, in its own process) plus 10 µs over the mTLS one.
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { LoadResult, LoadSpec } from './load/generate.js';
import type { MicroResult, MicroSpec } from './micro/dpop-verify.js';
import { newDpopKey, proofSigner } from './lib/dpop-proofs.js';
import { runChild, startChild, type Child } from './lib/proc.js';
import { byRps, medianOf } from './lib/stats.js';

/** A DPoP request's CPU may exceed the mTLS request's by one ES256 verification plus this. */
export const TARGET_DPOP_OVERHEAD_US = 10;
/** The proof check beyond its signature verification (micro benchmark). */
export const TARGET_PROOF_OVERHEAD_US = 10;

const PUBLIC_URL = 'https://api.bench.example';
const MTLS_PATH = '/ob/aisp/accounts';
/** Same length as MTLS_PATH, so both request lines are alike. */
const DPOP_PATH = '/ob/pisp/payments';
const DPOP_TOKEN = 'dpop-token-0123456789abcdefghijklmnopqrstuvw';
const DPOP_SETTINGS = { algorithms: ['ES256', 'PS256', 'EdDSA'], iat_leeway_seconds: 60, replay_cache_entries: 100000 };
/** The micro benchmark runs once per round, between the two runs (the same minute of machine noise). */
const MICRO_ITERATIONS = Number(process.env.BENCH_DPOP_MICRO_ITERATIONS ?? 4000);
const MICRO_PASSES = 3;
/**
 * Both scenarios' warm-ups last BENCH_WARMUP seconds and at least this many requests: on a slow
 * minute the DPoP gateway was still optimizing (TurboFan: 15–30 % of its CPU) 3 s into its
 * measured run after a 3 s warm-up, while the faster mTLS one had settled (perf, BENCHMARKS.md).
 */
const WARMUP_MIN_REQUESTS = Number(process.env.BENCH_DPOP_WARMUP_REQUESTS ?? 15000);
/** No run's proofs may be near iat_leeway_seconds old when sent. */
const MAX_PROOF_AGE_SECONDS = 45;
/**
 * BENCH_PERF=<dir>: round 1's gateways run with --perf-basic-prof and the generator records them
 * with `perf record -e cpu-clock` over the measured run (CPU time by function, where V8's
 * --cpu-prof samples wall time: on this shared VM a preempted function keeps collecting samples).
 * Summarize: `npx tsx bench/lib/perf-summary.ts <dir>/dpop-mtls.perf:<requests> <dir>/dpop.perf:<requests>`.
 */
const PERF_DIR = process.env.BENCH_PERF;
/**
 * BENCH_DPOP_RATE=<fraction> (a diagnostic, off by default: it adds ~40 s a round): after the
 * closed-loop rounds, BENCH_ROUNDS more pairs run open loop, both at this fraction of the slowest
 * DPoP closed-loop rate. Closed loop, the DPoP gateway answers fewer requests per second, so each
 * also carries more of the per-event-loop-turn and per-syscall overhead; at one rate both carry
 * the same, which separates that from the DPoP request's own work.
 */
const EQUAL_RATE = process.env.BENCH_DPOP_RATE ? Number(process.env.BENCH_DPOP_RATE) : undefined;

export interface DpopPhase {
  readonly upstreamUrl: string;
  readonly rounds: number;
  readonly seconds: number;
  readonly warmup: number;
  readonly connections: number;
  /** The hot path's token and certificate (header mode, as phase hot's (3)). */
  readonly token: string;
  readonly certificateHeader: string;
  readonly certificateThumbprint: string;
  readonly caFile: string;
  /** `profileAs`: with BENCH_PROFILE, --cpu-prof into that subdirectory; `nodeFlags`: more node flags. */
  startGateway(doc: Record<string, unknown>, profileAs?: string, nodeFlags?: readonly string[]): Promise<Child<{ port: number }>>;
  row(name: string, r: LoadResult, rssMb: number): void;
  check(name: string, pass: boolean, figure: string): void;
  log(message: string): void;
}

interface Run {
  readonly r: LoadResult;
  readonly rss: number;
  readonly cpuUs: number;
}

export interface DpopFigures {
  readonly mtls: readonly Run[];
  readonly dpop: readonly Run[];
  readonly micro: readonly MicroResult[];
  readonly mtlsCpuUs: number;
  readonly dpopCpuUs: number;
  readonly verifyUs: number;
  readonly proofUs: number;
  readonly proofReplayUs: number;
  readonly introspections: number;
  readonly equalRate?: { readonly rate: number; readonly mtls: readonly Run[]; readonly dpop: readonly Run[] };
}

const us = (x: number): number => Math.round(x * 10) / 10;

export async function dpopPhase(p: DpopPhase): Promise<DpopFigures> {
  const key = newDpopKey();
  const as = await startChild<{ port: number }>('servers/as.ts', { thumbprint: p.certificateThumbprint, delayMs: 5, dpop: { jkt: key.jkt, tokenPrefix: 'dpop-' } });
  const asUrl = `http://127.0.0.1:${as.ready.port}`;
  const asCalls = async () => ((await (await fetch(`${asUrl}/stats`)).json()) as { calls: number }).calls;
  // One gateway configuration for both scenarios: the hot path's route and a DPoP route beside it.
  const doc = {
    listen: { host: '127.0.0.1', port: 0, public_url: PUBLIC_URL },
    admin: { host: '127.0.0.1', port: 0 },
    logging: { level: 'info' },
    shutdown: { grace_period_seconds: 1 },
    client_certificate: { source: 'header', header: 'x-wso2-client-certificate', client_certificate_encode: true, trusted_proxies: ['127.0.0.1/32'], verify: { ca_file: p.caFile } },
    authorization_server: {
      issuer: 'https://as.bench', introspection_endpoint: `${asUrl}/introspect`, client_id: 'certbound', client_secret: 'bench', cache: { max_ttl_seconds: 3600 },
    },
    dpop: DPOP_SETTINGS,
    upstreams: { bank: p.upstreamUrl },
    routes: [
      { name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] },
      { name: 'payments', path_prefix: '/ob/pisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'dpop_bound_token', scopes: ['accounts'] },
    ],
  };
  const mtlsHeaders = { authorization: `Bearer ${p.token}`, 'x-wso2-client-certificate': p.certificateHeader };
  const dpopHeaders = { authorization: `DPoP ${DPOP_TOKEN}` };

  // The scenario checks what it claims to: a fresh proof passes, the same proof again is a replay,
  // a proof by a key the token is not bound to is refused, and the hot path's request passes.
  {
    const probe = await p.startGateway(doc);
    const base = `http://127.0.0.1:${probe.ready.port}`;
    const status = async (path: string, headers: Record<string, string>) => {
      const res = await fetch(`${base}${path}`, { headers });
      const text = await res.text();
      const description = res.status === 200 ? undefined : (JSON.parse(text) as { error_description?: string }).error_description;
      return `${res.status}${description ? ` ${description}` : ''}`;
    };
    const sign = proofSigner(key.privateJwk, { htm: 'GET', htu: `${PUBLIC_URL}${DPOP_PATH}`, accessToken: DPOP_TOKEN });
    const proof = sign();
    const other = proofSigner(newDpopKey().privateJwk, { htm: 'GET', htu: `${PUBLIC_URL}${DPOP_PATH}`, accessToken: DPOP_TOKEN })();
    const answers = [
      await status(MTLS_PATH, mtlsHeaders),
      await status(DPOP_PATH, { ...dpopHeaders, dpop: proof }),
      await status(DPOP_PATH, { ...dpopHeaders, dpop: proof }),
      await status(DPOP_PATH, { ...dpopHeaders, dpop: other }),
    ];
    await probe.stop();
    const [mtls, fresh, replay, wrongKey] = answers;
    p.check(
      'DPoP scenario: mTLS request → 200; fresh proof → 200; the same proof again → 401; a proof by an unbound key → 401',
      mtls === '200' && fresh === '200' && replay?.startsWith('401') === true && wrongKey?.startsWith('401') === true,
      answers.join(' / '),
    );
  }

  // The proof check alone, in its own process: ES256 verify, createProofVerifier, and that plus the replay store.
  const microSpec: MicroSpec = {
    iterations: MICRO_ITERATIONS, passes: MICRO_PASSES, algorithms: DPOP_SETTINGS.algorithms, iatLeewaySeconds: DPOP_SETTINGS.iat_leeway_seconds,
    replayCacheEntries: DPOP_SETTINGS.replay_cache_entries, origin: PUBLIC_URL, path: DPOP_PATH, accessToken: DPOP_TOKEN,
  };
  const micro: MicroResult[] = [];
  const microRun = async (round: number): Promise<MicroResult> => {
    const child = await startChild<MicroResult>('micro/dpop-verify.ts', microSpec, ['--expose-gc']);
    const m = child.ready;
    await child.stop();
    p.log(`(Dµ) micro, round ${round + 1}: ES256 verify ${m.verifyUs.join(', ')} µs; proof check ${m.proofUs.join(', ')} µs; + replay store ${m.proofReplayUs.join(', ')} µs (${MICRO_PASSES} passes × ${MICRO_ITERATIONS})`);
    micro.push(m);
    return m;
  };

  if (p.warmup + p.seconds > MAX_PROOF_AGE_SECONDS - 10) {
    p.log(`warning: ${p.warmup + p.seconds}s of warm-up and run: the last proofs may be older than iat_leeway_seconds (${DPOP_SETTINGS.iat_leeway_seconds}s) when sent`);
  }

  if (PERF_DIR) mkdirSync(PERF_DIR, { recursive: true });
  const mtls: Run[] = [];
  const dpop: Run[] = [];
  const callsBefore = await asCalls();
  const measured = async (name: string, spec: (port: number, pid: number) => LoadSpec, profileAs: string | undefined): Promise<Run> => {
    const perfOutput = PERF_DIR && profileAs ? join(PERF_DIR, `${profileAs}.perf`) : undefined;
    const gw = await p.startGateway(doc, profileAs, perfOutput ? ['--perf-basic-prof'] : []);
    const s = { ...spec(gw.ready.port, gw.pid), ...(perfOutput ? { perfOutput } : {}) };
    p.log(`${name}: ${s.dpop ? `${s.dpop.proofs} proofs, then ` : ''}warm-up ${Math.round((s.warmupSec ?? 0) * 10) / 10}s${s.warmupMinRequests ? ` and ≥ ${s.warmupMinRequests} requests` : ''}, then ${p.seconds}s`);
    const r = await runChild<LoadResult>('load/generate.ts', s);
    const rss = gw.peakRssMb();
    await gw.stop();
    const cpuUs = ((r.cpuSeconds ?? Number.NaN) / r.requests) * 1e6;
    if (perfOutput) p.log(`${name}: perf data in ${perfOutput} (${r.requests} requests)`);
    p.log(`${name}: ${r.rps} req/s, ${us(cpuUs)} µs CPU/request, p50 ${r.latency.p50Ms} ms, p99 ${r.latency.p99Ms} ms, ${r.non2xx + r.errors} errors, warm-up ${r.warmup?.requests} requests in ${r.warmup?.seconds}s${r.proofs ? `, proofs ${r.proofs.used}/${r.proofs.made} used, made in ${r.proofs.makeSeconds}s, oldest ${r.proofs.oldestAgeSeconds}s` : ''}`);
    return { r, rss, cpuUs };
  };
  const base = (port: number, pid: number) => ({
    url: `http://127.0.0.1:${port}`, connections: p.connections, durationSec: p.seconds, warmupSec: p.warmup, warmupMinRequests: WARMUP_MIN_REQUESTS, cpuPid: pid,
  });
  for (let round = 0; round < p.rounds; round++) {
    const profile = round === 0;
    const d0 = await measured(`(D0) mTLS hot path, round ${round + 1}`, (port, pid) => ({ ...base(port, pid), path: MTLS_PATH, headers: mtlsHeaders }), profile ? 'dpop-mtls' : undefined);
    mtls.push(d0);
    const m = await microRun(round);
    // Enough proofs for every request the run can send, and not many more (each costs a signature
    // and ~0.7 KB): this round's mTLS rate scaled by its gateway CPU per request over that plus a
    // proof check (the gateway is the busiest process), or the fastest DPoP run so far if higher,
    // ×1.5 for a faster minute of machine noise (rates a minute apart differ by up to ~40 % here).
    // A run that sends them all stops early and fails the phase.
    const rate = Math.max(Math.min(d0.r.rps, (d0.r.rps * d0.cpuUs) / (d0.cpuUs + medianOf(m.proofUs))), ...dpop.map((x) => x.r.rps)) * 1.5;
    const proofs = Math.ceil(rate * p.seconds + Math.max(rate * p.warmup, WARMUP_MIN_REQUESTS)) + p.connections;
    dpop.push(await measured(`(D1) DPoP ES256, round ${round + 1}`, (port, pid) => ({
      ...base(port, pid), path: DPOP_PATH, headers: dpopHeaders, dpop: { privateJwk: key.privateJwk, htu: `${PUBLIC_URL}${DPOP_PATH}`, accessToken: DPOP_TOKEN, proofs },
    }), profile ? 'dpop' : undefined));
  }
  const introspections = (await asCalls()) - callsBefore;

  const equalRate: { rate: number; mtls: Run[]; dpop: Run[] } | undefined = EQUAL_RATE ? { rate: Math.round(Math.min(...dpop.map((x) => x.r.rps)) * EQUAL_RATE), mtls: [], dpop: [] } : undefined;
  if (equalRate) {
    const { rate } = equalRate;
    const warmupSec = Math.max(p.warmup, WARMUP_MIN_REQUESTS / rate);
    const open = (port: number, pid: number) => ({ url: `http://127.0.0.1:${port}`, connections: p.connections, durationSec: p.seconds, warmupSec, rate, cpuPid: pid });
    for (let round = 0; round < p.rounds; round++) {
      equalRate.mtls.push(await measured(`(D0r) mTLS hot path @ ${rate} req/s, round ${round + 1}`, (port, pid) => ({ ...open(port, pid), path: MTLS_PATH, headers: mtlsHeaders }), undefined));
      equalRate.dpop.push(await measured(`(D1r) DPoP ES256 @ ${rate} req/s, round ${round + 1}`, (port, pid) => ({
        ...open(port, pid), path: DPOP_PATH, headers: dpopHeaders,
        dpop: { privateJwk: key.privateJwk, htu: `${PUBLIC_URL}${DPOP_PATH}`, accessToken: DPOP_TOKEN, proofs: Math.ceil(rate * (warmupSec + p.seconds)) + 1 },
      }), undefined));
    }
  }
  await as.stop();
  const verifyUs = medianOf(micro.flatMap((x) => x.verifyUs));
  const proofUs = medianOf(micro.flatMap((x) => x.proofUs));
  const proofReplayUs = medianOf(micro.flatMap((x) => x.proofReplayUs));
  const signUs = medianOf(micro.map((x) => x.signUs));

  const rpsList = (runs: readonly Run[]) => runs.map((x) => Math.round(x.r.rps)).join(', ');
  const cpuList = (runs: readonly Run[]) => runs.map((x) => us(x.cpuUs)).join(', ');
  const m0 = byRps(mtls);
  const m1 = byRps(dpop);
  p.row(`(D0) certbound header mode, certificate_bound_token, ${MTLS_PATH} (median of ${p.rounds}: ${rpsList(mtls)} req/s; CPU ${cpuList(mtls)} µs/req)`, m0.r, m0.rss);
  p.row(`(D1) certbound DPoP ES256, dpop_bound_token, ${DPOP_PATH} (median of ${p.rounds}: ${rpsList(dpop)} req/s; CPU ${cpuList(dpop)} µs/req)`, m1.r, m1.rss);
  const mtlsCpuUs = medianOf(mtls.map((x) => x.cpuUs));
  const dpopCpuUs = medianOf(dpop.map((x) => x.cpuUs));
  const added = dpopCpuUs - mtlsCpuUs;
  const pairs = dpop.map((x, i) => us(x.cpuUs - (mtls[i] as Run).cpuUs));

  const failed = [...mtls, ...dpop].filter((x) => x.r.non2xx + x.r.errors > 0 || x.r.proofs?.exhausted === true);
  p.check(
    `DPoP phase: every request 2xx, no proof pool ran out, one introspection per gateway process (${2 * p.rounds})`,
    failed.length === 0 && introspections === 2 * p.rounds,
    `${failed.length} run(s) with errors or an exhausted pool${failed.length > 0 ? ` (${failed.map((x) => JSON.stringify({ statuses: x.r.statuses, errors: x.r.errors, firstError: x.r.firstError, proofs: x.r.proofs })).join('; ')})` : ''}; ` +
      `${introspections} introspection call(s); DPoP proofs per run ${dpop.map((x) => `${x.r.proofs?.used ?? 0}/${x.r.proofs?.made ?? 0}`).join(', ')}, oldest sent ≤ ${Math.max(...dpop.map((x) => x.r.proofs?.oldestAgeSeconds ?? 0))} s`,
  );
  console.log(`info  (D1)/(D0) throughput (medians, noisy on a shared VM): ${Math.round((m1.r.rps / m0.r.rps) * 1000) / 1000} (${Math.round(m1.r.rps)} / ${Math.round(m0.r.rps)} req/s)`);
  console.log(`info  gateway CPU per request (medians): mTLS ${us(mtlsCpuUs)} µs, DPoP ${us(dpopCpuUs)} µs; DPoP − mTLS per round ${pairs.join(', ')} µs`);
  const passes = micro.length * MICRO_PASSES;
  console.log(`info  micro, median of ${passes} passes (${micro.length} runs, one per round, × ${MICRO_PASSES}) of ${MICRO_ITERATIONS} calls: ES256 verify ${us(verifyUs)} µs, proof check ${us(proofUs)} µs, proof check + replay store ${us(proofReplayUs)} µs; ES256 sign ${us(signUs)} µs; signed input ${micro[0]?.signingInputBytes} B, proof ${micro[0]?.proofBytes} B (${cpus().length} × ${cpus()[0]?.model ?? 'CPU'})`);
  p.check(
    `DPoP request CPU − mTLS request CPU ≤ one ES256 verify + ${TARGET_DPOP_OVERHEAD_US} µs (medians of ${p.rounds} alternating rounds)`,
    added <= verifyUs + TARGET_DPOP_OVERHEAD_US,
    `${us(added)} µs (${us(dpopCpuUs)} − ${us(mtlsCpuUs)}) vs ${us(verifyUs + TARGET_DPOP_OVERHEAD_US)} µs (${us(verifyUs)} + ${TARGET_DPOP_OVERHEAD_US}); beyond the verify: ${us(added - verifyUs)} µs`,
  );
  p.check(
    `proof check − ES256 verify < ${TARGET_PROOF_OVERHEAD_US} µs (createProofVerifier vs crypto.verify on the same proofs, alternating passes; medians of ${passes})`,
    proofUs - verifyUs < TARGET_PROOF_OVERHEAD_US,
    `${us(proofUs - verifyUs)} µs (${us(proofUs)} − ${us(verifyUs)}); with the replay store's first use: ${us(proofReplayUs - verifyUs)} µs`,
  );
  if (equalRate) {
    const [c0, c1] = [medianOf(equalRate.mtls.map((x) => x.cpuUs)), medianOf(equalRate.dpop.map((x) => x.cpuUs))];
    const bad = [...equalRate.mtls, ...equalRate.dpop].filter((x) => x.r.non2xx + x.r.errors > 0 || x.r.proofs?.exhausted === true).length;
    const pairsAt = equalRate.dpop.map((x, i) => us(x.cpuUs - (equalRate.mtls[i] as Run).cpuUs));
    console.log(
      `info  at one rate, ${equalRate.rate} req/s open loop (BENCH_DPOP_RATE=${EQUAL_RATE}): gateway CPU per request mTLS ${us(c0)} µs (${cpuList(equalRate.mtls)}), DPoP ${us(c1)} µs (${cpuList(equalRate.dpop)}); ` +
        `DPoP − mTLS ${us(c1 - c0)} µs (per round ${pairsAt.join(', ')}), beyond the ES256 verify ${us(c1 - c0 - verifyUs)} µs; p99 ${equalRate.mtls.map((x) => x.r.latency.p99Ms).join(', ')} vs ${equalRate.dpop.map((x) => x.r.latency.p99Ms).join(', ')} ms; ${bad} run(s) with errors or an exhausted pool`,
    );
  }
  return { mtls, dpop, micro, mtlsCpuUs, dpopCpuUs, verifyUs, proofUs, proofReplayUs, introspections, ...(equalRate ? { equalRate } : {}) };
}
