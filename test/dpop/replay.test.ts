// RFC 9449 §11.1: the in-process replay store, on a frozen clock.
import t from 'tap';
import { createLocalReplayStore, type ReplayStore } from '../../src/dpop/replay.js';

const T0 = 1_700_000_000_000;

function store(entries: number): { store: ReplayStore; evictions: () => number; at: (ms: number) => void } {
  let now = T0;
  let evicted = 0;
  return {
    store: createLocalReplayStore(entries, () => now, () => void evicted++),
    evictions: () => evicted,
    at: (ms) => void (now = ms),
  };
}

t.test('first use, then a replay', async (t) => {
  const { store: s } = store(10);
  t.equal(s.size, 0);
  t.equal(s.firstUse('jkt-a', 'jti-1', T0 + 60_000), true);
  t.equal(s.size, 1);
  t.equal(s.firstUse('jkt-a', 'jti-1', T0 + 60_000), false, 'the same (jkt, jti)');
  t.equal(s.firstUse('jkt-a', 'jti-1', T0 + 120_000), false, 'the same, with another window');
  t.equal(s.size, 1, 'a replay adds nothing');
  t.equal(s.firstUse('jkt-a', 'jti-2', T0 + 60_000), true, 'another jti');
  t.equal(s.firstUse('jkt-b', 'jti-1', T0 + 60_000), true, 'the same jti under another key: a first use');
  t.equal(s.firstUse('jkt-b', 'jti-1', T0 + 60_000), false);
  t.equal(s.size, 3);
});

t.test('a jti holding the separator', async (t) => {
  // jkt is base64url (no ':'): the first ':' of the key ends it, whatever the jti holds.
  const { store: s } = store(10);
  t.equal(s.firstUse('jktA', 'x:y', T0 + 1000), true);
  t.equal(s.firstUse('jktA', 'x', T0 + 1000), true);
  t.equal(s.firstUse('jktA', 'x:y:z', T0 + 1000), true);
  t.equal(s.firstUse('jktA', 'x:y', T0 + 1000), false);
});

t.test('remembered until untilMs, forgotten after', async (t) => {
  const { store: s, at } = store(10);
  const until = T0 + 60_001;
  t.equal(s.firstUse('k', 'j', until), true);
  at(T0 + 30_000);
  t.equal(s.firstUse('k', 'j', until), false);
  at(until);
  t.equal(s.firstUse('k', 'j', until), false, 'at untilMs itself');
  at(until + 1);
  t.equal(s.firstUse('k', 'j', until + 1000), true, 'after untilMs: forgotten, a first use again');
  t.equal(s.firstUse('k', 'j', until + 1000), false, 'and remembered again from then');
  at(until + 1001);
  t.equal(s.firstUse('k', 'j', until + 1000), true);
});

t.test('a window already over is remembered for a millisecond', async (t) => {
  const { store: s, at } = store(10);
  t.equal(s.firstUse('k', 'past', T0 - 5000), true);
  t.equal(s.firstUse('k', 'past', T0 - 5000), false);
  at(T0 + 1);
  t.equal(s.firstUse('k', 'past', T0 - 5000), false);
  at(T0 + 2);
  t.equal(s.firstUse('k', 'past', T0 - 5000), true);
  t.equal(s.firstUse('k', 'now', T0 + 2), true, 'untilMs = now');
  t.equal(s.firstUse('k', 'now', T0 + 2), false);
});

t.test('bounded: the oldest proof is forgotten first, and counted', async (t) => {
  const { store: s, evictions } = store(2);
  t.equal(s.firstUse('k', 'a', T0 + 60_000), true);
  t.equal(s.firstUse('k', 'b', T0 + 60_000), true);
  t.equal(s.size, 2);
  t.equal(evictions(), 0);
  t.equal(s.firstUse('k', 'c', T0 + 60_000), true);
  t.equal(s.size, 2, 'still two');
  t.equal(evictions(), 1, 'one live proof forgotten');
  t.equal(s.firstUse('k', 'c', T0 + 60_000), false, 'the newest is remembered');
  t.equal(s.firstUse('k', 'b', T0 + 60_000), false, 'the second is remembered');
  t.equal(s.firstUse('k', 'a', T0 + 60_000), true, 'the oldest was forgotten: its replay passes');
  t.equal(evictions(), 2);
  t.equal(s.size, 2);
});

t.test('a replay does not make a proof younger', async (t) => {
  const { store: s } = store(2);
  s.firstUse('k', 'a', T0 + 60_000);
  s.firstUse('k', 'b', T0 + 60_000);
  t.equal(s.firstUse('k', 'a', T0 + 60_000), false, 'a replayed');
  s.firstUse('k', 'c', T0 + 60_000);
  t.equal(s.firstUse('k', 'a', T0 + 60_000), true, 'a was still the oldest');
});

t.test('one entry', async (t) => {
  const { store: s, evictions } = store(1);
  t.equal(s.firstUse('k', 'a', T0 + 1000), true);
  t.equal(s.firstUse('k', 'b', T0 + 1000), true);
  t.equal(s.firstUse('k', 'a', T0 + 1000), true);
  t.equal(s.size, 1);
  t.equal(evictions(), 2);
});

t.test('without an eviction callback', async (t) => {
  let now = T0;
  const s = createLocalReplayStore(1, () => now);
  t.equal(s.firstUse('k', 'a', T0 + 1000), true);
  t.equal(s.firstUse('k', 'b', T0 + 1000), true, 'evicts silently');
  t.equal(s.firstUse('k', 'b', T0 + 1000), false);
  now = T0 + 1001;
  t.equal(s.firstUse('k', 'b', T0 + 2000), true);
  t.equal(s.size, 1);
});

t.test('expiry and replacement are not evictions', async (t) => {
  const { store: s, evictions, at } = store(2);
  s.firstUse('k', 'a', T0 + 1000);
  at(T0 + 1001);
  t.equal(s.firstUse('k', 'a', T0 + 2000), true, 'expired, used again');
  t.equal(evictions(), 0, 'replacing an expired entry is no eviction');
});

// The metric this feeds (certbound_dpop_replay_evictions_total) counts "proofs forgotten before
// their iat window ended": one whose window is over costs no replay protection.
t.test('an expired proof pushed out of a full store is no lost protection', async (t) => {
  const { store: s, evictions, at } = store(1);
  t.equal(s.firstUse('k', 'a', T0 + 1000), true);
  at(T0 + 5000);
  t.equal(s.firstUse('k', 'b', T0 + 6000), true);
  t.equal(evictions(), 0, 'a was expired when b took its place');
});
