// The CLI as a shell sees it: real `certbound` processes, one per exit status (0, 2, 1), with
// stdout and stderr kept apart. Every other command's output is checked in cli.test.ts, from a
// single child. The children run src/main.ts with the test's own loaders (process.execArgv,
// tap's), so their coverage merges with the parent's.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// No wall-clock budget a busy machine can miss: each child gets 2 minutes (it needs ~3 s when
// idle) and the file more than all of them together, instead of tap's default of 30 s per file.
const CHILD_TIMEOUT_MS = 120_000;
const CHILDREN = 4;
t.setTimeout(CHILDREN * CHILD_TIMEOUT_MS + 60_000);

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'certbound-cli-process-'));

type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };
function certbound(args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env.CERTBOUND_CONFIG;
  return new Promise((resolve) => {
    execFile(process.execPath, [...process.execArgv, join(root, 'src/main.ts'), ...args], { cwd: dir, env, timeout: CHILD_TIMEOUT_MS }, (error, stdout, stderr) => {
      // error.code is the exit status; a child killed by the timeout has a signal instead.
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, signal: error?.signal ?? null, stdout, stderr });
    });
  });
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

t.test('exit 0: --help on stdout, nothing on stderr', async (t) => {
  const help = await certbound(['--help']);
  t.same({ code: help.code, signal: help.signal }, { code: 0, signal: null });
  t.match(help.stdout, /^Usage: certbound \[serve\] \[--config FILE\]/);
  t.equal(help.stderr, '');
});

t.test('exit 2: a bad flag, the error and the usage on stderr', async (t) => {
  const flag = await certbound(['--nope']);
  t.same({ code: flag.code, signal: flag.signal }, { code: 2, signal: null });
  t.match(flag.stderr, /--nope[^]*\n\nUsage: certbound/);
  t.equal(flag.stdout, '');
});

t.test('exit 1: serve with a bad config, the same messages as validate, nothing listening', async (t) => {
  const port = await freePort();
  writeFileSync(join(dir, 'bad-serve.yaml'), `listen: { host: 127.0.0.1, port: ${port} }
upstreams: { bank-api: "http://127.0.0.1:1" }
routes:
  - { name: a, path_prefix: /a, upstream: bank-api, auth: none }
  - { name: b, path_prefix: /b, upstream: bank-api, auth: none }
  - { name: c, path_prefix: /c, upstream: bank, auth: none }
  - { name: d, path_prefix: /d, upstream: bank-api, auth: none, secret: "\${UNSET_FOR_TEST}" }
`);
  const res = await certbound(['serve', '--config', 'bad-serve.yaml']);
  t.same({ code: res.code, signal: res.signal }, { code: 1, signal: null });
  t.same(res.stderr.trim().split('\n'), [
    'routes[3].secret: environment variable UNSET_FOR_TEST is not set',
    'routes[3].secret: unknown key',
    'routes[2].upstream: unknown upstream "bank"',
  ]);
  t.equal(res.stdout, '');
  const reachable = await new Promise<boolean>((resolve) => {
    const s = createServer().once('error', () => resolve(true)).listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
  t.equal(reachable, false, 'the port was never bound');
});

t.test('a bug that escapes every request path is logged and counted; the process keeps serving', async (t) => {
  const [port, admin] = [await freePort(), await freePort()];
  writeFileSync(join(dir, 'guarded.yaml'), `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${admin} }
upstreams: { bank: "http://127.0.0.1:1" }
routes:
  - { name: open, path_prefix: /, upstream: bank, auth: none }
reload: { watch: false }
logging: { flush_interval_ms: 0 }
`);
  // Stands in for a bug: on SIGUSR2, an exception thrown from a timer, and a rejection nobody handles.
  const bug = 'process.on("SIGUSR2", () => { setImmediate(() => { throw new Error("injected bug"); }); void Promise.reject(new Error("injected rejection")); });';
  const env = { ...process.env };
  delete env.CERTBOUND_CONFIG;
  const child = spawn(process.execPath, [...process.execArgv, '--import', `data:text/javascript,${encodeURIComponent(bug)}`, join(root, 'src/main.ts'), 'serve', '--config', 'guarded.yaml'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const get = async (path: string): Promise<{ status: number; text: string } | undefined> => {
    try {
      const res = await fetch(`http://127.0.0.1:${admin}${path}`);
      return { status: res.status, text: await res.text() };
    } catch {
      return undefined;
    }
  };
  const until = async (check: () => boolean | Promise<boolean>): Promise<void> => {
    while (!(await check()) && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  };
  await until(async () => (await get('/healthz'))?.status === 200);
  child.kill('SIGUSR2');
  await until(() => stdout.includes('unhandled rejection; still serving') && stdout.includes('uncaught exception; still serving'));
  t.equal(child.exitCode, null, 'still running');
  t.equal((await get('/healthz'))?.status, 200, 'still serving');
  t.match((await get('/metrics'))?.text, /^certbound_uncaught_errors_total 2$/m);
  const lines = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg?: string; level?: string; err?: { message?: string } });
  t.match(lines.find((l) => l.msg === 'uncaught exception; still serving'), { level: 'error', err: { message: 'injected bug' } });
  t.match(lines.find((l) => l.msg === 'unhandled rejection; still serving'), { level: 'error', err: { message: 'injected rejection' } });
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and still shuts down cleanly');
  clearTimeout(killer);
});
