// `npm run demo -- --once` and `certbound validate --config gateway.yaml`, as child processes.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeDemoPki } from '../fixtures/pki.js';
import { REPOSITORY_ROOT } from '../../demo/stack.js';

// Five child processes, each a cold tsx start: ~9 s on an idle machine, far more on a busy one.
// tap's per-file default (30 s) would cut them short; each child has its own generous timeout.
t.setTimeout(300_000);

const TSX = resolve(REPOSITORY_ROOT, 'node_modules/tsx/dist/cli.mjs');
/** Per child: a hung child (the bug) is killed at this point; a working one is done in seconds. */
const CHILD_TIMEOUT_MS = 120_000;

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `tsx <args>` from the repository root, with `env` on top of a clean environment. */
function tsx(args: string[], env: Record<string, string>, timeoutMs: number): Promise<Exit> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [TSX, ...args], {
      cwd: REPOSITORY_ROOT,
      // The demo runs under tsx, as `npm run demo` does; tap would still record its coverage (its
      // spawn hook re-adds its loader), and tsx's transpiled code for the same files would corrupt
      // the merge with the in-process tests' coverage. So this child records none.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', _TAPJS_PROCESSINFO_COV_EXCLUDE_: '/./', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

t.test('npm run demo -- --once: every step ✔, exit 0', async (t) => {
  const ports = { CERTBOUND_PORT: '0', CERTBOUND_ADMIN_PORT: '0', CERTBOUND_AS_PORT: '0', CERTBOUND_BANK_PORT: '0' };
  const run = await tsx(['demo/run.ts', '--once'], ports, CHILD_TIMEOUT_MS);
  t.equal(run.code, 0, run.stdout + run.stderr);
  t.equal(run.signal, null);
  const verdicts = run.stdout.split('\n').filter((l) => /[✔✘]\s*$/.test(l));
  t.equal(verdicts.length, 12, 'eleven requests and the log check');
  t.ok(verdicts.every((l) => l.endsWith('✔')), verdicts.join('\n'));
  t.notMatch(run.stdout, /✘/);
  t.match(run.stdout, /expected 401 invalid_token, got 401 invalid_token/);
  t.match(run.stdout, /expected 403 insufficient_scope, got 403 insufficient_scope/);
  t.match(run.stdout, /expected 400 invalid_request, got 400 invalid_request/);
  // DPoP (RFC 9449): a token bound to a key, usable with that key's proofs only.
  t.match(run.stdout, /token_type "DPoP"; the authorization server received the DPoP header as sent/);
  t.match(run.stdout, /^10\. A DPoP request.*\n.*\n {3}expected 200, got 200 {2}✔$/m);
  t.match(run.stdout, /^11\. The same DPoP token with a proof signed by another key.*\n.*\n {3}expected 401 invalid_token, got 401 invalid_token {2}✔$/m);
  t.match(run.stdout, /WWW-Authenticate: DPoP realm="certbound", error="invalid_token", error_description="DPoP proof key does not match the key bound to the access token", algs="ES256 PS256 EdDSA"/);
  t.match(run.stdout, /Every step matched\./);
  t.notMatch(run.stdout, /Try it yourself/, '--once does not wait for Ctrl-C');
  const pkiDir = /PKI\s+(\S+)/.exec(run.stdout)?.[1];
  t.ok(pkiDir);
  t.notOk(pkiDir !== undefined && existsSync(pkiDir), 'the throw-away PKI is deleted');
});

t.test('npm run demo rejects unknown arguments', async (t) => {
  const run = await tsx(['demo/run.ts', '--nope'], {}, CHILD_TIMEOUT_MS);
  t.equal(run.code, 2);
  t.match(run.stderr, /unknown argument: --nope/);
});

t.test('certbound validate --config gateway.yaml', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await writeDemoPki(dir);

  const valid = await tsx(['src/main.ts', 'validate', '--config', 'gateway.yaml'], { CERTBOUND_TLS_DIR: dir, CERTBOUND_CLIENT_SECRET: 'validate-test-secret' }, CHILD_TIMEOUT_MS);
  t.equal(valid.code, 0, valid.stderr);
  t.equal(valid.stdout, 'gateway.yaml: valid (6 routes)\n');
  t.equal(valid.stderr, '');

  const nowhere = await tsx(['src/main.ts', 'validate', '--config', 'gateway.yaml'], { CERTBOUND_TLS_DIR: join(dir, 'missing') }, CHILD_TIMEOUT_MS);
  t.equal(nowhere.code, 1);
  t.equal(nowhere.stdout, '');
  const problems = nowhere.stderr.trim().split('\n');
  t.same(problems.sort(), [
    'authorization_server.client_secret: environment variable CERTBOUND_CLIENT_SECRET is not set',
    `listen.tls.cert_file: cannot read ${join(dir, 'missing', 'server.crt')}: ENOENT`,
    `listen.tls.client_ca_file: cannot read ${join(dir, 'missing', 'ca.crt')}: ENOENT`,
    `listen.tls.key_file: cannot read ${join(dir, 'missing', 'server.key')}: ENOENT`,
  ].sort(), 'every problem, each with its key path');

  const badPort = await tsx(['src/main.ts', 'validate', '--config', 'gateway.yaml'], { CERTBOUND_TLS_DIR: dir, CERTBOUND_CLIENT_SECRET: 'x', CERTBOUND_PORT: 'eighty', CERTBOUND_AS_URL: 'ftp://as' }, CHILD_TIMEOUT_MS);
  t.equal(badPort.code, 1);
  t.match(badPort.stderr, /^listen\.port: must be an integer from 0 to 65535$/m);
  t.match(badPort.stderr, /^authorization_server\.issuer: "ftp:\/\/as" is not an http\(s\) URL$/m);
  t.match(badPort.stderr, /^upstreams\.authorization-server\.url: "ftp:\/\/as" is not an http\(s\) URL$/m);
});
