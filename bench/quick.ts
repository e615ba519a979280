// Ad-hoc A/B runs while tuning (not part of `npm run bench`): `npx tsx bench/quick.ts [scenario…]`.
// Scenarios: pass, none-warn, none-info, cbt-warn, cbt-info; `name:X` runs the server with CB_EXP=X
// (for a temporary experiment switch in src/). A repeated scenario is run again (alternate them:
// `pass cbt-info pass cbt-info …`); the medians and the ratio to `pass` are printed at the end.
// BENCH_SECONDS (5), BENCH_WARMUP (2), BENCH_LOG_FILE (default: a file per scenario on /dev/shm); `cbt-info:devnull` logs to /dev/null.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDemoPki } from '../test/fixtures/pki.js';
import { compile, cpuSeconds, logDirectory, startChild } from './lib/proc.js';
import { wrk } from './lib/wrk.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2);
const PROFILE_DIR = process.env.BENCH_PROFILE;
const scenarios = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['pass', 'none-warn', 'cbt-warn', 'cbt-info'];
if (!process.env.BENCH_NO_COMPILE) compile();
const dir = mkdtempSync(join(tmpdir(), 'certbound-quick-'));
// Access logs on tmpfs (logDirectory), deleted after each run.
const logDir = logDirectory('certbound-quick-logs-');
const pki = await writeDemoPki(join(dir, 'pki'));
const upstream = await startChild<{ port: number }>('servers/upstream.ts', {});
const as = await startChild<{ port: number }>('servers/as.ts', { thumbprint: pki.tppA.thumbprint, delayMs: 5 });
const upstreamUrl = `http://127.0.0.1:${upstream.ready.port}`;
const headers = { authorization: 'Bearer hot-token-0123456789abcdefghijklmnopqrstuvw', 'x-wso2-client-certificate': encodeURIComponent(pki.tppA.certPem) };

/** Context switches of a process, all its threads (voluntary + involuntary). */
function contextSwitches(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    for (const m of status.matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
  }
  return n;
}


/** Busy CPU time of the whole machine (all cores, everything but idle and iowait), in seconds. */
function machineBusySeconds(): number {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return (total - (fields[3] ?? 0) - (fields[4] ?? 0)) / 100;
}

const results = new Map<string, { rps: number; cpu: number }[]>();
for (const name of scenarios) {
  // `cbt-info:X`: the same scenario with CB_EXP=X in the server's environment (tuning experiments).
  const [base, experiment] = name.split(':') as [string, string | undefined];
  if (experiment) process.env.CB_EXP = experiment;
  else delete process.env.CB_EXP;
  const [auth, level] = base.split('-') as [string, string];
  const extraArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const nodeArgs = PROFILE_DIR ? [...extraArgs, process.env.BENCH_HEAP ? '--heap-prof' : '--cpu-prof', process.env.BENCH_HEAP ? '--heap-prof-dir' : '--cpu-prof-dir', join(PROFILE_DIR, name)] : extraArgs;
  const server = auth === 'pass'
    ? await startChild<{ port: number }>('servers/passthrough.ts', { upstream: upstreamUrl }, nodeArgs)
    : await startChild<{ port: number }>('servers/gateway.ts', {
        baseDir: dir,
        logFile: experiment === 'devnull' ? '/dev/null' : (process.env.BENCH_LOG_FILE ?? join(logDir, `${name.replace(':', '-')}.log`)),
        doc: {
          listen: { host: '127.0.0.1', port: 0 },
          admin: { host: '127.0.0.1', port: 0 },
          logging: { level },
          shutdown: { grace_period_seconds: 1 },
          client_certificate: { source: 'header', header: 'x-wso2-client-certificate', client_certificate_encode: true, trusted_proxies: ['127.0.0.1/32'], verify: { ca_file: pki.files['ca.crt'] } },
          authorization_server: { issuer: 'https://as.bench', introspection_endpoint: `http://127.0.0.1:${as.ready.port}/introspect`, client_id: 'certbound', client_secret: 'bench', cache: { max_ttl_seconds: 3600 } },
          upstreams: { bank: upstreamUrl },
          routes: [{ name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET'], upstream: 'bank', auth: auth === 'none' ? 'none' : 'certificate_bound_token', ...(auth === 'none' ? {} : { scopes: ['accounts'] }) }],
        },
      }, nodeArgs);
  const url = `http://127.0.0.1:${server.ready.port}/ob/aisp/accounts`;
  await wrk(url, { connections: 50, seconds: WARMUP, headers });
  // BENCH_STRACE=1: syscall counts of the server process during the measured run.
  const strace = process.env.BENCH_STRACE ? spawn('strace', ['-c', '-f', '-p', String(server.pid), '-o', join(dir, `${name}.strace`)], { stdio: 'inherit' }) : undefined;
  // BENCH_PERF=1: `perf record` of the server process during the measured run (with BENCH_NODE_ARGS=--perf-basic-prof for JS names).
  const perf = process.env.BENCH_PERF ? spawn('perf', ['record', '-F', '1999', '-g', '-p', String(server.pid), '-o', join(dir, `${name}.perf`)], { stdio: 'ignore' }) : undefined;
  const cpuBefore = cpuSeconds(server.pid);
  const upstreamBefore = cpuSeconds(upstream.pid);
  const machineBefore = machineBusySeconds();
  const switchesBefore = contextSwitches(server.pid);
  const r = await wrk(url, { connections: 50, seconds: SECONDS, headers });
  const cpuPerRequestUs = ((cpuSeconds(server.pid) - cpuBefore) / r.requests) * 1e6;
  const upstreamUs = ((cpuSeconds(upstream.pid) - upstreamBefore) / r.requests) * 1e6;
  const machineUs = ((machineBusySeconds() - machineBefore) / r.requests) * 1e6;
  const switchesPer1000 = ((contextSwitches(server.pid) - switchesBefore) / r.requests) * 1000;
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((resolve) => perf.once('exit', resolve));
    console.log(`${name}: perf data in ${join(dir, `${name}.perf`)}`);
  }
  if (strace) {
    strace.kill('SIGINT');
    await new Promise((resolve) => strace.once('exit', resolve));
    console.log(`${name}: ${r.requests} requests\n${readFileSync(join(dir, `${name}.strace`), 'utf8')}`);
  }
  results.set(name, [...(results.get(name) ?? []), { rps: r.rps, cpu: cpuPerRequestUs }]);
  console.log(`${name.padEnd(10)} ${Math.round(r.rps).toString().padStart(6)} req/s  ${cpuPerRequestUs.toFixed(1)} µs CPU/request (upstream ${upstreamUs.toFixed(1)}, machine ${machineUs.toFixed(1)})  ${switchesPer1000.toFixed(0)} cs/1000 req  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  errors ${r.non2xx + r.socketErrors}  rss ${Math.round(server.peakRssMb())} MiB`);
  await server.stop();
  for (const f of readdirSync(logDir)) rmSync(join(logDir, f), { force: true });
}
rmSync(logDir, { recursive: true, force: true });
await upstream.stop();
await as.stop();
const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? Number.NaN;
const passRps = median((results.get('pass') ?? []).map((x) => x.rps));
for (const [name, runs] of results) {
  const rps = median(runs.map((x) => x.rps));
  console.log(`median ${name.padEnd(14)} ${Math.round(rps).toString().padStart(6)} req/s  ${median(runs.map((x) => x.cpu)).toFixed(1)} µs CPU/request  ×${runs.length}${Number.isNaN(passRps) ? '' : `  ratio ${(rps / passRps).toFixed(3)}`}`);
}
