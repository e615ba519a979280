// The shared-state parts on a store that fails on demand (fault injection; the real Redis is in
// redis-store.test.ts and integration/shared-state.test.ts): what each does when Redis cannot answer.
import t from 'tap';
import type { SharedStore } from '../../src/shared/types.js';
import { createSharedReplayStore } from '../../src/shared/replay-store.js';
import { createLocalReplayStore } from '../../src/dpop/replay.js';
import { createFillBus } from '../../src/shared/fills.js';
import { createSealer } from '../../src/shared/seal.js';
import { createSharedTokenCache } from '../../src/shared/token-cache.js';

/** A store whose calls answer from memory, or fail (resolve as a miss) while `down`. */
function fakeStore() {
  const values = new Map<string, Buffer>();
  const handlers = new Map<string, (message: string) => void>();
  const state = { down: false };
  const store: SharedStore = {
    get: async (k) => (state.down ? undefined : values.get(k)),
    set: async (k, v) => (state.down ? false : (values.set(k, v), true)),
    setIfAbsent: async (k, v) => (state.down ? undefined : values.has(k) ? false : (values.set(k, v), true)),
    addScored: async () => !state.down,
    scoredAbove: async () => (state.down ? undefined : []),
    publish: async (channel, message) => (state.down ? false : (handlers.get(channel)?.(message), true)),
    subscribe: (channel, onMessage) => void handlers.set(channel, onMessage),
    connected: () => !state.down,
    close: async () => undefined,
  };
  return { store, values, handlers, state };
}

t.test('DPoP replays: the local store first; its answer when Redis cannot give one', async (t) => {
  const { store, state } = fakeStore();
  const replay = createSharedReplayStore(store, createLocalReplayStore(10, () => 1000), () => 1000);
  t.equal(await replay.firstUse('k', 'a', 5000), true);
  t.equal(await replay.firstUse('k', 'a', 5000), false, 'a replay to the same replica: no round trip');
  t.equal(replay.size, 1);
  const other = createSharedReplayStore(store, createLocalReplayStore(10, () => 1000), () => 1000);
  t.equal(await other.firstUse('k', 'a', 5000), false, 'another replica: refused from Redis');
  state.down = true;
  t.equal(await other.firstUse('k', 'b', 5000), true, 'Redis down: the local answer');
});

t.test('fills: an announcement reaches the waiters of its key only; a wait ends on its own', async (t) => {
  // The bus's timers do not hold the process open: this test does, while it waits.
  const alive = setInterval(() => undefined, 10);
  t.teardown(() => clearInterval(alive));
  const { store, handlers } = fakeStore();
  const bus = createFillBus(store);
  const a = bus.wait('key-a', 5000);
  const b = bus.wait('key-b', 20);
  bus.announce('key-a', Buffer.from('sealed'));
  t.same(await a.answer, Buffer.from('sealed'));
  t.equal(await b.answer, undefined, 'timed out');
  handlers.get('fills')?.('no-space-at-all');
  handlers.get('fills')?.('unknown-key AAAA');
  const c = bus.wait('key-c', 5000);
  c.cancel();
  t.equal(await c.answer, undefined, 'cancelled');
});

t.test('the shared token cache: values that do not parse, inactive answers, Redis down', async (t) => {
  const { store, values, state } = fakeStore();
  const sealer = createSealer(Buffer.alloc(32, 3));
  const cache = createSharedTokenCache({ store, sealer, fills: createFillBus(store), maxTtlSeconds: 60, clockSkewSeconds: 0, introspectionTimeoutMs: 100, clock: () => 1_000_000 });
  values.set(`token:${sealer.keyOf('tok')}`, sealer.seal('tok', Buffer.from('not json')));
  t.equal(await cache.read('tok'), undefined, 'sealed for the token but not JSON: a miss');
  values.set(`token:${sealer.keyOf('tok')}`, sealer.seal('tok', Buffer.from('{"exp":"soon"}')));
  t.equal(await cache.read('tok'), undefined, 'malformed claims: a miss');
  // A waiter gets the holder's "inactive" answer.
  values.set(`lock:token:${sealer.keyOf('gone')}`, Buffer.from('1'));
  const waiting = cache.fromHolder('gone');
  await new Promise((resolve) => setImmediate(resolve));
  cache.write('gone', { active: false });
  t.same(await waiting, { outcome: { active: false } });
  state.down = true;
  t.equal(await cache.fromHolder('other'), undefined, 'Redis down: this replica asks the server');
});

t.test('a copy read from Redis is cached no longer than the first: the deadline is sealed with the claims', async (t) => {
  const { createTokenCache } = await import('../../src/token/cache.js');
  const { store, values } = fakeStore();
  const sealer = createSealer(Buffer.alloc(32, 5));
  let now = 1_000_000_000;
  const clock = () => now;
  const shared = createSharedTokenCache({ store, sealer, fills: createFillBus(store), maxTtlSeconds: 60, clockSkewSeconds: 0, introspectionTimeoutMs: 100, clock });
  const { claimsOf } = await import('../../src/token/claims.js');
  const claims = claimsOf({ scope: 'accounts', client_id: 'tpp', cnf: { 'x5t#S256': 'abc' }, exp: now / 1000 + 3600 }, (m) => new Error(m));
  shared.write('tok', { active: true, claims });
  await new Promise((resolve) => setImmediate(resolve));
  now += 50_000;
  const known = await shared.read('tok');
  t.equal(known?.untilMs, 1_000_060_000, 'written at t, max_ttl 60 s: until t + 60 s');
  t.match(known?.outcome, { active: true, claims: { clientId: 'tpp', x5tS256: 'abc' } });
  // The reader's local cache keeps it 10 s more, not another 60.
  const local = createTokenCache({ maxEntries: 10, maxTtlSeconds: 60, negativeTtlSeconds: 0 }, { clock });
  local.set('k', known!.outcome, known!.untilMs);
  now += 9_999;
  t.ok(local.get('k'), 'until the first copy ends');
  now += 2;
  t.equal(local.get('k'), undefined, 'not a millisecond after');
  t.equal(await shared.read('tok'), undefined, 'past its deadline, a value still in Redis is a miss');
  // A value sealed without a deadline (claims alone) is not an answer either.
  values.set(`token:${sealer.keyOf('old')}`, sealer.seal('old', Buffer.from(JSON.stringify({ scope: 'accounts', exp: now / 1000 + 3600 }))));
  t.equal(await shared.read('old'), undefined);
});

t.test('the revocation hub: a list that could not load at start is loaded once Redis answers; unreadable messages are ignored', async (t) => {
  const { createRevocationHub, LOAD_RETRY_MS } = await import('../../src/shared/revocation-hub.js');
  const { store, state, handlers } = fakeStore();
  const sealer = createSealer(Buffer.alloc(32, 4));
  const warnings: string[] = [];
  const log = { warn: (o: { msg: string }) => void warnings.push(o.msg), info: () => undefined, error: () => undefined } as unknown as import('../../src/observability/logger.js').Logger;
  let loads = 0;
  const counting: SharedStore = { ...store, scoredAbove: async (k, min) => (loads++, store.scoredAbove(k, min)) };
  state.down = true;
  const hub = createRevocationHub({ clock: Date.now, log, shared: { store: counting, sealer } });
  t.teardown(() => hub.close());
  await hub.start();
  t.equal(loads, 1);
  t.same(warnings, ['shared revocation list not loaded; it will be once the shared store answers']);
  state.down = false;
  const deadline = Date.now() + 10 * LOAD_RETRY_MS;
  while (loads < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(loads, 2, 'retried, and loaded');
  handlers.get('revocations')?.('bm90IHNlYWxlZA==');
  t.equal(warnings.at(-1), 'unreadable revocation message ignored');
  t.equal(hub.list.size, 0);
});

t.test('the revocation hub: revocations accepted while Redis is down are shared once it answers', async (t) => {
  const { createRevocationHub, LOAD_RETRY_MS } = await import('../../src/shared/revocation-hub.js');
  // The hub's retry timer does not hold the process open: this test does, while it waits.
  const alive = setInterval(() => undefined, 10);
  t.teardown(() => clearInterval(alive));
  const { store, state } = fakeStore();
  const sealer = createSealer(Buffer.alloc(32, 6));
  const said: string[] = [];
  const log = { warn: (o: { msg: string }) => void said.push(o.msg), info: (o: { msg: string }) => void said.push(o.msg), error: () => undefined } as unknown as import('../../src/observability/logger.js').Logger;
  let now = 1_000_000_000;
  const clock = () => now;
  const here = createRevocationHub({ clock, log, shared: { store, sealer } });
  const peer = createRevocationHub({ clock, shared: { store, sealer } });
  t.teardown(() => (here.close(), peer.close()));
  await here.start();
  await peer.start(); // the fake store keeps one subscriber per channel: the peer
  state.down = true;
  await here.revoke({ kind: 'token', key: 'k1' }, 60_000);
  await here.revoke({ kind: 'client', clientId: 'tpp-gone', issuedBefore: 10 }, 60_000);
  await here.revoke({ kind: 'token', key: 'expired' }, 1000);
  t.equal(here.list.size, 3, 'applied here at once');
  t.equal(peer.list.size, 0, 'not shared while Redis is down');
  t.same(said, Array(3).fill('revocation applied here only for now: shared once the shared store answers'));
  now += 2000; // the third has expired before Redis answers again
  state.down = false;
  const deadline = Date.now() + 10 * LOAD_RETRY_MS;
  while (peer.list.size < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(peer.list.size, 2, 'shared once Redis answers; the one that expired meanwhile is not');
  t.equal(said.at(-1), 'revocations applied here while the shared store was unavailable are shared now');
});
