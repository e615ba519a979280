// `npm run bench` phase `shared` (issue 14): state shared across replicas on Redis.
// (S) introspection calls per distinct token: three certbound processes sharing one redis-server
//     and one counting fake authorization server; every token used on all three (first on one,
//     then, after a short pause, on the other two), with shared_state.redis_url set and without.
// (H) the hot path (one gateway, cached token, header mode, as phase hot's (3)) with redis_url set
//     against the same gateway without, alternated in fresh processes: req/s of the medians is the
//     target, the gateway's CPU µs per request is reported beside it, and Redis's own command
//     counters show whether a cached request touched Redis at all.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort, startRedis, type RunningRedis } from '../test/fixtures/redis.js';
import { cpuSeconds, startChild, type Child } from './lib/proc.js';
import { wrk, type WrkResult } from './lib/wrk.js';
import { byRps, env, medianOf, r1, r3 } from './lib/stats.js';

/** Issue 14: AS calls per distinct token, three replicas sharing Redis. */
export const TARGET_CALLS_PER_TOKEN = 1.05;
/** Issue 14: hot-path throughput with redis_url set ≥ this × without. */
export const TARGET_SHARED_RATIO = 0.97;

/** Distinct tokens per scenario of (S). */
const TOKENS = env('BENCH_SHARED_TOKENS', 3000);
/** Requests in flight at once in (S), over the three replicas: below max_concurrent_requests (64) per replica without Redis. */
const CONCURRENCY = env('BENCH_SHARED_CONCURRENCY', 48);
/** Between a token's first answer and its use on the other two replicas: the fire-and-forget SET lands. */
const PAUSE_MS = env('BENCH_SHARED_PAUSE_MS', 100);
/** shared_state.timeout_ms of the target scenario: the default. */
const TIMEOUT_MS = env('BENCH_SHARED_TIMEOUT_MS', 50);
/**
 * Diagnostic scenarios, the target's two with this timeout_ms (0: skipped). On this 2-vCPU VM a
 * replica's event loop stalls past 50 ms often enough that Redis calls time out, each timeout
 * drops the connection, and calls miss until it is made again (BENCHMARKS.md); with a longer
 * timeout what remains is the shared cache's own behaviour.
 */
const DIAGNOSTIC_TIMEOUT_MS = env('BENCH_SHARED_DIAGNOSTIC_TIMEOUT_MS', 1000);
/** Distinct tokens per diagnostic scenario. */
const DIAGNOSTIC_TOKENS = env('BENCH_SHARED_DIAGNOSTIC_TOKENS', 500);
const REPLICAS = 3;
/** BENCH_SHARED_PARTS: which of (S) `spread` and (H) `hot` run (both by default). */
const PARTS = new Set((process.env.BENCH_SHARED_PARTS ?? 'spread,hot').split(','));

export interface SharedPhase {
  readonly dir: string;
  readonly upstreamUrl: string;
  readonly rounds: number;
  readonly path: string;
  /** The hot path's token and certificate (header mode, as phase hot's (3)). */
  readonly token: string;
  readonly certificateHeader: string;
  readonly certificateThumbprint: string;
  readonly caFile: string;
  readonly seconds: number;
  readonly warmup: number;
  readonly connections: number;
  startGateway(doc: Record<string, unknown>): Promise<Child<{ port: number }>>;
  row(name: string, x: { r: WrkResult; rss: number }): void;
  check(name: string, pass: boolean, figure: string): void;
  log(message: string): void;
}

interface Spread {
  readonly scenario: string;
  readonly timeoutMs?: number;
  readonly tokens: number;
  readonly requests: number;
  readonly ok: number;
  readonly statuses: Record<string, number>;
  readonly calls: number;
  readonly distinct: number;
  readonly perToken: number;
  readonly seconds: number;
  /** Summed over the replicas' /metrics (certbound_shared_*, introspection requests). */
  readonly metrics: Record<string, number>;
  /** 1-minute load average before and after (other tenants of the VM). */
  readonly load: readonly [number, number];
}

interface Run {
  readonly r: WrkResult;
  readonly rss: number;
  readonly cpuUs: number;
  /** Redis commands other than PING and INFO during the measured run (with redis_url set). */
  readonly redisCommands?: number;
  /** 1-minute load average before and after the measured run. */
  readonly load: readonly [number, number];
}

const load1 = (): number => Math.round((loadavg()[0] ?? 0) * 100) / 100;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `cmdstat_<name>:calls=<n>` of INFO commandstats, PING and INFO left out. */
async function redisCommands(redis: RunningRedis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await redis.cli('INFO', 'commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m && m[1] !== 'ping' && m[1] !== 'info') out[m[1] as string] = Number(m[2]);
  }
  return out;
}
const commandsSince = (before: Record<string, number>, after: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));

/** certbound_shared_* and certbound_introspection_requests_total samples of one replica's /metrics. */
async function metricsOf(adminPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('certbound_shared_') && !line.startsWith('certbound_introspection_requests_total')) continue;
    const at = line.lastIndexOf(' ');
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

/** The replicas' shared-state counters in one line: lookups, lock waits, failed store calls by op. */
function sharedSummary(m: Record<string, number>): string {
  const of = (metric: string, label: string) =>
    Object.entries(m).filter(([k]) => k.startsWith(`${metric}{${label}=`)).map(([k, v]) => `${/="([^"]*)"/.exec(k)?.[1]} ${v}`).join(', ') || 'none';
  return `shared lookups ${of('certbound_shared_cache_lookups_total', 'result')}; lock waits ${of('certbound_shared_lock_waits_total', 'result')}; failed store calls ${of('certbound_shared_state_errors_total', 'op')}`;
}

export async function sharedPhase(p: SharedPhase): Promise<{ spread: Spread[]; without: Run[]; withRedis: Run[]; ratio: number; cpuRatio: number }> {
  const redis = await startRedis();
  const as = await startChild<{ port: number }>('servers/as.ts', { thumbprint: p.certificateThumbprint, delayMs: 5 });
  const asUrl = `http://127.0.0.1:${as.ready.port}`;
  const asStats = async () => (await (await fetch(`${asUrl}/stats`)).json()) as { calls: number; distinct: number };
  const secretFile = join(p.dir, 'shared-state-secret');
  // 64 hex characters: ≥ 32 bytes, and no trailing whitespace for the loader to trim.
  writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const keyPrefix = `certbound-bench-${process.pid}:`;

  const doc = (withRedis: boolean, adminPort = 0, timeoutMs = TIMEOUT_MS) => ({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: adminPort },
    logging: { level: 'info' },
    shutdown: { grace_period_seconds: 1 },
    client_certificate: { source: 'header', header: 'x-wso2-client-certificate', client_certificate_encode: true, trusted_proxies: ['127.0.0.1/32'], verify: { ca_file: p.caFile } },
    authorization_server: {
      issuer: 'https://as.bench', introspection_endpoint: `${asUrl}/introspect`, client_id: 'certbound', client_secret: 'bench', cache: { max_ttl_seconds: 3600 },
    },
    ...(withRedis ? { shared_state: { redis_url: redis.url, key_prefix: keyPrefix, timeout_ms: timeoutMs, secret_file: secretFile } } : {}),
    upstreams: { bank: p.upstreamUrl },
    routes: [{ name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] }],
  });

  try {
    // (S) Three replicas per configuration; each scenario its own tokens.
    const spread: Spread[] = [];
    const scenario = async (name: string, withRedis: boolean, prefix: string, pauseMs: number | 'together', timeoutMs = TIMEOUT_MS, tokens = TOKENS): Promise<Spread> => {
      const adminPorts = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
      const replicas = await Promise.all(adminPorts.map((port) => p.startGateway(doc(withRedis, port, timeoutMs))));
      const pools = replicas.map((gw) => new Pool(`http://127.0.0.1:${gw.ready.port}`, { connections: 64 }));
      const statuses: Record<string, number> = {};
      let requests = 0;
      const get = async (replica: number, token: string): Promise<void> => {
        requests++;
        let status: string;
        try {
          const res = await (pools[replica] as Pool).request({
            method: 'GET', path: p.path, headers: { authorization: `Bearer ${token}`, 'x-wso2-client-certificate': p.certificateHeader },
          });
          await res.body.dump();
          status = String(res.statusCode);
        } catch (err) {
          status = `error ${(err as Error).message}`;
        }
        statuses[status] = (statuses[status] ?? 0) + 1;
      };
      try {
        if (withRedis) {
          // Readiness never waits on Redis beyond 2 s; a replica still connecting would miss.
          const deadline = Date.now() + 5000;
          while (Date.now() < deadline) {
            const clients = Number(/connected_clients:(\d+)/.exec(await redis.cli('INFO', 'clients'))?.[1] ?? 0);
            if (clients >= 2 * REPLICAS) break;
            await sleep(50);
          }
        }
        const before = await asStats();
        const loadBefore = load1();
        p.log(`(S) ${name}: ${tokens} distinct tokens over ${REPLICAS} replicas, ≤ ${CONCURRENCY} requests in flight`);
        const started = process.hrtime.bigint();
        // CONCURRENCY requests in flight; a token's later uses go before any new token's first use,
        // so each follows its first answer by about pauseMs, and a pause holds no request slot.
        const later: Array<() => Promise<void>> = [];
        let next = 0;
        let inFlight = 0;
        let pending = 0;
        await new Promise<void>((done) => {
          const pump = (): void => {
            while (inFlight < CONCURRENCY) {
              let send = later.shift();
              if (send === undefined && next < tokens) {
                const k = next++;
                const token = `${prefix}${k}-0123456789abcdefghijklmnopqrstuvw`;
                const first = k % REPLICAS;
                const others = Array.from({ length: REPLICAS - 1 }, (_, i) => (first + 1 + i) % REPLICAS);
                if (pauseMs === 'together') {
                  later.push(...others.map((r) => () => get(r, token)));
                  send = () => get(first, token);
                } else {
                  pending++;
                  send = () =>
                    get(first, token).then(() => {
                      setTimeout(() => {
                        pending--;
                        later.push(...others.map((r) => () => get(r, token)));
                        pump();
                      }, pauseMs);
                    });
                }
              }
              if (send === undefined) break;
              inFlight++;
              void send().then(() => {
                inFlight--;
                pump();
              });
            }
            if (inFlight === 0 && pending === 0 && later.length === 0 && next >= tokens) done();
          };
          pump();
        });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const after = await asStats();
        const metrics: Record<string, number> = {};
        for (const port of adminPorts) for (const [k, v] of Object.entries(await metricsOf(port))) metrics[k] = (metrics[k] ?? 0) + v;
        const calls = after.calls - before.calls;
        const result: Spread = {
          scenario: name, ...(withRedis ? { timeoutMs } : {}), load: [loadBefore, load1()], tokens, requests, ok: statuses['200'] ?? 0, statuses, calls, distinct: after.distinct - before.distinct, perToken: calls / tokens, seconds: r1(seconds), metrics,
        };
        p.log(`(S) ${name}: ${calls} AS calls for ${result.distinct} distinct tokens (${r3(result.perToken)} per token), ${result.ok}/${requests} answered 200 in ${result.seconds}s; load ${result.load.join(' → ')}`);
        if (withRedis) console.log(`info  (S) ${name}: ${r3(result.perToken)} AS calls per token; ${sharedSummary(metrics)}; load average ${result.load.join(' → ')}`);
        spread.push(result);
        return result;
      } finally {
        await Promise.all(pools.map((pool) => pool.close()));
        await Promise.all(replicas.map((gw) => gw.stop()));
      }
    };
    if (PARTS.has('spread')) {
      const shared = await scenario(`redis_url set, timeout_ms ${TIMEOUT_MS}, ${PAUSE_MS} ms pause`, true, 'shared-paused-', PAUSE_MS);
      const together = await scenario(`redis_url set, timeout_ms ${TIMEOUT_MS}, all three at once`, true, 'shared-together-', 'together');
      if (DIAGNOSTIC_TIMEOUT_MS > 0) {
        await scenario(`redis_url set, timeout_ms ${DIAGNOSTIC_TIMEOUT_MS} (diagnostic), ${PAUSE_MS} ms pause`, true, 'shared-patient-', PAUSE_MS, DIAGNOSTIC_TIMEOUT_MS, DIAGNOSTIC_TOKENS);
        await scenario(`redis_url set, timeout_ms ${DIAGNOSTIC_TIMEOUT_MS} (diagnostic), all three at once`, true, 'shared-patient-together-', 'together', DIAGNOSTIC_TIMEOUT_MS, DIAGNOSTIC_TOKENS);
      }
      const alone = await scenario(`redis_url unset, ${PAUSE_MS} ms pause`, false, 'shared-alone-', PAUSE_MS);
      const complete = (s: Spread) => s.ok === s.requests && s.distinct === s.tokens;
      p.check(
        `${REPLICAS} replicas sharing Redis: AS calls per distinct token ≤ ${TARGET_CALLS_PER_TOKEN} (timeout_ms ${TIMEOUT_MS}; first use on one, ${PAUSE_MS} ms later on the other two)`,
        shared.perToken <= TARGET_CALLS_PER_TOKEN && complete(shared),
        `${r3(shared.perToken)} (${shared.calls} calls / ${shared.tokens} tokens; ${shared.ok}/${shared.requests} answered 200); all three at once ${r3(together.perToken)}; without Redis ${r3(alone.perToken)} (${alone.calls} calls, ${alone.ok}/${alone.requests} 200)`,
      );
    }

    const without: Run[] = [];
    const withRedis: Run[] = [];
    let ratio = Number.NaN;
    let cpuRatio = Number.NaN;
    if (PARTS.has('hot')) {
      // (H) The hot path, redis_url unset (H0) and set (H1), alternated, each gateway fresh.
      const hotHeaders = { authorization: `Bearer ${p.token}`, 'x-wso2-client-certificate': p.certificateHeader };
      const measured = async (name: string, withRedis: boolean): Promise<Run> => {
        const gw = await p.startGateway(doc(withRedis));
        const url = `http://127.0.0.1:${gw.ready.port}${p.path}`;
        try {
          p.log(`${name}: warm-up ${p.warmup}s, then ${p.seconds}s`);
          await wrk(url, { connections: p.connections, seconds: p.warmup, headers: hotHeaders });
          const commandsBefore = withRedis ? await redisCommands(redis) : undefined;
          const loadBefore = load1();
          const cpuBefore = cpuSeconds(gw.pid);
          const r = await wrk(url, { connections: p.connections, seconds: p.seconds, headers: hotHeaders });
          const cpuUs = ((cpuSeconds(gw.pid) - cpuBefore) / r.requests) * 1e6;
          let redisCount: number | undefined;
          if (commandsBefore) {
            const during = commandsSince(commandsBefore, await redisCommands(redis));
            redisCount = Object.values(during).reduce((a, b) => a + b, 0);
            if (redisCount > 0) p.log(`${name}: Redis commands during the measured run: ${JSON.stringify(during)}`);
          }
          const load: [number, number] = [loadBefore, load1()];
          p.log(`${name}: ${Math.round(r.rps)} req/s, ${r1(cpuUs)} µs CPU/request, p99 ${r.p99Ms} ms, ${r.non2xx + r.socketErrors} errors${redisCount !== undefined ? `, ${redisCount} Redis commands` : ''}; load ${load.join(' → ')}`);
          return { r, rss: gw.peakRssMb(), cpuUs, load, ...(redisCount !== undefined ? { redisCommands: redisCount } : {}) };
        } finally {
          await gw.stop();
        }
      };
      // The first measured run after (S) was the slowest of the phase in every run (up to 1.5× the
      // CPU per request of the others, whichever configuration went first): one unmeasured run
      // settles the machine and the shared upstream process first.
      {
        const settle = await p.startGateway(doc(false));
        p.log(`(H) settling: ${p.warmup}s unmeasured`);
        await wrk(`http://127.0.0.1:${settle.ready.port}${p.path}`, { connections: p.connections, seconds: p.warmup, headers: hotHeaders });
        await settle.stop();
      }
      const callsBefore = (await asStats()).calls;
      for (let round = 0; round < p.rounds; round++) {
        // Which configuration goes first alternates too: neither always gets the fresher minute.
        const pair = round % 2 === 0 ? (['H0', 'H1'] as const) : (['H1', 'H0'] as const);
        for (const which of pair) {
          if (which === 'H0') without.push(await measured(`(H0) hot path, redis_url unset, round ${round + 1}`, false));
          else withRedis.push(await measured(`(H1) hot path, redis_url set, round ${round + 1}`, true));
        }
      }
      const hotCalls = (await asStats()).calls - callsBefore;
      const m0 = byRps(without);
      const m1 = byRps(withRedis);
      const rpsList = (runs: readonly Run[]) => runs.map((x) => Math.round(x.r.rps)).join(', ');
      const cpuList = (runs: readonly Run[]) => runs.map((x) => r1(x.cpuUs)).join(', ');
      p.row(`(H0) certbound header mode, redis_url unset (median of ${p.rounds}: ${rpsList(without)} req/s; CPU ${cpuList(without)} µs/req)`, m0);
      p.row(`(H1) certbound header mode, redis_url set (median of ${p.rounds}: ${rpsList(withRedis)} req/s; CPU ${cpuList(withRedis)} µs/req)`, m1);
      ratio = m1.r.rps / m0.r.rps;
      const [cpu0, cpu1] = [medianOf(without.map((x) => x.cpuUs)), medianOf(withRedis.map((x) => x.cpuUs))];
      cpuRatio = cpu0 / cpu1;
      const pairRatios = withRedis.map((x, i) => r3(x.r.rps / (without[i] as Run).r.rps));
      const errors = [...without, ...withRedis].reduce((a, x) => a + x.r.non2xx + x.r.socketErrors, 0);
      const touched = withRedis.map((x) => x.redisCommands ?? 0);
      p.check(
        `hot path with redis_url set ≥ ${TARGET_SHARED_RATIO} × without: (H1)/(H0) req/s (medians of ${p.rounds} alternating rounds)`,
        ratio >= TARGET_SHARED_RATIO,
        `${r3(ratio)} (${Math.round(m1.r.rps)} / ${Math.round(m0.r.rps)} req/s; per round ${pairRatios.join(', ')})`,
      );
      console.log(
        `info  (H) gateway CPU per request (medians): redis_url unset ${r1(cpu0)} µs (${cpuList(without)}), set ${r1(cpu1)} µs (${cpuList(withRedis)}); (H0)/(H1) ${r3(cpuRatio)}`,
      );
      p.check(
        'hot path with redis_url set: no Redis command during the measured runs (PING excluded), every request 2xx',
        touched.every((n) => n === 0) && errors === 0,
        `Redis commands per (H1) run ${touched.join(', ')}; ${errors} errors; ${hotCalls} introspection call(s) over the ${2 * p.rounds} processes (expected ${p.rounds + 1}: one per (H0), one for all (H1), later ones read Redis)`,
      );
    }
    return { spread, without, withRedis, ratio, cpuRatio };
  } finally {
    await as.stop();
    await redis.close();
  }
}
