import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { GatewayError } from '../../src/errors.js';
import { createTokenValidator } from '../../src/token/index.js';
import { config, fakeServer, json, manualClock, metrics, valueOf, ISSUER } from './fixtures/fake-as.js';

type Tap = Test;

async function setup(t: Tap, opts: { cache?: Partial<ReturnType<typeof config>['cache']>; answer?: (token: string, nowS: number) => unknown; delayMs?: number } = {}) {
  const clock = manualClock();
  const m = metrics();
  let down = false;
  const answer = opts.answer ?? ((_token: string, nowS: number) => ({ active: true, scope: 'accounts', exp: nowS + 300, iss: ISSUER }));
  const server = await fakeServer((req, res) => {
    if (down) return json(res, { error: 'down' }, 503);
    const reply = () => json(res, answer(new URLSearchParams(req.body).get('token') ?? '', clock.now() / 1000));
    return opts.delayMs ? void setTimeout(reply, opts.delayMs) : reply();
  });
  t.teardown(server.close);
  const v = createTokenValidator(
    config({ introspectionEndpoint: server.url, cache: { maxEntries: 100, maxTtlSeconds: 60, negativeTtlSeconds: 0, ...opts.cache } }, 'introspection'),
    { metrics: m, clock: clock.now },
  );
  t.teardown(() => v.close());
  return { v, m, clock, server, calls: () => server.seen.length, setDown: (d: boolean) => (down = d) };
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof GatewayError ? e.code : String(e)));

t.test('hits and misses; keys are token hashes', async (t) => {
  const { v, m, calls } = await setup(t);
  await v.validate('tok-1');
  await v.validate('tok-1');
  await v.validate('tok-2');
  t.equal(calls(), 2);
  t.equal(await valueOf(m, 'cacheHits'), 1);
  t.equal(await valueOf(m, 'cacheMisses'), 2);
  t.equal(await valueOf(m, 'cacheEntries'), 2);
  const keys = v.cache.keys();
  t.same(keys.sort(), ['tok-1', 'tok-2'].map((k) => createHash('sha256').update(k).digest('base64url')).sort());
  t.notOk(keys.some((k) => k.includes('tok-')), 'no raw token in the cache');
});

t.test('an entry never outlives its token (exp) nor max_ttl', async (t) => {
  const { v, clock, calls } = await setup(t, {
    cache: { maxTtlSeconds: 60, maxEntries: 100 },
    answer: (token, nowS) => (token === 'short' ? { active: true, exp: nowS + 20 } : token === 'noexp' ? { active: true } : { active: true, exp: nowS + 3600 }),
  });
  await v.validate('short');
  await v.validate('long');
  await v.validate('noexp');
  t.equal(calls(), 3);
  clock.advance(10);
  await v.validate('short');
  await v.validate('long');
  await v.validate('noexp');
  t.equal(calls(), 3, 'all cached');
  clock.advance(11); // short: exp passed (the cache entry lived exp − now)
  await v.validate('short');
  t.equal(calls(), 4, 'short refetched once its exp passed');
  clock.advance(40); // 61 s: max_ttl passed for long and noexp
  await v.validate('long');
  await v.validate('noexp');
  t.equal(calls(), 6, 'long and noexp refetched after max_ttl');
});

t.test('single flight: 100 concurrent validations, one AS call', async (t) => {
  const { v, calls, m } = await setup(t, { delayMs: 50 });
  const all = await Promise.all(Array.from({ length: 100 }, () => v.validate('tok')));
  t.equal(all.length, 100);
  t.equal(calls(), 1);
  t.equal(await valueOf(m, 'introspections', { result: 'active' }), 1);
});

t.test('single flight shares failures, which are not cached', async (t) => {
  const { v, calls, setDown } = await setup(t, { delayMs: 20 });
  setDown(true);
  const codes = await Promise.all(Array.from({ length: 10 }, () => codeOf(v.validate('tok'))));
  t.same(new Set(codes), new Set(['as_unavailable']));
  t.equal(calls(), 1);
  setDown(false);
  t.equal(await codeOf(v.validate('tok')), 'ok', 'as_unavailable was not cached');
  t.equal(calls(), 2);
});

t.test('negative caching off (default): every inactive answer is asked again', async (t) => {
  const { v, calls } = await setup(t, { answer: () => ({ active: false }) });
  t.equal(await codeOf(v.validate('tok')), 'inactive');
  t.equal(await codeOf(v.validate('tok')), 'inactive');
  t.equal(calls(), 2);
  t.same(v.cache.keys(), []);
});

t.test('negative caching on: inactive cached for negative_ttl_seconds', async (t) => {
  const { v, calls, clock } = await setup(t, { cache: { negativeTtlSeconds: 10 }, answer: () => ({ active: false }) });
  t.equal(await codeOf(v.validate('tok')), 'inactive');
  t.equal(await codeOf(v.validate('tok')), 'inactive');
  t.equal(calls(), 1);
  clock.advance(11);
  t.equal(await codeOf(v.validate('tok')), 'inactive');
  t.equal(calls(), 2);
});

t.test('cached tokens keep working while the AS is down, until their entry expires', async (t) => {
  const { v, setDown, clock } = await setup(t);
  await v.validate('tok');
  setDown(true);
  t.equal(await codeOf(v.validate('tok')), 'ok');
  t.equal(await codeOf(v.validate('other')), 'as_unavailable');
  clock.advance(61);
  t.equal(await codeOf(v.validate('tok')), 'as_unavailable');
});

t.test('max_entries 0 turns the cache off; max_ttl_seconds 0 caches nothing', async (t) => {
  const off = await setup(t, { cache: { maxEntries: 0 } });
  await off.v.validate('tok');
  await off.v.validate('tok');
  t.equal(off.calls(), 2);
  t.same(off.v.cache.keys(), []);

  const ttl0 = await setup(t, { cache: { maxTtlSeconds: 0 } });
  await ttl0.v.validate('tok');
  t.same(ttl0.v.cache.keys(), [], 'max_ttl 0: nothing cached (lru-cache would read 0 as forever)');
});

t.test('bounded: the least recently used entry is evicted', async (t) => {
  const { v, calls } = await setup(t, { cache: { maxEntries: 2 } });
  await v.validate('a');
  await v.validate('b');
  await v.validate('c');
  t.equal(v.cache.keys().length, 2);
  await v.validate('a');
  t.equal(calls(), 4, 'a was evicted');
});

t.test('cached(): answers synchronously only for an active entry inside its time window', async (t) => {
  const { v, m, clock, calls } = await setup(t, {
    cache: { negativeTtlSeconds: 30 },
    answer: (token, nowS) =>
      token === 'inactive' ? { active: false } : token === 'early' ? { active: true, nbf: nowS + 120, exp: nowS + 600 } : { active: true, scope: 'accounts', exp: nowS + 20 },
  });
  t.equal(v.cached('tok'), undefined, 'a miss: undefined');
  t.equal(calls(), 0, 'and no call to the server');
  const claims = await v.validate('tok');
  const hitsBefore = await valueOf(m, 'cacheHits');
  t.equal(v.cached('tok'), claims, 'the cached claims, the same object');
  t.equal(await valueOf(m, 'cacheHits'), hitsBefore + 1, 'counted as a hit');
  t.equal(await codeOf(v.validate('inactive')), 'inactive');
  t.equal(v.cached('inactive'), undefined, 'a cached inactive answer: validate decides');
  t.equal(await codeOf(v.validate('inactive')), 'inactive', 'and validate refuses it from the cache');
  t.equal(calls(), 2);
  t.equal(await codeOf(v.validate('early')), 'not_yet_valid');
  t.equal(v.cached('early'), undefined, 'not yet valid (nbf beyond the skew)');
  clock.advance(15);
  t.equal(v.cached('tok'), claims, 'before exp (+20 s)');
  clock.advance(10);
  t.equal(v.cached('tok'), undefined, 'past exp: the entry ended with the token');
  // Two answers from cached() and validate's refusal of the cached inactive entry.
  t.equal(await valueOf(m, 'cacheHits'), hitsBefore + 3, 'undefined answers count no hit');
});
