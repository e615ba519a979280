// Every CLI command's output and exit code, from ONE child process: the child loads src/main.ts
// once with the test's own loaders (tap's TypeScript and coverage hooks, so its coverage of
// src/main.ts merges with the parent's) and calls main(argv) once per case, capturing what it
// writes and the exit code it sets. A child costs about 2.7 s of loader start-up on a 2-vCPU VM,
// so this file starts one instead of ten. test/integration/cli-process.test.ts checks, with real
// `certbound` processes, that those exit codes and streams reach the shell.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// No wall-clock budget a busy machine can miss: the child gets 2 minutes (it needs ~3 s when
// idle) and the file more than that, instead of tap's default of 30 s per file.
const CHILD_TIMEOUT_MS = 120_000;
t.setTimeout(CHILD_TIMEOUT_MS + 60_000);

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'certbound-cli-'));
const empty = join(dir, 'empty'); // a working directory without gateway.yaml
mkdirSync(empty);

type Case = { args: string[]; cwd?: string; env?: Record<string, string> };
type Result = { code: number; stdout: string; stderr: string; threw?: string };

// Runs in the child (plain JavaScript, `--input-type=module`). Cases in argv[1], results to argv[2].
const driver = `
import { readFileSync, writeFileSync } from 'node:fs';
const [, casesFile, resultsFile] = process.argv;
const { main: mainUrl, cases } = JSON.parse(readFileSync(casesFile, 'utf8'));
let stdout = '', stderr = '';
const capture = (append) => (chunk, encoding, callback) => {
  append(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
  const cb = typeof encoding === 'function' ? encoding : callback;
  if (typeof cb === 'function') process.nextTick(cb);
  return true;
};
process.stdout.write = capture((s) => (stdout += s));
process.stderr.write = capture((s) => (stderr += s));
// Importing src/main.ts runs main(process.argv.slice(2)) once: make that a harmless --version.
process.argv = [process.argv[0], 'certbound', '--version'];
const { main } = await import(mainUrl);
const home = process.cwd();
const results = [];
for (const c of cases) {
  stdout = stderr = '';
  process.exitCode = undefined;
  process.chdir(c.cwd ?? home);
  const saved = { ...process.env };
  Object.assign(process.env, c.env ?? {});
  let threw;
  try {
    await main(c.args);
  } catch (error) {
    threw = String(error && error.stack || error);
  }
  for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
  Object.assign(process.env, saved);
  results.push({ code: process.exitCode ?? 0, stdout, stderr, threw });
}
process.exitCode = 0;
writeFileSync(resultsFile, JSON.stringify(results));
`;

function runAll(cases: Case[]): Promise<Result[]> {
  const casesFile = join(dir, 'cases.json');
  const resultsFile = join(dir, 'results.json');
  writeFileSync(casesFile, JSON.stringify({ main: pathToFileURL(join(root, 'src/main.ts')).href, cases }));
  const env = { ...process.env };
  delete env.CERTBOUND_CONFIG; // the lookup order is under test: start from none
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...process.execArgv, '--input-type=module', '--eval', driver, casesFile, resultsFile],
      { cwd: dir, env, timeout: CHILD_TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`CLI driver failed (${error.killed ? `killed after ${CHILD_TIMEOUT_MS} ms` : `exit ${error.code}`}):\n${stdout}${stderr}`));
        resolve(JSON.parse(readFileSync(resultsFile, 'utf8')) as Result[]);
      },
    );
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

// What passed validate before and then broke every request (or every start): each must fail in
// validate and in serve alike, with its key path.
const { createCa } = await import('../fixtures/pki.js');
const pkiCa = await createCa({ commonName: 'CLI CA' });
const [serverA, serverB] = await Promise.all([
  pkiCa.issue({ commonName: 'a', kind: 'server', keyAlgorithm: 'rsa' }),
  pkiCa.issue({ commonName: 'b', kind: 'server', keyAlgorithm: 'rsa' }),
]);
writeFileSync(join(dir, 'a.crt'), serverA.certPem);
writeFileSync(join(dir, 'a.key'), serverA.keyPem);
writeFileSync(join(dir, 'b.key'), serverB.keyPem);
const open = `upstreams: { bank: "http://127.0.0.1:1" }
routes:
  - { name: open, path_prefix: /, upstream: bank, auth: none }
`;
const breaking = {
  mismatch: [`listen: { host: 127.0.0.1, port: 0, tls: { cert_file: a.crt, key_file: b.key } }\n${open}`, `listen.tls.key_file: ${join(dir, 'b.key')} is not the private key of cert_file's certificate`],
  realm: [`realm: "bank\\r"\n${open}`, 'realm: must be printable ASCII without " or \\'],
  algorithm: [`authorization_server:
  issuer: https://as.example
  introspection_endpoint: https://as.example/introspect
  client_id: c
  client_auth_method: private_key_jwt
  private_key_file: a.key
  signing_algorithm: PS257
${open}`, 'authorization_server.signing_algorithm: must be one of PS256, PS384, PS512, RS256, RS384, RS512, ES256, ES384, ES512, EdDSA (got "PS257")'],
} as const;
for (const [name, [text]] of Object.entries(breaking)) writeFileSync(join(dir, `${name}.yaml`), text);
writeFileSync(join(dir, 'good.yaml'), good(await freePort()));
writeFileSync(join(dir, 'env.yaml'), good(await freePort()));
writeFileSync(join(dir, 'gateway.yaml'), good(await freePort()));

const cases = {
  help: { args: ['--help'] },
  version: { args: ['--version'] },
  unknown: { args: ['frobnicate'] },
  flag: { args: ['--nope'] },
  valid: { args: ['validate', '--config', 'good.yaml'] },
  invalid: { args: ['validate', '--config', 'bad.yaml'] },
  missing: { args: ['validate', '--config', 'nope.yaml'] },
  fromEnv: { args: ['validate'], cwd: empty, env: { CERTBOUND_CONFIG: join(dir, 'env.yaml') } },
  noDefault: { args: ['validate'], cwd: empty },
  fromDefault: { args: ['validate'] },
  ...Object.fromEntries(Object.keys(breaking).flatMap((name) => [
    [`validate-${name}`, { args: ['validate', '--config', `${name}.yaml`] }],
    [`serve-${name}`, { args: ['serve', '--config', `${name}.yaml`] }],
  ])),
} satisfies Record<string, Case>;
const names = Object.keys(cases) as Array<keyof typeof cases>;
const results = await runAll(names.map((name) => cases[name]));
const run = Object.fromEntries(names.map((name, i) => [name, results[i] as Result])) as Record<keyof typeof cases, Result>;
for (const name of names) t.equal(run[name].threw, undefined, `${name}: main(${JSON.stringify(cases[name].args)}) did not throw`);

t.test('--help and --version', async (t) => {
  t.equal(run.help.code, 0);
  t.match(run.help.stdout, /^Usage: certbound \[serve\] \[--config FILE\]/);
  t.equal(run.version.code, 0);
  t.equal(run.version.stdout.trim(), (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version);
  t.equal(run.unknown.code, 2);
  t.match(run.unknown.stderr, /unknown command: frobnicate/);
  t.equal(run.flag.code, 2);
  t.match(run.flag.stderr, /--nope/);
});

t.test('validate: exit 0 on a valid file, 1 with every problem on its own line', async (t) => {
  t.equal(run.valid.code, 0);
  t.match(run.valid.stdout, /good\.yaml: valid \(1 routes\)/);
  t.equal(run.invalid.code, 1);
  t.same(run.invalid.stderr.trim().split('\n'), [
    'routes[3].secret: environment variable UNSET_FOR_TEST is not set',
    'routes[3].secret: unknown key',
    'routes[2].upstream: unknown upstream "bank"',
  ]);
  t.equal(run.missing.code, 1);
  t.match(run.missing.stderr, /nope\.yaml: cannot read \(ENOENT\)/);
});

t.test('config from $CERTBOUND_CONFIG, else ./gateway.yaml', async (t) => {
  t.equal(run.fromEnv.code, 0, run.fromEnv.stderr);
  t.match(run.fromEnv.stdout, /env\.yaml: valid/);
  t.equal(run.noDefault.code, 1);
  t.match(run.noDefault.stderr, /gateway\.yaml: cannot read/);
  t.equal(run.fromDefault.code, 0, run.fromDefault.stderr);
  t.match(run.fromDefault.stdout, /^gateway\.yaml: valid/);
});

t.test('what would break every request later fails validate and serve alike, with its key path', async (t) => {
  for (const [name, [, problem]] of Object.entries(breaking)) {
    for (const command of ['validate', 'serve']) {
      const result = run[`${command}-${name}` as keyof typeof run];
      t.equal(result.code, 1, `${command} ${name}: exit 1`);
      t.same(result.stderr.trim().split('\n'), [problem], `${command} ${name}: the problem with its key path`);
      t.equal(result.stdout, '', `${command} ${name}: nothing started`);
    }
  }
});
