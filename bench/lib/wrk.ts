import { spawn, spawnSync } from 'node:child_process';
import { runChild } from './proc.js';

export interface WrkResult {
  readonly rps: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  readonly raw: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

function ms(text: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text ?? '');
  return m ? Number(m[1]) * (UNIT_MS[m[2] as string] ?? Number.NaN) : Number.NaN;
}

/** Whether wrk is on the PATH; without it (or with BENCH_TOOL=autocannon), closed-loop runs use autocannon (a devDependency). */
export const HAVE_WRK = process.env.BENCH_TOOL !== 'autocannon' && spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
/** The closed-loop tool this machine uses, for the results table. */
export const CLOSED_LOOP_TOOL = HAVE_WRK ? 'wrk' : 'autocannon';

/**
 * wrk, one thread (the server under test needs the other core), closed loop, with its latency
 * distribution; autocannon in a child process when wrk is not installed.
 */
export async function wrk(url: string, opts: { connections: number; seconds: number; headers?: Readonly<Record<string, string>> }): Promise<WrkResult> {
  if (!HAVE_WRK) {
    const r = await runChild<Omit<WrkResult, 'raw'>>('load/autocannon.ts', { url, connections: opts.connections, seconds: opts.seconds, headers: opts.headers ?? {} });
    return { ...r, raw: JSON.stringify(r) };
  }
  return runWrk(url, opts);
}

function runWrk(url: string, opts: { connections: number; seconds: number; headers?: Readonly<Record<string, string>> }): Promise<WrkResult> {
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let raw = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (raw += c));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}:\n${raw}`));
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
      resolve({
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(raw)?.[1]),
        requests: Number(/(\d+) requests in/.exec(raw)?.[1]),
        p50Ms: ms(/^\s+50%\s+(\S+)/m.exec(raw)?.[1]),
        p99Ms: ms(/^\s+99%\s+(\S+)/m.exec(raw)?.[1]),
        non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(raw)?.[1] ?? 0),
        socketErrors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
        raw,
      });
    });
  });
}
