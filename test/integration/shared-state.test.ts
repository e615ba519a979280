// Replicas that share Redis (issue 14): three gateways, one real redis-server, a counting
// introspection endpoint. The second-level cache, revocation fan-out, DPoP replays across
// replicas, what Redis holds, and Redis down, killed or silent.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa } from '../fixtures/pki.js';
import { startRedis, startSilentServer } from '../fixtures/redis.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';
import { checkFanOut, until, type RevocationCase } from '../helpers/fan-out.js';
import { proof, proofKey } from '../dpop/fixtures.js';
import { createSealer } from '../../src/shared/seal.js';

// redis-server children, and up to a second of waiting for fan-out per case.
t.setTimeout(180_000);

const ca = await createCa({ commonName: 'Shared CA' });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const key = proofKey('ES256');
const dir = mkdtempSync(join(tmpdir(), 'certbound-shared-'));
const SECRET = 'shared-secret-0123456789abcdefghijklmn';
const ADMIN = 'admin-secret-0123456789abcdefghijklmnop';
writeFileSync(join(dir, 'shared-secret'), SECRET);
writeFileSync(join(dir, 'admin-secret'), ADMIN);

const now = Math.floor(Date.now() / 1000);
const tokens = new Map<string, Record<string, unknown>>();
const bound = (thumbprint: string, clientId: string, extra: Record<string, unknown> = {}) =>
  ({ active: true, client_id: clientId, scope: 'accounts', exp: now + 600, iat: now, cnf: { 'x5t#S256': thumbprint }, ...extra });
for (let i = 0; i < 300; i++) tokens.set(`spread-${i}`, bound(tppA.thumbprint, 'tpp-spread'));
for (const name of ['byToken', 'byClient', 'kept', 'late', 'rewritten', 'load-1', 'load-2', 'silent', 'back']) tokens.set(name, bound(tppA.thumbprint, name === 'byClient' ? 'tpp-gone' : 'tpp-a'));
tokens.set('byCertificate', bound(tppB.thumbprint, 'tpp-b'));
tokens.set('dpop', { active: true, client_id: 'tpp-d', scope: 'accounts', exp: now + 600, token_type: 'DPoP', cnf: { jkt: key.jkt } });
const as = await startIntrospection(tokens);
const upstream = await startUpstream();
const redis = await startRedis();
t.teardown(async () => {
  await redis.close();
  await as.close();
  await upstream.close();
});

const doc = (redisUrl: string) => ({
  listen: { public_url: 'https://api.bank.example' },
  admin: { revocation_secret_file: 'admin-secret' },
  client_certificate: { source: 'header', header: 'x-client-cert', client_certificate_encode: true, trusted_proxies: ['127.0.0.1'] },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 's', cache: { max_ttl_seconds: 300 } },
  shared_state: { redis_url: redisUrl, secret_file: 'shared-secret', timeout_ms: 200 },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'accounts', path_prefix: '/acc', upstream: 'bank', auth: 'certificate_bound_token' },
    { name: 'payments', path_prefix: '/pay', upstream: 'bank', auth: 'dpop_bound_token' },
  ],
});
const replicas: TestGateway[] = [];
for (let i = 0; i < 3; i++) replicas.push(await startGateway(doc(redis.url), { baseDir: dir }));
t.teardown(() => Promise.all(replicas.map((r) => r.close())));
const [one, two, three] = replicas as [TestGateway, TestGateway, TestGateway];

const api = (gw: TestGateway, token: string, cert = tppA) => call(`${gw.url}/acc/x`, { headers: { authorization: `Bearer ${token}`, 'x-client-cert': encodeURIComponent(cert.certPem) } });
const introspected = (token: string) => as.calls.filter((c) => c.form.get('token') === token).length;
const revoke = (gw: TestGateway, body: unknown) =>
  call(`${gw.adminUrl}/revocations`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const sharedKeys = async (): Promise<number> => Number(await redis.cli('EVAL', "return #redis.call('KEYS', 'certbound:token:*')", '0'));

t.test('300 distinct tokens spread over 3 replicas: 300 introspection calls, not up to 900', async (t) => {
  for (let i = 0; i < 300; i++) t.equal((await api(replicas[i % 3] as TestGateway, `spread-${i}`)).status, 200);
  await until('every token written to Redis', async () => (await sharedKeys()) >= 300, 5000);
  for (let i = 0; i < 300; i++) {
    for (const gw of [replicas[(i + 1) % 3], replicas[(i + 2) % 3]] as TestGateway[]) if ((await api(gw, `spread-${i}`)).status !== 200) t.fail(`spread-${i}`);
  }
  const calls = [...Array(300).keys()].reduce((sum, i) => sum + introspected(`spread-${i}`), 0);
  t.equal(calls, 300);
  t.match(await one.metrics.registry.metrics(), /certbound_shared_cache_lookups_total\{result="hit"\} [1-9]/);
});

t.test('1,000 concurrent first uses of one new token over the 3 replicas: 1 introspection call', async (t) => {
  tokens.set('crowd', bound(tppA.thumbprint, 'tpp-a'));
  as.delayMs = 300;
  const statuses = await Promise.all([...Array(1000).keys()].map((i) => api(replicas[i % 3] as TestGateway, 'crowd').then((r) => r.status)));
  as.delayMs = 0;
  t.same([...new Set(statuses)], [200]);
  t.equal(introspected('crowd'), 1);
  const waits = await Promise.all(replicas.map(async (r) => (await r.metrics.registry.metrics()).match(/certbound_shared_lock_waits_total\{result="notified"\} (\d+)/)?.[1]));
  t.equal(waits.filter((w) => w !== undefined).length, 2, 'the two replicas without the lock waited for it, and were notified');
});

t.test('a lock holder that never answers: the others ask the server themselves within 1 s plus the AS timeout', async (t) => {
  tokens.set('orphan', bound(tppA.thumbprint, 'tpp-a'));
  // A holder that died: its lock is in Redis, no answer will ever be announced.
  await redis.cli('SET', `certbound:lock:token:${createSealer(Buffer.from(SECRET)).keyOf('orphan')}`, '1', 'PX', '60000');
  const started = Date.now();
  t.equal((await api(two, 'orphan')).status, 200);
  const waited = Date.now() - started;
  t.ok(waited >= 900 && waited < 1000 + 2000 + 1000, `answered after ${waited} ms`);
  t.equal(introspected('orphan'), 1);
  t.match(await two.metrics.registry.metrics(), /certbound_shared_lock_waits_total\{result="timeout"\} [1-9]/);
});

t.test('Redis holds no claim in clear; a value rewritten there is refused and the token introspected', async (t) => {
  t.equal((await api(one, 'rewritten')).status, 200);
  await until('written', async () => (await sharedKeys()) >= 301, 5000);
  const keys = (await redis.cli('KEYS', 'certbound:token:*')).split('\n');
  for (const k of keys.slice(0, 20)) {
    const value = await redis.cli('GET', k);
    t.notMatch(value, /tpp-|accounts|x5t|as\.example/, `${k} holds no claim`);
  }
  // Every value replaced by spread-0's: none opens for its own token any more.
  const donor = `certbound:token:${createSealer(Buffer.from(SECRET)).keyOf('spread-0')}`;
  const copied = await redis.cli('EVAL', "local v = redis.call('GET', ARGV[1]); local n = 0; for _, k in ipairs(redis.call('KEYS', 'certbound:token:*')) do if k ~= ARGV[1] then redis.call('SET', k, v, 'KEEPTTL'); n = n + 1 end end; return n", '0', donor);
  t.ok(Number(copied) >= 300, `${copied} values rewritten`);
  const fresh = await startGateway(doc(redis.url), { baseDir: dir });
  t.teardown(() => fresh.close());
  const before = introspected('rewritten');
  t.equal((await api(fresh, 'rewritten')).status, 200, 'still served');
  t.equal(introspected('rewritten'), before + 1, 'from the authorization server, not from the rewritten value');
  t.match(await fresh.metrics.registry.metrics(), /certbound_shared_cache_lookups_total\{result="invalid"\} [1-9]/);
});

t.test('revocation through one replica: the others refuse within 1 s, without asking the server', async (t) => {
  const cases: Array<RevocationCase<typeof tppA>> = [
    ['token', { token: 'byToken' }, 'byToken', tppA],
    ['client_id', { client_id: 'tpp-gone', issued_before: now + 1 }, 'byClient', tppA],
    ['certificate', { certificate_thumbprint: tppB.thumbprint }, 'byCertificate', tppB],
  ];
  await checkFanOut(t, { replicas, others: [two, three], cases, api, revoke: (body) => revoke(one, body), introspected });
  t.equal((await api(two, 'kept')).status, 200, 'other tokens still pass');
  t.match(await two.metrics.registry.metrics(), /certbound_revocations_total\{kind="token",origin="peer"\} 1/);
});

t.test('a replica started after the revocations refuses the revoked tokens', async (t) => {
  const late = await startGateway(doc(redis.url), { baseDir: dir });
  t.teardown(() => late.close());
  t.equal((await api(late, 'byToken')).status, 401);
  t.equal((await api(late, 'byCertificate', tppB)).status, 401);
  t.equal((await api(late, 'late')).status, 200);
  t.match(await late.metrics.registry.metrics(), /certbound_revocations_total\{kind="token",origin="loaded"\} 1/);
});

t.test('a DPoP proof replayed to another replica is refused', async (t) => {
  const p = proof(key, 'GET', 'https://api.bank.example/pay/x', 'dpop');
  const headers = { authorization: 'DPoP dpop', dpop: p };
  t.equal((await call(`${one.url}/pay/x`, { headers })).status, 200);
  const replayed = await call(`${two.url}/pay/x`, { headers });
  t.equal(replayed.status, 401);
  t.equal(replayed.json()['error_description'], 'DPoP proof has been used before');
});

t.test('Redis killed under load, then started again: no request fails; the shared cache is back', async (t) => {
  let failed = 0;
  let sent = 0;
  let stop = false;
  const load = async (gw: TestGateway, token: string) => {
    while (!stop) {
      sent++;
      if ((await api(gw, token)).status !== 200) failed++;
    }
  };
  const running = [load(one, 'load-1'), load(two, 'load-2'), load(three, 'load-1')];
  await new Promise((resolve) => setTimeout(resolve, 300));
  redis.kill();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await redis.start();
  await until('reconnected', async () => one.logs.some((l) => l['msg'] === 'shared state available again'), 15_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  stop = true;
  await Promise.all(running);
  t.ok(sent > 50, `${sent} requests sent`);
  t.equal(failed, 0, 'none failed');
  t.equal(one.logs.filter((l) => l['msg'] === 'shared state unavailable').length, 1, 'the outage is logged once, not once per request');
  t.equal(one.logs.filter((l) => l['msg'] === 'shared state available again').length, 1, 'and its end once');
  t.notOk(one.rawLogs.some((l) => l.includes(SECRET) || l.includes('load-1')), 'no secret, no token in the logs');
  // Back: a new token's first use on one replica serves the others from Redis.
  await until('the shared cache works again', async () => {
    const name = `back-${Math.random()}`;
    tokens.set(name, bound(tppA.thumbprint, 'tpp-a'));
    await api(one, name);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await api(two, name);
    return introspected(name) === 1;
  }, 10_000);
});

t.test('a Redis that accepts connections and never answers: requests served, each bounded', async (t) => {
  const silent = await startSilentServer();
  t.teardown(() => silent.close());
  const gw = await startGateway(doc(silent.url), { baseDir: dir });
  t.teardown(() => gw.close());
  const started = Date.now();
  t.equal((await api(gw, 'silent')).status, 200, 'served from the authorization server');
  t.ok(Date.now() - started < 5000, 'bounded');
  t.equal((await api(gw, 'silent')).status, 200, 'then from the local cache');
});
