// The Redis SharedStore against a real redis-server (killed, paused and restarted on its port), a
// server that never answers and one that answers garbage: every call resolves, bounded in time,
// with the failure value; one log line per outage; subscriptions come back after a reconnect.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { createClient } from 'redis';
import { createRedisStore, type RedisStoreOptions, type StoreOp } from '../../src/shared/redis-store.js';
import type { SharedStore } from '../../src/shared/types.js';
import { createCa } from '../fixtures/pki.js';
import { startGarbageServer, startRedis, startSilentServer, type RedisOptions } from '../fixtures/redis.js';

// redis-server children start in milliseconds, or seconds on a busy machine; reconnecting waits
// for backoffs of up to 5 s: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(120_000);

/** timeout_ms: a local Redis answers in well under a millisecond, this leaves room for a busy machine. */
const TIMEOUT_MS = 1000;
/** A bound on any one call, generous: timeout_ms plus whatever a busy machine adds. */
const CALL_BOUND_MS = TIMEOUT_MS + 2000;
/** Waiting for a reconnection, a message or an expiry: polled until this deadline. */
const DEADLINE_MS = 20_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(t: Test, what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await sleep(20);
  }
}

/** How long `promise` took, with its value. */
async function timed<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  const value = await promise;
  return { value, ms: Date.now() - start };
}

interface Recorded {
  store: SharedStore;
  warns: object[];
  infos: object[];
  errors: StoreOp[];
}

function storeFor(t: Test, url: string, options: Partial<RedisStoreOptions> = {}): Recorded {
  const warns: object[] = [];
  const infos: object[] = [];
  const errors: StoreOp[] = [];
  const store = createRedisStore({
    url,
    keyPrefix: 'cb:',
    timeoutMs: TIMEOUT_MS,
    log: { warn: (o) => warns.push(o), info: (o) => infos.push(o) },
    errors: (op) => errors.push(op),
    ...options,
  });
  t.teardown(() => store.close());
  return { store, warns, infos, errors };
}

async function redis(t: Test, options?: RedisOptions) {
  const r = await startRedis(options);
  t.teardown(() => r.close());
  return r;
}

async function connected(t: Test, url: string, options?: Partial<RedisStoreOptions>): Promise<Recorded> {
  const s = storeFor(t, url, options);
  await until(t, 'connected', () => s.store.connected());
  return s;
}

/** A subscription to 'events' that has heard a message: what it hears, and how often onReconnect ran. */
async function subscribed(t: Test, store: SharedStore): Promise<{ heard: string[]; reconnects: () => number }> {
  const heard: string[] = [];
  let reconnects = 0;
  store.subscribe('events', (m) => heard.push(m), () => reconnects++);
  await until(t, 'the subscription', async () => (await store.publish('events', 'before')) && heard.length > 0);
  return { heard, reconnects: () => reconnects };
}

/** Every call once, with what it resolved to and how long it took. */
async function everyCall(store: SharedStore) {
  const results = await Promise.all([
    timed(store.get('k')),
    timed(store.set('k', Buffer.from('v'), 1000)),
    timed(store.setIfAbsent('n', Buffer.from('v'), 1000)),
    timed(store.addScored('z', 'm', Date.now())),
    timed(store.scoredAbove('z', 0)),
    timed(store.publish('ch', 'hello')),
  ]);
  return { values: results.map((r) => r.value), slowest: Math.max(...results.map((r) => r.ms)) };
}
const FAILURES = [undefined, false, undefined, false, undefined, false];
const OPS: StoreOp[] = ['get', 'set', 'set_nx', 'zadd', 'zrange', 'publish'];

t.test('get and set: Buffers both ways, the TTL in milliseconds', async (t) => {
  const r = await redis(t);
  const { store, errors } = await connected(t, r.url);
  const bytes = Buffer.from([0, 1, 0xfe, 0xff, 0x0d, 0x0a]);
  t.equal(await store.set('bin', bytes, 60_000), true);
  const got = await store.get('bin');
  t.ok(Buffer.isBuffer(got));
  t.same(got, bytes);
  const pttl = Number(await r.cli('PTTL', 'cb:bin'));
  t.ok(pttl > 50_000 && pttl <= 60_000, `PTTL ${pttl}`);
  t.equal(await store.get('absent'), undefined);

  t.equal(await store.set('short', Buffer.from('soon gone'), 150), true);
  await until(t, 'the value to expire', async () => (await store.get('short')) === undefined);
  // A TTL that has already run out (or a fraction) is rounded up to 1 ms, not refused.
  t.equal(await store.set('past', Buffer.from('x'), -5), true);
  t.equal(await store.set('fraction', Buffer.from('x'), 0.2), true);
  t.same(errors, []);
});

t.test('setIfAbsent: true when it created the key, false when it existed', async (t) => {
  const r = await redis(t);
  const { store, errors } = await connected(t, r.url);
  t.equal(await store.setIfAbsent('once', Buffer.from('first'), 60_000), true);
  t.equal(await store.setIfAbsent('once', Buffer.from('second'), 60_000), false);
  t.same(await store.get('once'), Buffer.from('first'));
  const pttl = Number(await r.cli('PTTL', 'cb:once'));
  t.ok(pttl > 50_000 && pttl <= 60_000, `PTTL ${pttl}`);
  t.same(errors, []);
});

t.test('addScored and scoredAbove: members whose score is strictly above', async (t) => {
  const r = await redis(t);
  const { store, errors } = await connected(t, r.url);
  const now = Date.now();
  t.equal(await store.addScored('revoked', 'jti-old', now - 1000), true);
  t.equal(await store.addScored('revoked', 'jti-now', now), true);
  t.equal(await store.addScored('revoked', 'jti-new', now + 60_000), true);
  t.same((await store.scoredAbove('revoked', now))?.sort(), ['jti-new']);
  t.same((await store.scoredAbove('revoked', now - 1))?.sort(), ['jti-new', 'jti-now']);
  // Adding a member again moves its score.
  t.equal(await store.addScored('revoked', 'jti-old', now + 120_000), true);
  t.same((await store.scoredAbove('revoked', now))?.sort(), ['jti-new', 'jti-old']);
  t.same(await store.scoredAbove('nothing', 0), []);
  t.same(errors, []);
});

t.test('publish and subscribe: a round trip, per channel, each subscriber', async (t) => {
  const r = await redis(t);
  const { store, warns } = await connected(t, r.url);
  const a: string[] = [];
  const b: string[] = [];
  const other: string[] = [];
  let reconnects = 0;
  store.subscribe('events', (m) => a.push(m), () => reconnects++);
  store.subscribe('other', (m) => other.push(m));
  // Until the subscription is up, a message is lost: publish until one arrives.
  await until(t, 'the first message', async () => (await store.publish('events', 'ping')) && a.length > 0);
  store.subscribe('events', (m) => b.push(m));
  await until(t, "the second subscriber's message", async () => (await store.publish('events', 'ping')) && b.length > 0);
  a.length = 0;
  b.length = 0;
  t.equal(await store.publish('events', 'hello é ✓'), true);
  const hello = (list: string[]) => list.filter((m) => m !== 'ping');
  await until(t, 'both subscribers', () => hello(a).length > 0 && hello(b).length > 0);
  await sleep(100);
  t.same(hello(a), ['hello é ✓'], 'once each (a late "ping" from above aside)');
  t.same(hello(b), ['hello é ✓']);
  t.same(other, [], 'another channel hears nothing');
  t.equal(reconnects, 0, 'no reconnection: onReconnect is not called for the first subscription, nor for a second subscriber');

  // A subscriber that throws is logged and does not stop the others, nor the connection.
  store.subscribe('events', () => {
    throw new Error('subscriber bug');
  });
  store.subscribe('events', () => {
    throw 'not even an Error';
  });
  a.length = 0;
  await until(t, 'a message past the throwing subscribers', async () => (await store.publish('events', 'again')) && a.length > 0);
  t.match(warns, [
    { msg: 'shared state subscriber failed', err: 'subscriber bug' },
    { msg: 'shared state subscriber failed', err: 'not even an Error' },
  ]);
  t.ok(store.connected());
});

t.test('every key and channel carries the prefix', async (t) => {
  const r = await redis(t);
  const { store } = await connected(t, r.url, { keyPrefix: 'tenant-a:' });
  await store.set('plain', Buffer.from('value'), 60_000);
  await store.setIfAbsent('nx', Buffer.from('value'), 60_000);
  await store.addScored('zset', 'member', 1);
  t.same((await r.cli('KEYS', '*')).split('\n').sort(), ['tenant-a:nx', 'tenant-a:plain', 'tenant-a:zset']);
  t.equal(await r.cli('GET', 'tenant-a:plain'), 'value');
  t.equal(await r.cli('ZSCORE', 'tenant-a:zset', 'member'), '1');
  await r.cli('SET', 'tenant-a:raw', 'written by redis-cli');
  t.same(await store.get('raw'), Buffer.from('written by redis-cli'));

  const heard: string[] = [];
  store.subscribe('updates', (m) => heard.push(m));
  await until(t, 'the prefixed channel', async () => (await r.cli('PUBSUB', 'CHANNELS', '*')) === 'tenant-a:updates');
  await r.cli('PUBLISH', 'tenant-a:updates', 'from redis-cli');
  await until(t, 'the raw message', () => heard.length > 0);
  t.same(heard, ['from redis-cli']);
});

t.test('a reply error fails that call alone: counted, not an outage', async (t) => {
  const r = await redis(t);
  const { store, errors, warns } = await connected(t, r.url);
  await r.cli('SET', 'cb:string', 'not a sorted set');
  t.equal(await store.addScored('string', 'm', 1), false);
  t.equal(await store.scoredAbove('string', 0), undefined);
  t.same(errors, ['zadd', 'zrange']);
  t.same(warns, []);
  t.ok(store.connected());
  t.same(await store.get('string'), Buffer.from('not a sorted set'));
});

t.test('credentials: from the URL, never in the log', async (t) => {
  const r = await redis(t, { args: ['--requirepass', 's3cret-pw'] });
  const right = await connected(t, r.url.replace('//', '//:s3cret-pw@'));
  t.equal(await right.store.set('k', Buffer.from('v'), 60_000), true);
  t.same(await right.store.get('k'), Buffer.from('v'));

  const wrong = storeFor(t, r.url.replace('//', '//someone:hunter2-pw@'));
  await until(t, 'the outage warning', () => wrong.warns.length > 0);
  t.match(wrong.warns, [{ msg: 'shared state unavailable', err: /WRONGPASS|NOAUTH|invalid/ }]);
  t.notMatch(JSON.stringify(wrong.warns), /hunter2|someone/);
  t.equal(await wrong.store.get('k'), undefined);
  t.notOk(wrong.store.connected());
});

t.test('a malformed URL throws at construction, without the URL', async (t) => {
  const urls = [
    'http://user:secret-1@127.0.0.1:6379',
    'redis://user:secret-1@[::1',
    'not a url secret-1',
    'redis://user:secret-1%zz@127.0.0.1:6379',
    'redis://user%zz:secret-1@127.0.0.1:6379',
    // node-redis's own check, at construction too: the first connection is made there.
    'redis://user:secret-1@127.0.0.1:6379/not-a-database',
  ];
  for (const url of urls) {
    t.throws(() => createRedisStore({ url, keyPrefix: '', timeoutMs: TIMEOUT_MS }), { name: 'TypeError', message: /^(?!.*secret-1)/ }, url);
  }
});

t.test('construction returns at once; calls miss until connected, no log line for a first connection', async (t) => {
  const r = await redis(t);
  const start = Date.now();
  const s = storeFor(t, r.url);
  t.ok(Date.now() - start < CALL_BOUND_MS);
  t.notOk(s.store.connected());
  t.equal(await s.store.get('k'), undefined, 'before the connection is up: a miss, at once');
  t.same(s.errors, ['get']);
  await until(t, 'connected', () => s.store.connected());
  t.same(s.infos, []);
  t.same(s.warns, []);
});

t.test('nothing listening: every call misses at once, one warning, and it connects once Redis is there', async (t) => {
  const r = await redis(t);
  await r.stop();
  const s = storeFor(t, r.url);
  await until(t, 'the outage warning', () => s.warns.length > 0);
  for (let i = 0; i < 5; i++) {
    const { values, slowest } = await everyCall(s.store);
    t.same(values, FAILURES);
    t.ok(slowest < CALL_BOUND_MS, `slowest call ${slowest} ms`);
  }
  t.equal(s.errors.length, 30);
  for (const op of OPS) t.equal(s.errors.filter((e) => e === op).length, 5, op);
  t.match(s.warns, [{ msg: 'shared state unavailable', err: /ECONNREFUSED/ }]);
  t.equal(s.warns.length, 1, 'one warning for the outage, not one per call or per attempt');
  await r.start();
  await until(t, 'connected', () => s.store.connected());
  t.same(s.infos, [{ msg: 'shared state available again' }]);
});

t.test('Redis killed, then started again on its port', async (t) => {
  const r = await redis(t);
  const s = await connected(t, r.url);
  const { heard, reconnects } = await subscribed(t, s.store);
  t.equal(await s.store.set('k', Buffer.from('v'), 60_000), true);
  t.same(s.errors, []);

  r.kill();
  await until(t, 'the outage noticed', () => !s.store.connected());
  for (let i = 0; i < 10; i++) {
    const { values, slowest } = await everyCall(s.store);
    t.same(values, FAILURES, 'the failure values: setIfAbsent has no answer (undefined)');
    t.ok(slowest < CALL_BOUND_MS, `slowest call ${slowest} ms`);
  }
  for (const op of OPS) t.equal(s.errors.filter((e) => e === op).length, 10, `errors{op=${op}}`);
  t.equal(s.warns.length, 1, 'one warning for the outage');
  t.match(s.warns[0], { msg: 'shared state unavailable', err: String });
  t.same(s.infos, []);
  // Subscribed while cut off: made when the connection is back (a first subscription: no onReconnect).
  const late: string[] = [];
  let lateReconnects = 0;
  s.store.subscribe('late', (m) => late.push(m), () => lateReconnects++);

  await r.start();
  await until(t, 'connected again', () => s.store.connected());
  t.same(s.infos, [{ msg: 'shared state available again' }]);
  t.equal(s.warns.length, 1);
  const before = s.errors.length;
  t.same(await s.store.get('k'), undefined, 'a restarted Redis without persistence: the value is gone, a plain miss');
  t.equal(await s.store.set('k', Buffer.from('v2'), 60_000), true);
  t.same(await s.store.get('k'), Buffer.from('v2'));
  t.equal(await s.store.setIfAbsent('k', Buffer.from('v3'), 60_000), false);
  t.equal(s.errors.length, before, 'nothing failed since');

  heard.length = 0;
  await until(t, 'the subscription made again', async () => (await s.store.publish('events', 'after')) && heard.length > 0);
  t.equal(reconnects(), 1, 'onReconnect once, for the re-established subscription');
  await until(t, 'the late subscription', async () => (await s.store.publish('late', 'hi')) && late.length > 0);
  t.equal(lateReconnects, 0);
});

t.test('one slow answer is a miss, not an outage: the connection is kept when the PING after it is answered', async (t) => {
  const r = await redis(t, { args: ['--enable-debug-command', 'yes'] });
  const s = await connected(t, r.url);
  t.ok(await s.store.set('k', Buffer.from('v'), 60_000));
  // Redis busy for 1.5 × timeout_ms: the GET misses after timeout_ms, the PING sent then is answered
  // 0.5 × timeout_ms later, within its own timeout_ms.
  const other = createClient({ url: r.url });
  await other.connect();
  t.teardown(() => other.destroy());
  const busy = other.sendCommand(['DEBUG', 'SLEEP', String((TIMEOUT_MS * 1.5) / 1000)]);
  await sleep(50);
  const slow = await timed(s.store.get('k'));
  t.equal(slow.value, undefined, 'the slow call missed');
  t.ok(slow.ms >= TIMEOUT_MS - 20 && slow.ms < CALL_BOUND_MS, `after timeout_ms: ${slow.ms} ms`);
  t.same(s.errors, ['get']);
  await busy;
  await sleep(TIMEOUT_MS + 200);
  t.ok(s.store.connected(), 'still connected');
  t.same(s.warns, [], 'no outage logged');
  t.same(await s.store.get('k'), Buffer.from('v'), 'the next call answered on the same connection');
});

t.test('Redis paused (SIGSTOP): calls time out, the connection is dropped and made again', async (t) => {
  const r = await redis(t);
  const s = await connected(t, r.url);
  const { heard, reconnects } = await subscribed(t, s.store);
  t.same(s.errors, []);

  r.pause();
  // A subscription made now, on a subscriber connection that looks fine: unanswered, so dropped too.
  const during: string[] = [];
  let duringReconnects = 0;
  s.store.subscribe('during', (m) => during.push(m), () => duringReconnects++);
  const { values, slowest } = await everyCall(s.store);
  t.same(values, FAILURES);
  t.ok(slowest >= TIMEOUT_MS - 20 && slowest < CALL_BOUND_MS, `the calls waited for timeout_ms, no longer: ${slowest} ms`);
  // Checked with a PING at once, unanswered within timeout_ms as well: dropped.
  const dropped = await timed(until(t, 'the connection dropped', () => !s.store.connected()));
  t.ok(dropped.ms < CALL_BOUND_MS, `dropped ${dropped.ms} ms after the calls missed`);
  for (let i = 0; i < 5; i++) {
    const again = await everyCall(s.store);
    t.same(again.values, FAILURES);
    t.ok(again.slowest < CALL_BOUND_MS, `slowest call ${again.slowest} ms`);
  }
  await until(t, 'the subscription counted as failed', () => s.errors.includes('subscribe'));
  t.equal(s.errors.length, 37);
  t.equal(s.errors.filter((op) => op === 'subscribe').length, 1);
  t.match(s.warns, [{ msg: 'shared state unavailable', err: `no answer to PING within ${TIMEOUT_MS} ms` }]);
  // Connections made meanwhile are accepted by the kernel and never answered: no second warning.
  await sleep(1500);
  t.equal(s.warns.length, 1);

  r.resume();
  await until(t, 'connected again', () => s.store.connected());
  t.same(s.infos, [{ msg: 'shared state available again' }]);
  await until(t, 'the subscription made again', async () => (await s.store.publish('events', 'after')) && heard.includes('after'));
  await until(t, 'the subscription made while paused', async () => (await s.store.publish('during', 'after')) && during.length > 0);
  t.equal(reconnects(), 1, 'onReconnect for the subscription made again');
  t.equal(duringReconnects, 0, 'not for a first subscription, however late');
});

t.test('an idle connection that stops answering is noticed by PING', async (t) => {
  const r = await redis(t);
  const s = await connected(t, r.url, { pingMs: 100 });
  const { reconnects } = await subscribed(t, s.store);
  r.pause();
  await until(t, 'the outage noticed without a call', () => !s.store.connected());
  t.match(s.warns, [{ msg: 'shared state unavailable', err: `no answer to PING within ${TIMEOUT_MS} ms` }]);
  t.same(s.errors, []);
  // Long enough for the subscriber connection's PING to go unanswered as well.
  await sleep(TIMEOUT_MS + 1000);
  r.resume();
  await until(t, 'connected again', () => s.store.connected());
  // The subscriber connection was checked too: made again, it calls onReconnect.
  await until(t, 'onReconnect', () => reconnects() > 0);
});

t.test('a PING answered with an error drops the connection too', async (t) => {
  const r = await redis(t, { args: ['--rename-command', 'PING', ''] });
  const s = await connected(t, r.url, { pingMs: 100 });
  await until(t, 'the warning', () => s.warns.length > 0);
  t.match(s.warns, [{ msg: 'shared state unavailable', err: /unknown command/ }]);
  t.notMatch(s.warns[0], { err: /PING/ }, 'quoted parts of a reply are not logged');
});

t.test('a server that accepts connections and never answers', async (t) => {
  const server = await startSilentServer();
  t.teardown(() => server.close());
  const s = storeFor(t, server.url, { connectTimeoutMs: 300 });
  const heard: string[] = [];
  s.store.subscribe('events', (m) => heard.push(m), t.fail);
  for (let i = 0; i < 3; i++) {
    const { values, slowest } = await everyCall(s.store);
    t.same(values, FAILURES);
    t.ok(slowest < CALL_BOUND_MS, `slowest call ${slowest} ms`);
  }
  await until(t, 'the connection tried again', () => server.connections() >= 4);
  for (let i = 0; i < 3; i++) {
    const { values, slowest } = await everyCall(s.store);
    t.same(values, FAILURES);
    t.ok(slowest < CALL_BOUND_MS, `slowest call ${slowest} ms`);
  }
  t.match(s.warns, [{ msg: 'shared state unavailable', err: /no answer within \d+ ms of connecting/ }]);
  t.equal(s.warns.length, 1);
  t.notOk(s.store.connected());
  t.same(heard, []);
});

t.test('a server that answers garbage', async (t) => {
  const server = await startGarbageServer();
  t.teardown(() => server.close());
  const s = storeFor(t, server.url);
  s.store.subscribe('events', t.fail, t.fail);
  await until(t, 'the outage warning', () => s.warns.length > 0);
  for (let i = 0; i < 3; i++) {
    const { values, slowest } = await everyCall(s.store);
    t.same(values, FAILURES);
    t.ok(slowest < CALL_BOUND_MS, `slowest call ${slowest} ms`);
  }
  await until(t, 'the connection tried again', () => server.connections() >= 4);
  t.equal(s.warns.length, 1);
  t.match(s.warns, [{ msg: 'shared state unavailable', err: /RESP/ }]);
  t.notOk(s.store.connected());
});

t.test('rediss:// with a CA', async (t) => {
  const ca = await createCa({ commonName: 'Redis Test CA' });
  const server = await ca.issue({ commonName: 'redis', kind: 'server', ipAddresses: ['127.0.0.1'] });
  const r = await redis(t, { tls: { certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem } });
  t.match(r.url, /^rediss:\/\//);
  const s = await connected(t, r.url, { ca: Buffer.from(ca.certPem) });
  t.equal(await s.store.set('k', Buffer.from('over TLS'), 60_000), true);
  t.same(await s.store.get('k'), Buffer.from('over TLS'));
  t.equal(await r.cli('GET', 'cb:k'), 'over TLS');
  const heard: string[] = [];
  s.store.subscribe('events', (m) => heard.push(m));
  await until(t, 'a message over TLS', async () => (await s.store.publish('events', 'tls')) && heard.length > 0);

  // Without the CA (Node's CAs do not know it), or with another one: never connected.
  const other = await createCa({ commonName: 'Another CA' });
  for (const options of [{}, { ca: Buffer.from(other.certPem) }]) {
    const refused = storeFor(t, r.url, options);
    await until(t, 'the outage warning', () => refused.warns.length > 0);
    t.match(refused.warns, [{ msg: 'shared state unavailable', err: /certificate/ }]);
    t.equal(await refused.store.get('k'), undefined);
    t.notOk(refused.store.connected());
  }
});

t.test('close: idempotent, calls and subscriptions after it miss', async (t) => {
  const r = await redis(t);
  const s = await connected(t, r.url);
  s.store.subscribe('events', t.fail, t.fail);
  await s.store.close();
  await s.store.close();
  t.notOk(s.store.connected());
  const { values, slowest } = await everyCall(s.store);
  t.same(values, FAILURES);
  t.ok(slowest < CALL_BOUND_MS);
  s.store.subscribe('events', t.fail, t.fail);
  await r.cli('PUBLISH', 'cb:events', 'nobody listens');
  await sleep(200);
  t.same(s.warns, [], 'closing is not an outage');
});

t.test('close leaves nothing running: a process exits on its own', async (t) => {
  const r = await redis(t);
  const silent = await startSilentServer();
  t.teardown(() => silent.close());
  const down = await startRedis();
  await down.close();
  // Four stores in a child: connected and subscribed, connecting to a silent server, waiting to
  // reconnect to nothing, and closed before its first connection.
  const script = `
    const { createRedisStore } = await import(${JSON.stringify(new URL('../../src/shared/redis-store.ts', import.meta.url).pathname)});
    const make = (url) => createRedisStore({ url, keyPrefix: 'x:', timeoutMs: 200, pingMs: 50 });
    const live = make(${JSON.stringify(r.url)});
    live.subscribe('c', () => {});
    const silent = make(${JSON.stringify(silent.url)});
    const down = make(${JSON.stringify(down.url)});
    const early = make(${JSON.stringify(r.url)});
    await early.close();
    while (!live.connected()) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await live.get('k');
    await Promise.all([live.close(), silent.close(), down.close()]);
    // Printed only if something still keeps the process alive (this timer does not).
    setTimeout(() => console.log(JSON.stringify(process.getActiveResourcesInfo())), 500).unref();
  `;
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout.trim(), '', 'nothing kept it alive half a second after close');
});
