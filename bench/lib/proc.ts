import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
/** Where bench/tsconfig.json compiles src/ and bench/: children run this JavaScript, not tsx. */
const COMPILED_BENCH_DIR = fileURLToPath(new URL('../../node_modules/.cache/certbound-bench/bench/', import.meta.url));

/**
 * A fresh directory on tmpfs (/dev/shm when there is one) for certbound's access logs, standing in
 * for stdout's pipe: on the VM's disk, a run's ~130 MB of log made the kernel's writeback compete
 * with the measured processes for the CPUs (BENCHMARKS.md, fourth round).
 */
export const logDirectory = (prefix: string): string => mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), prefix));

/** Compiles src/ and bench/ (tsc, a few seconds); throws on a type error. */
export function compile(): void {
  const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
  const result = spawnSync(process.execPath, [tsc, '-p', `${BENCH_DIR}tsconfig.json`], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error('tsc failed');
}

export interface Child<T> {
  readonly pid: number;
  /** What the child printed as its first JSON line (its port, counters…). */
  readonly ready: T;
  /** Peak resident set size so far, in MiB (VmHWM). */
  peakRssMb(): number;
  /** Current resident set size, in MiB (VmRSS). */
  rssMb(): number;
  /** SIGTERM, then wait for exit (children exit cleanly so --cpu-prof can write its profile). */
  stop(): Promise<void>;
  /** Resolves with every later JSON line the child prints until it exits. */
  readonly lines: Promise<unknown[]>;
}

function statusField(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Every child still running: killed when the bench exits, however it exits (a phase that throws included). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The JavaScript that bench/<script> compiles to. */
export const compiledScript = (script: string): string => `${COMPILED_BENCH_DIR}${script.replace(/\.ts$/, '.js')}`;

/** Starts `node [nodeArgs] <compiled bench/<script>> <json arg>` and waits for its first JSON line. */
export async function startChild<T>(script: string, arg: unknown, nodeArgs: readonly string[] = []): Promise<Child<T>> {
  const argv = [...nodeArgs, compiledScript(script), JSON.stringify(arg)];
  // BENCH_GATEWAY_CGROUP: a cgroup directory (e.g. a memory cgroup with the pod's limit) that the
  // certbound process joins before node starts, so V8 sizes its heap as it would in the container.
  const cgroup = script === 'servers/gateway.ts' ? process.env.BENCH_GATEWAY_CGROUP : undefined;
  const child: ChildProcess = cgroup
    ? spawn('sh', ['-c', 'echo $$ > "$CGROUP/cgroup.procs" && exec "$0" "$@"', process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CGROUP: cgroup } })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  running.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => (running.delete(child), resolve(code))));
  const rl = createInterface({ input: child.stdout! });
  const later: unknown[] = [];
  let first: ((v: T) => void) | undefined;
  const ready = new Promise<T>((resolve, reject) => {
    first = resolve;
    void exited.then((code) => reject(new Error(`${script} exited (${code}) before it was ready`)));
  });
  rl.on('line', (line) => {
    if (!line.startsWith('{')) return void process.stderr.write(`[${script}] ${line}\n`);
    const value = JSON.parse(line) as unknown;
    if (first) {
      const f = first;
      first = undefined;
      f(value as T);
    } else later.push(value);
  });
  const info = await ready;
  const pid = child.pid as number;
  return {
    pid,
    ready: info,
    peakRssMb: () => statusField(pid, 'VmHWM'),
    rssMb: () => statusField(pid, 'VmRSS'),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
    lines: exited.then(() => later),
  };
}

/** Runs a child to completion and returns the JSON line it printed last. */
export async function runChild<T>(script: string, arg: unknown): Promise<T> {
  const child = await startChild<T>(script, arg);
  return child.ready;
}

/** User + system CPU of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
