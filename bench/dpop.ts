// `npm run bench` phase `dpop` (issue 13): the DPoP route (RFC 9449, ES256 proofs made by the load
// generator before each run, each sent once) against the certificate-bound hot path (header mode),
// same gateway configuration, same upstream, same generator, connections and duration, alternated
// in fresh processes. The target is on the gateway's CPU per request: a DPoP request may cost one
// ES256 verification (measured in the same run, in its own process) plus 10 µs over the mTLS one.
import { cpus } from 'node:os';
import type { LoadResult, LoadSpec } from './load/generate.js';
import type { MicroResult, MicroSpec } from './micro/dpop-verify.js';
import { newDpopKey, proofSigner } from './lib/dpop-proofs.js';
import { runChild, startChild, type Child } from './lib/proc.js';

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
const MICRO_ITERATIONS = Number(process.env.BENCH_DPOP_MICRO_ITERATIONS ?? 6000);
const MICRO_PASSES = 5;
/** No run's proofs may be near iat_leeway_seconds old when sent. */
const MAX_PROOF_AGE_SECONDS = 45;

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
  /** `profileAs`: with BENCH_PROFILE, --cpu-prof into that subdirectory. */
  startGateway(doc: Record<string, unknown>, profileAs?: string): Promise<Child<{ port: number }>>;
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
  readonly micro: MicroResult;
  readonly mtlsCpuUs: number;
  readonly dpopCpuUs: number;
  readonly verifyUs: number;
  readonly proofUs: number;
  readonly proofReplayUs: number;
  readonly introspections: number;
}

const medianOf = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const byRps = (runs: readonly Run[]): Run => [...runs].sort((a, b) => a.r.rps - b.r.rps)[Math.floor(runs.length / 2)] as Run;
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

  // The proof check alone, in its own process, before any load (the figures the target needs).
  p.log(`dpop micro: ES256 verify, proof check, proof check + replay store; ${MICRO_PASSES} passes × ${MICRO_ITERATIONS}`);
  const microSpec: MicroSpec = {
    iterations: MICRO_ITERATIONS, passes: MICRO_PASSES, algorithms: DPOP_SETTINGS.algorithms, iatLeewaySeconds: DPOP_SETTINGS.iat_leeway_seconds,
    replayCacheEntries: DPOP_SETTINGS.replay_cache_entries, origin: PUBLIC_URL, path: DPOP_PATH, accessToken: DPOP_TOKEN,
  };
  const micro = await runChild<MicroResult>('micro/dpop-verify.ts', microSpec);
  const verifyUs = medianOf(micro.verifyUs);
  const proofUs = medianOf(micro.proofUs);
  const proofReplayUs = medianOf(micro.proofReplayUs);

  if (p.warmup + p.seconds > MAX_PROOF_AGE_SECONDS - 10) {
    p.log(`warning: ${p.warmup + p.seconds}s of warm-up and run: the last proofs may be older than iat_leeway_seconds (${DPOP_SETTINGS.iat_leeway_seconds}s) when sent`);
  }

  const mtls: Run[] = [];
  const dpop: Run[] = [];
  const callsBefore = await asCalls();
  const measured = async (name: string, spec: (port: number, pid: number) => LoadSpec, profileAs: string | undefined): Promise<Run> => {
    const gw = await p.startGateway(doc, profileAs);
    const s = spec(gw.ready.port, gw.pid);
    p.log(`${name}: ${s.dpop ? `${s.dpop.proofs} proofs, then ` : ''}warm-up ${p.warmup}s, then ${p.seconds}s`);
    const r = await runChild<LoadResult>('load/generate.ts', s);
    const rss = gw.peakRssMb();
    await gw.stop();
    const cpuUs = ((r.cpuSeconds ?? Number.NaN) / r.requests) * 1e6;
    p.log(`${name}: ${r.rps} req/s, ${us(cpuUs)} µs CPU/request, p50 ${r.latency.p50Ms} ms, p99 ${r.latency.p99Ms} ms, ${r.non2xx + r.errors} errors${r.proofs ? `, proofs ${r.proofs.used}/${r.proofs.made} used, made in ${r.proofs.makeSeconds}s, oldest ${r.proofs.oldestAgeSeconds}s` : ''}`);
    return { r, rss, cpuUs };
  };
  const base = (port: number, pid: number) => ({ url: `http://127.0.0.1:${port}`, connections: p.connections, durationSec: p.seconds, warmupSec: p.warmup, cpuPid: pid });
  for (let round = 0; round < p.rounds; round++) {
    const profile = round === 0;
    mtls.push(await measured(`(D0) mTLS hot path, round ${round + 1}`, (port, pid) => ({ ...base(port, pid), path: MTLS_PATH, headers: mtlsHeaders }), profile ? 'dpop-mtls' : undefined));
    // Enough proofs for every request the run can send: a DPoP request does all an mTLS one does
    // and more, so the first round sizes from the mTLS run (×1.2), later rounds from the fastest
    // DPoP run so far (×1.5, for a faster minute of machine noise).
    const rate = dpop.length === 0 ? Math.max(...mtls.map((x) => x.r.rps)) * 1.2 : Math.max(...dpop.map((x) => x.r.rps)) * 1.5;
    const proofs = Math.ceil(rate * (p.warmup + p.seconds)) + p.connections;
    dpop.push(await measured(`(D1) DPoP ES256, round ${round + 1}`, (port, pid) => ({
      ...base(port, pid), path: DPOP_PATH, headers: dpopHeaders, dpop: { privateJwk: key.privateJwk, htu: `${PUBLIC_URL}${DPOP_PATH}`, accessToken: DPOP_TOKEN, proofs },
    }), profile ? 'dpop' : undefined));
  }
  const introspections = (await asCalls()) - callsBefore;
  await as.stop();

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
  console.log(`info  micro (${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}): ES256 verify ${us(verifyUs)} µs (${micro.verifyUs.join(', ')}), proof check ${us(proofUs)} µs (${micro.proofUs.join(', ')}), proof check + replay store ${us(proofReplayUs)} µs (${micro.proofReplayUs.join(', ')}); ES256 sign ${micro.signUs} µs; signed input ${micro.signingInputBytes} B, proof ${micro.proofBytes} B`);
  p.check(
    `DPoP request CPU − mTLS request CPU ≤ one ES256 verify + ${TARGET_DPOP_OVERHEAD_US} µs (medians of ${p.rounds} alternating rounds)`,
    added <= verifyUs + TARGET_DPOP_OVERHEAD_US,
    `${us(added)} µs (${us(dpopCpuUs)} − ${us(mtlsCpuUs)}) vs ${us(verifyUs + TARGET_DPOP_OVERHEAD_US)} µs (${us(verifyUs)} + ${TARGET_DPOP_OVERHEAD_US}); beyond the verify: ${us(added - verifyUs)} µs`,
  );
  p.check(
    `proof check − ES256 verify < ${TARGET_PROOF_OVERHEAD_US} µs (createProofVerifier vs crypto.verify, same proofs, ${MICRO_PASSES} alternating passes)`,
    proofUs - verifyUs < TARGET_PROOF_OVERHEAD_US,
    `${us(proofUs - verifyUs)} µs (${us(proofUs)} − ${us(verifyUs)}); with the replay store's first use: ${us(proofReplayUs - verifyUs)} µs`,
  );
  return { mtls, dpop, micro, mtlsCpuUs, dpopCpuUs, verifyUs, proofUs, proofReplayUs, introspections };
}
