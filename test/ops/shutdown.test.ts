import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { stringify } from 'yaml';
import { serve, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';
import { startGateway } from '../helpers/gateway.js';
import { eventually } from './fixtures/ops.js';

// The first test runs the real CLI as a child process (a cold start under tap's loaders takes
// seconds on a busy machine): tap's 30 s per-file default is too tight, and the child has its own
// generous timeout.
t.setTimeout(300_000);

const repo = fileURLToPath(new URL('../..', import.meta.url));
const CHILD_TIMEOUT_MS = 120_000;

t.test('SIGTERM on the real CLI under load: readiness 503, in-flight requests finish, idle connections close, exit 0', async (t) => {
  // A slow upstream: every answer takes 300 ms.
  const upstream = await serve((req, res) => {
    const wait = req.url?.startsWith('/fast') ? 0 : 300;
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'), wait);
  });
  t.teardown(() => upstream.close());
  const dir = mkdtempSync(join(tmpdir(), 'certbound-shutdown-'));
  const configPath = join(dir, 'gateway.yaml');
  writeFileSync(configPath, stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    upstreams: { bank: upstream.url },
    routes: [{ name: 'api', path_prefix: '/', upstream: 'bank', auth: 'none' }],
    shutdown: { grace_period_seconds: 10 },
  }));

  // The test's own loaders (tap's), so that the child's coverage merges cleanly with the parent's.
  // A child that never exits (the bug) is killed after CHILD_TIMEOUT_MS: then the exit assertion fails.
  const child = spawn(process.execPath, [...process.execArgv, 'src/main.ts', 'serve', '--config', configPath], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  // 'exit' can come before the child's last stdout bytes are read; 'close' comes after its stdio ended.
  const outputRead = new Promise<void>((resolve) => child.once('close', () => resolve()));
  t.teardown(() => void child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const logs: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout }).on('line', (line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  // Stops polling at once if the child died instead.
  await eventually(() => logs.some((l) => l.msg === 'started') || child.exitCode !== null || child.signalCode !== null, CHILD_TIMEOUT_MS);
  t.ok(logs.some((l) => l.msg === 'started'), `started ${stderr}`);
  const started = logs.find((l) => l.msg === 'started') as { traffic: { port: number }; admin: { port: number } };
  const base = `http://127.0.0.1:${started.traffic.port}`;
  const admin = `http://127.0.0.1:${started.admin.port}`;
  t.equal((await call(`${admin}/readyz`)).status, 200);

  child.kill('SIGHUP');
  t.ok(await eventually(() => logs.some((l) => l.msg === 'reloaded' && l.trigger === 'SIGHUP')), 'SIGHUP reloads');

  // An idle keep-alive connection: one request, then silence.
  const idle = netConnect(started.traffic.port, '127.0.0.1');
  let idleClosedAt = 0;
  idle.on('close', () => (idleClosedAt = Date.now()));
  idle.on('error', () => undefined);
  idle.write('GET /fast HTTP/1.1\r\nhost: gateway\r\n\r\n');
  await new Promise((resolve) => idle.once('data', resolve));

  // 20 clients, one keep-alive connection each; a client stops once told `connection: close`.
  let signalledAt = 0;
  const failures: string[] = [];
  let completedDuringDrain = 0;
  let toldToClose = 0;
  const CLIENTS = 20;
  const completedBefore = new Array<number>(CLIENTS).fill(0);
  const clients = Array.from({ length: CLIENTS }, async (_, i) => {
    const client = new Client(base, { keepAliveTimeout: 30000, pipelining: 1 });
    try {
      for (;;) {
        const res = await client.request({ method: 'GET', path: '/slow' });
        await res.body.text();
        if (res.statusCode !== 200) failures.push(`status ${res.statusCode}`);
        if (signalledAt > 0) completedDuringDrain++;
        else completedBefore[i]!++;
        if (res.headers.connection === 'close') {
          toldToClose++;
          return;
        }
      }
    } catch (error) {
      failures.push(String(error));
    } finally {
      await client.close().catch(() => undefined);
    }
  });
  // Every client has its connection open and has had an answer on it (it sends the next request
  // at once): so requests are in flight when SIGTERM lands, however slow the machine.
  t.ok(await eventually(() => completedBefore.every((n) => n > 0) || failures.length > 0, 60_000), 'every client got a first answer');
  t.same(failures, [], 'no request failed before SIGTERM');
  signalledAt = Date.now();
  child.kill('SIGTERM');
  // The signal lands asynchronously: poll until readiness turns (the drain lasts ≥ one slow response).
  let readyz = await call(`${admin}/readyz`);
  while (readyz.status === 200) readyz = await call(`${admin}/readyz`);
  t.equal(readyz.status, 503, '/readyz is 503 while draining');
  t.equal(readyz.text, 'not ready: draining\n');
  await Promise.all(clients);
  const exit = await exited;
  await outputRead;

  t.same(failures, [], 'no request failed');
  t.equal(toldToClose, CLIENTS, 'every client was told to close its connection');
  t.ok(completedDuringDrain >= CLIENTS, `${completedDuringDrain} requests completed during the drain`);
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'exit code 0');
  // `drained: true` below is the proof that the drain ended by itself; this only says the process
  // then exited inside the grace period (the bug, waiting for it to run out, takes 10 s or more).
  t.ok(exit.at - signalledAt < 10_000, `exited ${exit.at - signalledAt} ms after SIGTERM, inside the 10 s grace period`);
  t.ok(idleClosedAt > 0 && idleClosedAt <= exit.at, 'the idle keep-alive connection was closed');
  const draining = logs.find((l) => l.msg === 'draining');
  t.match(draining, { grace_period_seconds: 10 });
  t.ok((draining?.in_flight as number) > 0, 'requests were in flight at SIGTERM');
  t.match(logs.at(-1), { msg: 'stopped', drained: true });
  t.equal(stderr, '');
});

t.test('the grace period bounds the drain: a request still running when it ends is cut', async (t) => {
  const upstream = await startUpstream();
  t.teardown(() => upstream.close());
  const gw = await startGateway({
    upstreams: { bank: { url: upstream.url, timeout_ms: 60000 } },
    routes: [{ name: 'api', path_prefix: '/', upstream: 'bank', auth: 'none' }],
    shutdown: { grace_period_seconds: 1 },
  });
  const hanging = call(`${gw.url}/never/slow`).then((r) => `status ${r.status}`, (e: unknown) => `error ${String(e)}`);
  await eventually(() => upstream.seen.some((s) => s.url === '/never/slow'));
  const started = Date.now();
  await gw.close();
  const took = Date.now() - started;
  // Not before the grace period (Date.now steps in whole ms); the bug, an unbounded drain, would
  // wait for the upstream's 60 s timeout or forever.
  t.ok(took >= 950 && took < 30_000, `drain took ${took} ms with a 1 s grace period`);
  t.match(await hanging, /^error/, 'the request still running is cut');
  t.match(gw.logs.find((l) => l.msg === 'grace period over; closing what is left'), { level: 'warn', in_flight: 1 });
  t.match(gw.logs.at(-1), { msg: 'stopped', drained: false });
});
