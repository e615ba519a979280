import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'certbound-cli-'));

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // The test's own loaders (tap's): the child's coverage then merges with the parent's cleanly.
    execFile(process.execPath, [...process.execArgv, join(root, 'src/main.ts'), ...args], { cwd: dir, env: { ...process.env, ...env }, timeout: 20000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
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

const good = (port: number) => `listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: 0 }
upstreams: { bank: "http://127.0.0.1:1" }
routes:
  - { name: open, path_prefix: /, upstream: bank, auth: none }
`;
const bad = `upstreams: { bank-api: "http://127.0.0.1:1" }
routes:
  - { name: a, path_prefix: /a, upstream: bank-api, auth: none }
  - { name: b, path_prefix: /b, upstream: bank-api, auth: none }
  - { name: c, path_prefix: /c, upstream: bank, auth: none }
  - { name: d, path_prefix: /d, upstream: bank-api, auth: none, secret: "\${UNSET_FOR_TEST}" }
`;
writeFileSync(join(dir, 'bad.yaml'), bad);

t.test('--help and --version', async (t) => {
  const help = await cli(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: certbound \[serve\] \[--config FILE\]/);
  const version = await cli(['--version']);
  t.equal(version.code, 0);
  t.equal(version.stdout.trim(), (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version);
  const unknown = await cli(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command: frobnicate/);
  const flag = await cli(['--nope']);
  t.equal(flag.code, 2);
});

t.test('validate: exit 0 on a valid file, 1 with every problem on its own line', async (t) => {
  writeFileSync(join(dir, 'good.yaml'), good(await freePort()));
  const ok = await cli(['validate', '--config', 'good.yaml']);
  t.equal(ok.code, 0);
  t.match(ok.stdout, /good\.yaml: valid \(1 routes\)/);
  const fail = await cli(['validate', '--config', 'bad.yaml']);
  t.equal(fail.code, 1);
  t.same(fail.stderr.trim().split('\n'), [
    'routes[3].secret: environment variable UNSET_FOR_TEST is not set',
    'routes[2].upstream: unknown upstream "bank"',
    'routes[3].secret: unknown key',
  ]);
  const missing = await cli(['validate', '--config', 'nope.yaml']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /nope\.yaml: cannot read \(ENOENT\)/);
});

t.test('config from $CERTBOUND_CONFIG, else ./gateway.yaml', async (t) => {
  writeFileSync(join(dir, 'env.yaml'), good(await freePort()));
  t.equal((await cli(['validate'], { CERTBOUND_CONFIG: 'env.yaml' })).code, 0);
  const none = await cli(['validate']);
  t.equal(none.code, 1);
  t.match(none.stderr, /gateway\.yaml: cannot read/);
  writeFileSync(join(dir, 'gateway.yaml'), good(await freePort()));
  t.equal((await cli(['validate'])).code, 0);
});

t.test('serve with a bad config: same messages, exit 1, nothing listening', async (t) => {
  const port = await freePort();
  writeFileSync(join(dir, 'bad-serve.yaml'), bad.replace('upstreams:', `listen: { host: 127.0.0.1, port: ${port} }\nupstreams:`));
  const res = await cli(['serve', '--config', 'bad-serve.yaml']);
  t.equal(res.code, 1);
  t.match(res.stderr, /routes\[2\]\.upstream: unknown upstream "bank"/);
  const reachable = await new Promise<boolean>((resolve) => {
    const s = createServer().once('error', () => resolve(true)).listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
  t.equal(reachable, false, 'the port was never bound');
});
