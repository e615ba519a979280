// Issue 14's headline cases with three real `certbound serve` processes (not runtimes in this
// process) sharing one redis-server: introspection calls per distinct token, single flight across
// processes, and revocation fan-out. The other cases (what Redis holds, Redis killed or silent,
// DPoP replays, a late replica) are in shared-state.test.ts, on in-process runtimes.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { freePort, startRedis } from '../fixtures/redis.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';
import { checkFanOut, until, type RevocationCase } from '../helpers/fan-out.js';

// Three Node processes starting (seconds each on a busy machine) and up to a second of fan-out per case.
const START_MS = 120_000;
t.setTimeout(3 * START_MS + 120_000);

const root = new URL('../../', import.meta.url).pathname;
const ca = await createCa({ commonName: 'Shared CA' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-shared-processes-'));
const ADMIN = 'admin-secret-0123456789abcdefghijklmnop';
writeFileSync(join(dir, 'shared-secret'), 'shared-secret-0123456789abcdefghijklmn\n');
writeFileSync(join(dir, 'admin-secret'), `${ADMIN}\n`);

const now = Math.floor(Date.now() / 1000);
const tokens = new Map<string, Record<string, unknown>>();
const bound = (thumbprint: string, clientId: string) => ({ active: true, client_id: clientId, scope: 'accounts', exp: now + 600, iat: now, cnf: { 'x5t#S256': thumbprint } });
for (let i = 0; i < 300; i++) tokens.set(`spread-${i}`, bound(tppA.thumbprint, 'tpp-spread'));
tokens.set('crowd', bound(tppA.thumbprint, 'tpp-a'));
tokens.set('byToken', bound(tppA.thumbprint, 'tpp-a'));
tokens.set('byClient', bound(tppA.thumbprint, 'tpp-gone'));
tokens.set('byCertificate', bound(tppB.thumbprint, 'tpp-b'));
tokens.set('kept', bound(tppA.thumbprint, 'tpp-a'));
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
const redis = await startRedis();

interface Replica {
  readonly url: string;
  readonly adminUrl: string;
  readonly child: ChildProcess;
}

async function startReplica(n: number): Promise<Replica> {
  const [port, admin] = [await freePort(), await freePort()];
  const file = join(dir, `replica-${n}.yaml`);
  // JSON is YAML: the file certbound reads, as an operator would write it.
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: admin, revocation_secret_file: 'admin-secret' },
    logging: { level: 'warn' },
    client_certificate: { source: 'header', header: 'x-client-cert', client_certificate_encode: true, trusted_proxies: ['127.0.0.1'] },
    authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 's', cache: { max_ttl_seconds: 300 } },
    shared_state: { redis_url: redis.url, secret_file: 'shared-secret', timeout_ms: 200 },
    upstreams: { bank: upstream.url },
    routes: [{ name: 'accounts', path_prefix: '/acc', upstream: 'bank', auth: 'certificate_bound_token' }],
  }));
  const env = { ...process.env };
  delete env.CERTBOUND_CONFIG;
  // src/main.ts with this test's own loaders (process.execArgv, tap's): coverage merges with the parent's.
  const child = spawn(process.execPath, [...process.execArgv, join(root, 'src/main.ts'), 'serve', '--config', file], { cwd: dir, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const replica = { url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${admin}`, child };
  const deadline = Date.now() + START_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`replica ${n} exited with ${child.exitCode}`);
    const ready = await call(`${replica.adminUrl}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) return replica;
    if (Date.now() > deadline) throw new Error(`replica ${n} not ready within ${START_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const stop = (r: Replica) =>
  new Promise<void>((resolve) => {
    if (r.child.exitCode !== null) return resolve();
    r.child.once('exit', () => resolve());
    r.child.kill('SIGTERM');
  });

const replicas = await Promise.all([0, 1, 2].map(startReplica));
t.teardown(async () => {
  await Promise.all(replicas.map(stop));
  await redis.close();
  await as.close();
  await upstream.close();
});
const [one, two, three] = replicas as [Replica, Replica, Replica];

const api = (r: Replica, token: string, cert = tppA) => call(`${r.url}/acc/x`, { headers: { authorization: `Bearer ${token}`, 'x-client-cert': encodeURIComponent(cert.certPem) } });
const introspected = (token: string) => as.calls.filter((c) => c.form.get('token') === token).length;
const metrics = async (r: Replica) => (await call(`${r.adminUrl}/metrics`)).text;

t.test('300 distinct tokens spread over 3 processes: 300 introspection calls, not up to 900', async (t) => {
  for (let i = 0; i < 300; i++) t.equal((await api(replicas[i % 3] as Replica, `spread-${i}`)).status, 200);
  // Each answer is written to Redis after it is sent: wait until the last one is there.
  await until('every token written to Redis', async () => Number(await redis.cli('EVAL', "return #redis.call('KEYS', 'certbound:token:*')", '0')) >= 300, 10_000);
  for (let i = 0; i < 300; i++) {
    for (const r of [replicas[(i + 1) % 3], replicas[(i + 2) % 3]] as Replica[]) if ((await api(r, `spread-${i}`)).status !== 200) t.fail(`spread-${i}`);
  }
  t.equal([...Array(300).keys()].reduce((sum, i) => sum + introspected(`spread-${i}`), 0), 300);
  t.match(await metrics(two), /certbound_shared_cache_lookups_total\{result="hit"\} [1-9]/);
});

t.test('1,000 concurrent first uses of one new token over the 3 processes: 1 introspection call', async (t) => {
  as.delayMs = 300;
  const statuses = await Promise.all([...Array(1000).keys()].map((i) => api(replicas[i % 3] as Replica, 'crowd').then((r) => r.status)));
  as.delayMs = 0;
  t.same([...new Set(statuses)], [200]);
  t.equal(introspected('crowd'), 1);
});

t.test('revocation through one process: the other two refuse within 1 s of the 202, without asking the server', async (t) => {
  const cases: Array<RevocationCase<typeof tppA>> = [
    ['token', { token: 'byToken' }, 'byToken', tppA],
    ['client_id', { client_id: 'tpp-gone', issued_before: now + 1 }, 'byClient', tppA],
    ['certificate_thumbprint', { certificate_thumbprint: tppB.thumbprint }, 'byCertificate', tppB],
  ];
  const revoke = (body: unknown) => call(`${one.adminUrl}/revocations`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await checkFanOut(t, { replicas, others: [two, three], cases, api, revoke, introspected });
  t.equal((await api(three, 'kept')).status, 200, 'other tokens still pass');
  t.match(await metrics(three), /certbound_revocations_total\{kind="certificate",origin="peer"\} 1/);
});
