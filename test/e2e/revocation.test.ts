// Revocation at the authorization server versus certbound's introspection cache
// (authorization_server.cache): a revoked token keeps working for at most max_ttl_seconds.
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { ACCOUNTS, startTopology, type Topology } from './fixtures/topology.js';

const INACTIVE = 'Bearer realm="certbound", error="invalid_token", error_description="the access token is not active"';

/** A client_credentials token for TPP A, obtained and revoked through certbound's /token route. */
async function issue(top: Topology): Promise<string> {
  const res = await top.token(top.clients.a, { grant_type: 'client_credentials', client_id: 'tpp-a', scope: 'accounts' });
  const token = res.json().access_token;
  if (res.status !== 200 || typeof token !== 'string') throw new Error(`token: ${res.status} ${res.text}`);
  return token;
}
async function revoke(t: Test, top: Topology, token: string): Promise<void> {
  const res = await top.token(top.clients.a, { token, token_type_hint: 'access_token', client_id: 'tpp-a' }, { path: '/token/revocation' });
  t.equal(res.status, 200, 'revoked through certbound (auth: mtls, tls_client_auth)');
  t.same(await top.introspect(token), { active: false }, 'the server says inactive');
}
const introspections = (top: Topology) => top.backends.as.requests.filter((r) => r.path === '/token/introspection').length;

t.test('cache max_ttl_seconds: 1 → a revoked token is refused once 1 s has passed since it was cached', async (t) => {
  const top = await startTopology({ cache: { max_ttl_seconds: 1 } });
  t.teardown(() => top.close());
  const token = await issue(top);
  // certbound caches the introspection result while it answers the first request: after
  // `firstSentAt`, before `cachedAt`. Every bound below follows from that, not from the speed of
  // the machine. The cache's clock has 1 ms steps and an entry lives until more than its TTL has
  // passed, hence the few milliseconds on top of 1000.
  const TTL_MS = 1000;
  const firstSentAt = performance.now();
  const first = await top.api(top.clients.a, ACCOUNTS, { token });
  const cachedAt = performance.now();
  t.equal(first.status, 200);
  await revoke(t, top, token);
  const calls = introspections(top);

  interface Attempt { readonly sentAt: number; readonly answeredAt: number; readonly reply: Awaited<ReturnType<Topology['api']>> }
  const attempt = async (): Promise<Attempt> => {
    const sentAt = performance.now();
    const reply = await top.api(top.clients.a, ACCOUNTS, { token });
    return { sentAt, answeredAt: performance.now(), reply };
  };
  const since = (at: number) => `${Math.round(at - cachedAt)} ms after caching`;

  const soon = await attempt();
  // Looked up before the answer came back, so within TTL_MS of caching if answered in time.
  if (soon.answeredAt - firstSentAt < TTL_MS - 5) {
    t.equal(soon.reply.status, 200, `still served from the cache: answered ${since(soon.answeredAt)}`);
    t.equal(introspections(top), calls, 'no introspection call for a cached token');
  } else {
    t.comment(`the revocation took until ${since(soon.sentAt)}: the cache hit is not observable this run`);
  }

  // Poll until one request was sent more than TTL_MS after caching; that one must be refused.
  const attempts = [soon];
  while (attempts.at(-1)!.sentAt - cachedAt <= TTL_MS + 5) {
    await sleep(50);
    attempts.push(await attempt());
  }
  const statuses = attempts.map((a) => a.reply.status);
  const firstRefusal = statuses.indexOf(401);
  t.ok(firstRefusal !== -1 && statuses.slice(0, firstRefusal).every((s) => s === 200) && statuses.slice(firstRefusal).every((s) => s === 401),
    `served from the cache, then refused for good (${statuses.join(' ')})`);
  const last = attempts.at(-1)!;
  t.equal(last.reply.status, 401, `the first request sent more than ${TTL_MS} ms after caching (${since(last.sentAt)}) is refused`);
  t.equal(last.reply.headers['www-authenticate'], INACTIVE);
  t.same(last.reply.json(), { error: 'invalid_token', error_description: 'the access token is not active' });
  const again = await top.api(top.clients.a, ACCOUNTS, { token });
  t.equal(again.status, 401, 'inactive results are not cached as active (negative_ttl_seconds: 0)');
});

t.test('cache max_entries: 0 → a revoked token is refused at once', async (t) => {
  const top = await startTopology({ cache: { max_entries: 0 } });
  t.teardown(() => top.close());
  const token = await issue(top);
  const before = introspections(top);
  t.equal((await top.api(top.clients.a, ACCOUNTS, { token })).status, 200);
  t.equal((await top.api(top.clients.a, ACCOUNTS, { token })).status, 200);
  t.equal(introspections(top), before + 2, 'every request is introspected');
  await revoke(t, top, token);
  const res = await top.api(top.clients.a, ACCOUNTS, { token });
  t.equal(res.status, 401);
  t.equal(res.headers['www-authenticate'], INACTIVE);
});

t.test('default cache (max_ttl_seconds: 60): the revoked token is still served from the cache', async (t) => {
  const top = await startTopology();
  t.teardown(() => top.close());
  const token = await issue(top);
  t.equal((await top.api(top.clients.a, ACCOUNTS, { token })).status, 200);
  await revoke(t, top, token);
  t.equal((await top.api(top.clients.a, ACCOUNTS, { token })).status, 200, 'the documented trade-off: up to 60 s of revocation latency');
  // A token certbound never saw is introspected, so revocation is immediate for it.
  const fresh = await issue(top);
  await revoke(t, top, fresh);
  t.equal((await top.api(top.clients.a, ACCOUNTS, { token: fresh })).status, 401);
  const logs = top.gw.rawLogs.join('\n');
  for (const secret of top.secrets) t.notOk(logs.includes(secret), 'no token or secret in the logs');
});
