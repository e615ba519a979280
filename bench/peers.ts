// `npm run bench` phase `peers` (issue 15): certbound against the servers people would put in its
// place, all doing the same job on loopback: terminate mTLS against the bench CA, forward
// GET /ob/aisp/accounts to the bench upstream, write an access log line per request in their
// default format to tmpfs. Two of them also check the token: certificate-bound (RFC 8705), cached
// after its first introspection, scope `accounts`.
//   (P1) nginx (Debian), worker_processes 1, pass-through        (P2) Apache 2.4 event + mod_ssl + mod_proxy_http, pass-through
//   (P3) Apache 2.4 + mod_auth_openidc, the whole job             (P4) bare Node TLS proxy (servers/tls-passthrough.ts)
//   (P5) certbound, TLS listener, certificate_bound_token, access log at info
//   (P6) the bare Node TLS proxy under node:cluster, a worker per CPU: what more cores give a Node server here
// Each round starts (P1)…(P6) in that order, each a fresh process, measured by the Node generator
// (client certificate tppA) in its own process; medians of the rounds are compared.
// Servers and their configuration templates: bench/peers/servers.ts; probes: bench/peers/probes.ts.
import { rmSync } from 'node:fs';
import type { DemoPki } from '../test/fixtures/pki.js';
import type { LoadResult, LoadSpec } from './load/generate.js';
import { logDirectory, runChild, type Child } from './lib/proc.js';
import { introspectionStats, missingSoftware, probeBinding, probeOpenidc, softwareVersions } from './peers/probes.js';
import { KINDS, LABEL, short, servers, startOpenidcAs, TOKEN_CHECKING, type Kind, type Server, type Started } from './peers/servers.js';
import { treeCpuSeconds, treePeakRss } from './peers/tree.js';
import { byRps, medianOf, r1, r3 } from './lib/stats.js';

/** Issue 15: certbound's req/s ≥ this × Apache + mod_auth_openidc's (medians), p99 no worse. */
export const TARGET_VS_OPENIDC = 2.0;
/** certbound's req/s ≥ this × the bare Node TLS proxy's. */
export const TARGET_VS_NODE = 1.0;
/** certbound's req/s ≥ this × nginx's (one worker). */
export const TARGET_VS_NGINX = 0.8;
/** Connections closed under a request, as a fraction of the run's requests, tolerated by the errors check. */
const MAX_CONNECTION_ERRORS = 0.0001;
const CONFIG_CHECK = '(P3) configuration: binding on introspection and on cache hits, scope `accounts` required, certificate required';

export interface PeersPhase {
  readonly dir: string;
  readonly upstreamUrl: string;
  readonly rounds: number;
  readonly seconds: number;
  readonly warmup: number;
  readonly connections: number;
  readonly path: string;
  /** The hot token: run.ts's fake AS answers it (every token) as bound to tppA, scope `accounts payments`. */
  readonly token: string;
  readonly pki: DemoPki;
  /** certbound: TLS listener, route certificate_bound_token, access log at info (run.ts's gatewayDoc). */
  startGateway(): Promise<Child<{ port: number }>>;
  /** Introspection calls answered so far by the AS that startGateway's certbound uses. */
  asCalls(): Promise<number>;
  row(name: string, r: LoadResult, rssMb: number): void;
  check(name: string, pass: boolean, figure: string): void;
  log(message: string): void;
}

interface Run {
  /** 0-based: the runs of one round are neighbours in time, so their ratios are paired. */
  readonly round: number;
  readonly r: LoadResult;
  /** Sum of VmHWM over the process tree (shared pages counted once per process). */
  readonly rssMb: number;
  readonly processes: number;
  /** User + system CPU of the whole process tree over warm-up and run, per request answered in both. */
  readonly cpuUs: number;
  readonly introspections?: number;
}

export interface PeersFigures {
  readonly versions: Readonly<Record<string, string | undefined>>;
  readonly missing: Readonly<Record<string, string>>;
  readonly refusedToMeasure: Readonly<Record<string, string>>;
  readonly openidcFindings: Readonly<Record<string, string>>;
  readonly runs: Readonly<Record<string, readonly Run[]>>;
  readonly tls: Readonly<Record<string, string>>;
  readonly accessLogBytes: number;
}


export async function peersPhase(p: PeersPhase): Promise<PeersFigures> {
  const { pki } = p;
  const ca = pki.ca.certPem;

  // What is installed: a missing server is reported with the command that installs it, its checks FAIL.
  const missing = missingSoftware();
  for (const [kind, why] of Object.entries(missing)) console.log(`info  peers: ${LABEL[kind as Kind]} not measured — ${why}`);
  const versions = softwareVersions(missing);
  p.log(`peers: nginx ${versions.nginx ?? '-'}, Apache ${versions.apache ?? '-'}, mod_auth_openidc ${versions.openidc ?? '-'}, Node ${versions.node}`);

  const logDir = logDirectory('certbound-peers-logs-');
  let accessLogBytes = 0;
  const refusedToMeasure: Partial<Record<Kind, string>> = {};
  let findings: Readonly<Record<string, string>> = {};
  const tls: Record<string, string> = {};
  const perKind = <T>(): Record<Kind, T[]> => Object.fromEntries(KINDS.map((k) => [k, []])) as unknown as Record<Kind, T[]>;
  const runs = perKind<Run>();
  const { start, stopAll, killAll } = servers({ pki, upstreamUrl: p.upstreamUrl, logDir, startGateway: p.startGateway });
  process.once('exit', killAll);

  const as = missing.openidc
    ? undefined
    : await startOpenidcAs(pki).catch((error: Error) => {
      missing.openidc = `its fake AS (servers/as.ts with tls) did not start: ${error.message}`;
      return undefined;
    });
  const asStats = () => introspectionStats(as?.ready.port ?? 0, ca);
  /** Introspections answered so far for the token checker `kind` (0 for the others). */
  const callsOf = async (kind: Kind) => (kind === 'openidc' ? (await asStats()).calls : kind === 'certbound' ? await p.asCalls() : 0);

  /** One measured run: the generator (tppA, the hot token) against `server`, CPU and RSS of its process tree. */
  const measure = async (kind: Kind, round: number, name: string, server: Server): Promise<Run> => {
    const before = await callsOf(kind);
    p.log(`${name}: warm-up ${p.warmup}s, then ${p.seconds}s`);
    const cpu0 = treeCpuSeconds(server.pid);
    const spec: LoadSpec = {
      url: `https://127.0.0.1:${server.port}`, path: p.path, connections: p.connections, durationSec: p.seconds, warmupSec: p.warmup,
      headers: { authorization: `Bearer ${p.token}` }, tls: { ca, cert: pki.tppA.certPem, key: pki.tppA.keyPem },
    };
    // The generator has no request timeout: if the server stalls, stopping it ends the run.
    const watchdog = setTimeout(() => {
      p.log(`${name}: no result ${p.warmup + p.seconds + 30}s in, stopping the server`);
      void server.stop();
    }, (p.warmup + p.seconds + 30) * 1000);
    const r = await runChild<LoadResult>('load/generate.ts', spec).finally(() => clearTimeout(watchdog));
    const cpu = treeCpuSeconds(server.pid) - cpu0;
    const rss = treePeakRss(server.pid);
    const after = await callsOf(kind);
    const run: Run = {
      round, r, rssMb: rss.mb, processes: rss.processes, cpuUs: (cpu / (r.requests + (r.warmup?.requests ?? 0))) * 1e6,
      ...(TOKEN_CHECKING.has(kind) ? { introspections: after - before } : {}),
    };
    p.log(`${name}: ${r.rps} req/s, p50 ${r.latency.p50Ms} ms, p99 ${r.latency.p99Ms} ms, ${r1(run.cpuUs)} µs CPU/request (${rss.processes} process(es), warm-up included), peak RSS ${r1(rss.mb)} MiB, ${r.non2xx + r.errors} errors${run.introspections !== undefined ? `, ${run.introspections} introspection(s) during the run` : ''}`);
    return run;
  };

  try {
    if (missing.openidc) p.check(CONFIG_CHECK, false, `not measured: ${missing.openidc}`);
    else {
      const o = await probeOpenidc(start, pki, p.path, versions.openidc);
      findings = o.findings;
      if ('failure' in o) {
        refusedToMeasure.openidc = `configuration probe failed: ${o.failure}`;
        p.check(CONFIG_CHECK, false, refusedToMeasure.openidc);
      } else {
        p.check(CONFIG_CHECK, o.ok, o.measured);
        if (!o.ok) refusedToMeasure.openidc = `configuration probe: ${o.measured}`;
      }
    }

    const callsBefore = { certbound: await p.asCalls(), openidc: as ? (await asStats()).calls : 0 };
    const probes = perKind<string>();
    for (let round = 0; round < p.rounds; round++) {
      for (const kind of KINDS) {
        if (missing[kind] || refusedToMeasure[kind]) continue;
        const name = `${LABEL[kind]}, round ${round + 1}`;
        let started: Started;
        try {
          started = await start(kind, `r${round + 1}`, as ? { introspectionUrl: `https://127.0.0.1:${as.ready.port}/introspect`, defines: ['CERTBOUND_FINGERPRINT', 'CERTBOUND_BINDING'] } : undefined);
        } catch (error) {
          refusedToMeasure[kind] = `did not start: ${(error as Error).message}`;
          console.log(`info  peers: ${name}: ${refusedToMeasure[kind]}`);
          continue;
        }
        try {
          const b = await probeBinding(started.server.port, p.path, p.token, pki, TOKEN_CHECKING.has(kind));
          probes[kind].push(b.figure);
          tls[kind] ??= b.tls;
          if (!b.ok) {
            refusedToMeasure[kind] = `probe: ${b.figure}`;
            console.log(`info  peers: ${name}: not measured, ${b.figure}`);
            continue;
          }
          runs[kind].push(await measure(kind, round, name, started.server));
        } finally {
          await started.server.stop();
          accessLogBytes += started.cleanup();
        }
      }
    }
    const introspections = { certbound: (await p.asCalls()) - callsBefore.certbound, openidc: as ? (await asStats()).calls - callsBefore.openidc : 0 };

    // Results: the median-throughput round of each, then the targets.
    const rpsList = (xs: readonly Run[]) => xs.map((x) => Math.round(x.r.rps)).join(', ');
    const describe: Record<Kind, string> = {
      nginx: `nginx ${versions.nginx}, worker_processes 1, mTLS pass-through`,
      apache: `Apache ${versions.apache} event MPM + mod_ssl + mod_proxy_http, mTLS pass-through`,
      openidc: `Apache ${versions.apache} + mod_auth_openidc ${versions.openidc}, introspection (shm cache), scope, binding`,
      node: 'bare Node TLS proxy (node:https + undici Pool), mTLS pass-through',
      certbound: 'certbound mTLS, certificate_bound_token, log info',
      cluster: `${LABEL.cluster.slice(5)}, mTLS pass-through`,
    };
    for (const kind of KINDS) {
      const xs = runs[kind];
      if (xs.length === 0) continue;
      const m = byRps(xs);
      const procs = m.processes > 1 ? `, RSS summed over ${m.processes} processes` : '';
      p.row(`${short(kind)} ${describe[kind]} (median of ${xs.length}: ${rpsList(xs)} req/s; CPU ${xs.map((x) => r1(x.cpuUs)).join(', ')} µs/req${procs})`, m.r, m.rssMb);
    }
    if (runs.openidc.length > 0 || runs.certbound.length > 0) {
      console.log(`info  peers: introspection calls over all measured processes (each fresh): (P3) ${introspections.openidc} for ${runs.openidc.length} process(es) [during runs: ${runs.openidc.map((x) => x.introspections).join(', ')}], (P5) ${introspections.certbound} for ${runs.certbound.length} [during runs: ${runs.certbound.map((x) => x.introspections).join(', ')}]`);
    }
    if (as) {
      const s = await asStats();
      p.check('(P3) mod_auth_openidc authenticates to the introspection endpoint (client_secret_basic certbound/bench): no call refused', s.rejected === 0 && s.calls > 0, `${s.calls} call(s) answered, ${s.rejected} refused`);
    }
    for (const kind of KINDS) {
      if (!TOKEN_CHECKING.has(kind)) continue;
      const list = probes[kind];
      const trouble = missing[kind] ?? refusedToMeasure[kind];
      p.check(
        `${LABEL[kind]} binding before every measured run: tppA + token → 200, tppB + the same token → 401`,
        trouble === undefined && list.length === p.rounds,
        [...list, ...(trouble ? [trouble] : [])].join(' | ') || 'not probed',
      );
    }
    console.log(`info  peers: TLS negotiated with the generator's client (probe): ${KINDS.filter((k) => tls[k]).map((k) => `${short(k)} ${tls[k]}`).join(', ')}`);

    const stat = (kind: Kind) => {
      const xs = runs[kind];
      if (xs.length === 0) return undefined;
      return { rps: medianOf(xs.map((x) => x.r.rps)), p99: medianOf(xs.map((x) => x.r.latency.p99Ms)) };
    };
    const why = (kind: Kind) => missing[kind] ?? refusedToMeasure[kind] ?? 'no run';
    const cb = stat('certbound');
    /** `a`'s req/s over `b`'s in each round both ran: neighbours in time, so the host's drift over the run cancels. */
    const paired = (a: Kind, b: Kind): number[] =>
      runs[a].flatMap((x) => {
        const y = runs[b].find((z) => z.round === x.round);
        return y ? [x.r.rps / y.r.rps] : [];
      });
    const pairedFigure = (a: Kind, b: Kind): string => {
      const xs = paired(a, b);
      return xs.length > 0 ? `; round by round ${xs.map(r3).join(', ')} (median ${r3(medianOf(xs))})` : '';
    };
    const target = (kind: Kind, factor: number, withP99: boolean) => {
      const other = stat(kind);
      const name = `certbound ≥ ${factor.toFixed(1)} × ${LABEL[kind].slice(5)} (req/s, medians of ${p.rounds})${withP99 ? ', p99 no worse' : ''}`;
      if (!cb || !other) return p.check(name, false, `not measured: ${!cb ? `certbound: ${why('certbound')}` : `${LABEL[kind]}: ${why(kind)}`}`);
      const ratio = cb.rps / other.rps;
      const p99ok = !withP99 || cb.p99 <= other.p99;
      p.check(name, ratio >= factor && p99ok, `${r3(ratio)} (${Math.round(cb.rps)} / ${Math.round(other.rps)} req/s)${pairedFigure('certbound', kind)}${withP99 ? `; p99 ${cb.p99} vs ${other.p99} ms (medians of the rounds' p99)` : ''}`);
    };
    target('openidc', TARGET_VS_OPENIDC, true);
    target('node', TARGET_VS_NODE, false);
    target('nginx', TARGET_VS_NGINX, false);
    // The Node ceiling of the two targets against C servers: the same ratio for the servers that
    // check nothing, (P4) and (P6). If neither reaches the factor, no Node server does on this
    // machine, however lean, and with or without more processes (the generator and the upstream
    // share its CPUs).
    const ceiling = (kind: Kind, factor: number) => {
      const other = stat(kind);
      const ceilings = (['node', 'cluster'] as const).flatMap((k) => {
        const s = stat(k);
        return s && other ? [{ k, ratio: s.rps / other.rps }] : [];
      });
      if (ceilings.length === 0) return;
      const reached = ceilings.some((c) => c.ratio >= factor);
      const verdict = reached ? 'within reach of a Node server here' : `out of reach for a Node server on this machine${ceilings.some((c) => c.k === 'cluster') ? ', with or without node:cluster' : ' in one process ((P6) not measured)'}`;
      console.log(`info  peers: the Node ceiling for ≥ ${factor.toFixed(1)} × ${short(kind)}: ${ceilings.map((c) => `${short(c.k)} ${r3(c.ratio)}${pairedFigure(c.k, kind)}`).join('; ')} — ${verdict}`);
    };
    ceiling('openidc', TARGET_VS_OPENIDC);
    ceiling('nginx', TARGET_VS_NGINX);
    // CPU per request is steadier than req/s here, and shows which server was near a core's worth
    // (the generator and the upstream share the two vCPUs with it).
    const cpuOf = (kind: Kind) => medianOf(runs[kind].map((x) => x.cpuUs));
    const cpuLine = KINDS.filter((k) => runs[k].length > 0).map((k) => `${short(k)} ${r1(cpuOf(k))} µs (${r1(medianOf(runs[k].map((x) => x.cpuUs * x.r.rps)) / 1e6)} CPUs busy)`).join(', ');
    if (cpuLine) console.log(`info  peers: server CPU per request (whole process tree, warm-up included; medians of the rounds): ${cpuLine}`);
    if (runs.certbound.length > 0) {
      const rel = KINDS.filter((k) => k !== 'certbound' && runs[k].length > 0).map((k) => `${short(k)} ${r3(cpuOf(k) / cpuOf('certbound'))}`).join(', ');
      if (rel) console.log(`info  peers: requests per CPU-second, certbound relative to each (other's CPU/request ÷ certbound's): ${rel}`);
    }
    const ap = stat('apache');
    console.log(`info  peers: certbound / Apache pass-through (req/s, medians): ${cb && ap ? `${r3(cb.rps / ap.rps)} (${Math.round(cb.rps)} / ${Math.round(ap.rps)})` : `not measured (${!cb ? why('certbound') : why('apache')})`}`);
    // The generator does not retry: a keep-alive connection the server closes while a request is on
    // its way counts as an error (Apache's event MPM did at Debian's sizing, see bench/peers/apache.conf).
    const measured = KINDS.flatMap((k) => runs[k].map((x) => ({ k, x })));
    const failed = measured.filter(({ x }) => x.r.non2xx > 0 || x.r.errors > x.r.requests * MAX_CONNECTION_ERRORS);
    const withErrors = measured.filter(({ x }) => x.r.non2xx + x.r.errors > 0);
    p.check(
      `peers: every measured response 2xx, connection errors ≤ ${MAX_CONNECTION_ERRORS * 100} % of requests`,
      measured.length > 0 && failed.length === 0,
      `${measured.length} run(s), ${withErrors.length} with errors${withErrors.length > 0 ? ` (${withErrors.map(({ k, x }) => `${short(k)} ${JSON.stringify({ statuses: x.r.statuses, errors: x.r.errors, firstError: x.r.firstError })}`).join('; ')})` : ''}`,
    );
    console.log(`info  peers: access logs: ${r1(accessLogBytes / 2 ** 20)} MiB written by nginx, Apache and the Node proxy to ${logDir} (tmpfs), each deleted after its run`);
    return { versions, missing, refusedToMeasure, openidcFindings: findings, runs, tls, accessLogBytes };
  } finally {
    await stopAll();
    await as?.stop();
    process.removeListener('exit', killAll);
    rmSync(logDir, { recursive: true, force: true });
  }
}
