// The DPoP stage's parts: the proof, the nonce, the key binding and the jti's first use, as data.
import t from 'tap';
import { bindKey, createDpopParts, proveKey, type DpopParts, type ProvenKey } from '../../src/dpop/stage.js';
import { createNonces } from '../../src/dpop/nonce.js';
import type { ReplayStore } from '../../src/dpop/replay.js';
import type { ProofInput } from '../../src/dpop/proof.js';
import type { DpopConfig } from '../../src/config/types.js';
import { GatewayError, type ErrorDetails } from '../../src/errors.js';
import { claimsOf } from '../../src/token/claims.js';
import type { TokenClaims } from '../../src/token/types.js';
import { codeOf } from '../helpers/codes.js';
import { proof, proofKey, type ProofKey, type ProofParts } from './fixtures.js';

const NOW_S = 1_700_000_040; // a nonce step boundary for 300 s lifetimes (steps of 60 s)
const NOW_MS = NOW_S * 1000;
const ORIGIN = 'https://api.example.com';
const PATH = '/accounts';
const HTU = `${ORIGIN}${PATH}`;
const TOKEN = 'token-1';
const SECRET = Buffer.alloc(32, 3);

const config = (over: Partial<DpopConfig> = {}): DpopConfig => ({
  algorithms: ['ES256', 'PS256', 'EdDSA'],
  iatLeewaySeconds: 60,
  nonce: 'off',
  nonceLifetimeSeconds: 300,
  replayCacheEntries: 100,
  nonceSecret: SECRET,
  ...over,
});

/** Parts on a clock the test moves. */
function partsOf(over: Partial<DpopConfig> = {}, deps: { replay?: ReplayStore; evicted?: () => void } = {}): { parts: DpopParts; at: (ms: number) => void } {
  let now = NOW_MS;
  return { parts: createDpopParts(config(over), { clock: () => now, ...deps }), at: (ms) => void (now = ms) };
}

const key = proofKey('ES256');
const other = proofKey('ES256');
const make = (k: ProofKey = key, changes: ProofParts & { readonly nowSeconds?: number } = {}): string => proof(k, 'GET', HTU, TOKEN, { nowSeconds: NOW_S, ...changes });
const inputOf = (jws: string, over: Partial<ProofInput> = {}): ProofInput => ({ proofs: [jws], method: 'GET', origin: ORIGIN, encodedPath: PATH, accessToken: TOKEN, ...over });

/** Claims as the token stage builds them. */
const claims = (cnf?: Record<string, unknown>): TokenClaims => claimsOf({ scope: 'accounts', ...(cnf === undefined ? {} : { cnf }) }, (m) => new Error(m));
const boundTo = (k: ProofKey): TokenClaims => claims({ jkt: k.jkt });

function errorOf(run: () => unknown): { code: string; description: string; details: ErrorDetails } {
  try {
    run();
  } catch (e) {
    if (e instanceof GatewayError) return { code: e.code, description: e.description, details: e.details };
    throw e;
  }
  return { code: 'no error', description: '', details: {} };
}
async function rejectionOf(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (e) {
    if (e instanceof GatewayError) return e.code;
    throw e;
  }
  return 'no error';
}

t.test('createDpopParts: nonces only when required', async (t) => {
  t.equal(partsOf().parts.nonces, undefined, 'nonce: off');
  const { parts } = partsOf({ nonce: 'required' });
  t.ok(parts.nonces, 'nonce: required');
  const same = createNonces({ secret: SECRET, lifetimeSeconds: 300, leewaySeconds: 60, clock: () => NOW_MS });
  t.equal(parts.nonces?.current(), same.current(), 'keyed by nonce_secret');
  t.not(partsOf({ nonce: 'required', nonceSecret: Buffer.alloc(32, 4) }).parts.nonces?.current(), same.current());
});

t.test('createDpopParts: the nonce lifetime and leeway are the configured ones', async (t) => {
  const { parts, at } = partsOf({ nonce: 'required', nonceLifetimeSeconds: 100, iatLeewaySeconds: 20 });
  const nonces = parts.nonces as NonNullable<DpopParts['nonces']>;
  const nonce = nonces.current();
  at(NOW_MS + 100_000);
  t.strictSame(nonces.check(nonce), { valid: true, refresh: true }, 'good for 100 s');
  at(NOW_MS + 100_001);
  t.strictSame(nonces.check(nonce), { valid: false });
  // Steps of 20 s; a replica 20 s ahead (the iat leeway) is accepted, 40 s ahead is not.
  const ahead = (ms: number): string => createNonces({ secret: SECRET, lifetimeSeconds: 100, leewaySeconds: 20, clock: () => NOW_MS + ms }).current();
  at(NOW_MS);
  t.strictSame(nonces.check(ahead(20_000)), { valid: true, refresh: false });
  t.strictSame(nonces.check(ahead(40_000)), { valid: false });
});

t.test('createDpopParts: the proof verifier takes the configured algorithms, leeway and clock', async (t) => {
  const rs = proofKey('RS256');
  t.equal(codeOf(() => proveKey(partsOf().parts, inputOf(make(rs)))), 'invalid_dpop_proof', 'RS256 not configured');
  t.equal(proveKey(partsOf({ algorithms: ['RS256'] }).parts, inputOf(make(rs))).proof.jkt, rs.jkt, 'RS256 configured');
  const { parts, at } = partsOf({ iatLeewaySeconds: 5 });
  const jws = make();
  t.equal(proveKey(parts, inputOf(jws)).proof.replayableUntilMs, (NOW_S + 5) * 1000 + 1);
  at(NOW_MS + 5001);
  t.equal(codeOf(() => proveKey(parts, inputOf(jws))), 'invalid_dpop_proof', 'the clock is the deps clock');
});

t.test('createDpopParts: the replay store', async (t) => {
  const given: ReplayStore = { firstUse: () => true, size: 0 };
  t.equal(partsOf({}, { replay: given }).parts.replay, given, 'the previous gateway\'s store, kept');
  // The local one: replay_cache_entries entries, the deps clock, the eviction callback.
  let evicted = 0;
  const { parts, at } = partsOf({ replayCacheEntries: 1 }, { evicted: () => void evicted++ });
  const first = proveKey(parts, inputOf(make()));
  const second = proveKey(parts, inputOf(make()));
  t.equal(bindKey(parts, boundTo(key), first), undefined);
  t.equal(parts.replay.size, 1);
  t.equal(bindKey(parts, boundTo(key), second), undefined);
  t.equal(evicted, 1, 'one entry: the first proof is forgotten');
  t.equal(parts.replay.size, 1);
  t.equal(bindKey(parts, boundTo(key), first), undefined, 'and its replay passes: the documented price of the bound');
  t.equal(codeOf(() => bindKey(parts, boundTo(key), first)), 'dpop_replay');
  at(first.proof.replayableUntilMs);
  t.equal(codeOf(() => bindKey(parts, boundTo(key), first)), 'dpop_replay', 'remembered to the end of its window');
  at(first.proof.replayableUntilMs + 1);
  t.equal(bindKey(parts, boundTo(key), first), undefined, 'forgotten after it (by then the proof itself is refused: iat)');
  t.equal(codeOf(() => proveKey(parts, inputOf(make()))), 'invalid_dpop_proof');
});

t.test('proveKey without nonces', async (t) => {
  const { parts } = partsOf();
  const proven = proveKey(parts, inputOf(make()));
  t.strictSame(Object.keys(proven), ['proof']);
  t.equal(proven.proof.jkt, key.jkt);
  const withNonce = proveKey(parts, inputOf(make(key, { payload: { nonce: 'anything' } })));
  t.strictSame(Object.keys(withNonce), ['proof'], 'a nonce claim is not checked when nonces are off');
  t.equal(withNonce.proof.nonce, 'anything');
});

t.test('proveKey: the proof is checked first', async (t) => {
  const { parts } = partsOf({ nonce: 'required' });
  t.equal(codeOf(() => proveKey(parts, inputOf(make(key, { header: { typ: 'JWT' } })))), 'invalid_dpop_proof', 'a bad proof without nonce: invalid_dpop_proof');
  t.equal(codeOf(() => proveKey(parts, inputOf(make(), { accessToken: 'another' }))), 'dpop_ath_mismatch', 'another token, without nonce: dpop_ath_mismatch');
  t.equal(codeOf(() => proveKey(parts, inputOf(make(), { method: 'POST' }))), 'invalid_dpop_proof');
});

t.test('proveKey: nonce required', async (t) => {
  const { parts, at } = partsOf({ nonce: 'required' });
  const nonces = parts.nonces as NonNullable<DpopParts['nonces']>;
  const current = nonces.current();

  t.strictSame(errorOf(() => proveKey(parts, inputOf(make()))), { code: 'use_dpop_nonce', description: 'a DPoP nonce is required', details: { nonce: current } }, 'no nonce');
  for (const nonce of ['', 'bogus', `${current}x`, `1.${current.split('.')[1] as string}`]) {
    t.strictSame(
      errorOf(() => proveKey(parts, inputOf(make(key, { payload: { nonce } })))),
      { code: 'use_dpop_nonce', description: 'the DPoP nonce is invalid or expired', details: { nonce: current } },
      `invalid nonce ${JSON.stringify(nonce)}`,
    );
  }
  const foreign = createNonces({ secret: Buffer.alloc(32, 9), lifetimeSeconds: 300, leewaySeconds: 60, clock: () => NOW_MS }).current();
  t.match(errorOf(() => proveKey(parts, inputOf(make(key, { payload: { nonce: foreign } })))), { code: 'use_dpop_nonce', details: { nonce: current } }, 'another secret\'s nonce');

  const fresh = proveKey(parts, inputOf(make(key, { payload: { nonce: current } })));
  t.strictSame(Object.keys(fresh), ['proof'], 'a fresh nonce: no new one');
  t.equal(fresh.proof.nonce, current);

  // Later: the nonce has lived more than half its life; the proof's iat moves with the clock.
  const later = NOW_MS + 151_000;
  at(later);
  const old = proveKey(parts, inputOf(make(key, { nowSeconds: later / 1000, payload: { nonce: current } })));
  t.equal(old.freshNonce, nonces.current(), 'more than half its lifetime: a fresh nonce for the response');
  t.not(old.freshNonce, current);
  t.equal(old.proof.nonce, current);

  // Past its lifetime: refused, with the nonce to use now.
  const expired = NOW_MS + 301_000;
  at(expired);
  t.strictSame(
    errorOf(() => proveKey(parts, inputOf(make(key, { nowSeconds: expired / 1000, payload: { nonce: current } })))),
    { code: 'use_dpop_nonce', description: 'the DPoP nonce is invalid or expired', details: { nonce: nonces.current() } },
  );
  t.not(nonces.current(), current);
});

t.test('bindKey: the token must be bound to the proof key', async (t) => {
  const { parts } = partsOf();
  const proven = proveKey(parts, inputOf(make()));
  t.equal(codeOf(() => bindKey(parts, claims(), proven)), 'dpop_unbound_token', 'no cnf');
  t.equal(codeOf(() => bindKey(parts, claims({}), proven)), 'dpop_unbound_token', 'an empty cnf');
  t.equal(codeOf(() => bindKey(parts, claims({ 'x5t#S256': 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0' }), proven)), 'dpop_unbound_token', 'certificate-bound only');
  t.equal(codeOf(() => bindKey(parts, boundTo(other), proven)), 'dpop_key_mismatch', 'bound to another key');
  t.equal(codeOf(() => bindKey(parts, claims({ jkt: key.jkt.slice(0, -1) }), proven)), 'dpop_key_mismatch', 'a shorter thumbprint');
  t.equal(codeOf(() => bindKey(parts, claims({ jkt: `${key.jkt}A` }), proven)), 'dpop_key_mismatch', 'a longer thumbprint');
  t.equal(codeOf(() => bindKey(parts, claims({ jkt: key.jkt.toLowerCase() }), proven)), 'dpop_key_mismatch', 'case matters');
  t.equal(codeOf(() => bindKey(parts, claims({ jkt: '' }), proven)), 'dpop_key_mismatch', 'an empty thumbprint');
  t.equal(parts.replay.size, 0, 'a refused binding records nothing');
  t.equal(bindKey(parts, boundTo(key), proven), undefined, 'bound to the proof key: synchronous, nothing returned');
  t.equal(bindKey(parts, claims({ jkt: key.jkt, 'x5t#S256': 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0' }), proveKey(parts, inputOf(make()))), undefined, 'bound to both');
});

t.test('bindKey: each proof once', async (t) => {
  const { parts } = partsOf();
  const proven = proveKey(parts, inputOf(make()));
  t.equal(bindKey(parts, boundTo(key), proven), undefined);
  t.equal(codeOf(() => bindKey(parts, boundTo(key), proven)), 'dpop_replay', 'the same proof again');
  t.equal(codeOf(() => bindKey(parts, boundTo(key), proveKey(parts, inputOf(make(key, { payload: { jti: proven.proof.jti } }))))), 'dpop_replay', 'another proof with the same jti');
  t.equal(bindKey(parts, boundTo(key), proveKey(parts, inputOf(make()))), undefined, 'another jti');
  // The same jti under another key is that key's first use.
  t.equal(bindKey(parts, boundTo(other), proveKey(parts, inputOf(make(other, { payload: { jti: proven.proof.jti } })))), undefined);
  // A replay through another token bound to the same key is still a replay.
  t.equal(codeOf(() => bindKey(parts, claims({ jkt: key.jkt, 'x5t#S256': 'x' }), proven)), 'dpop_replay');
});

interface Call {
  readonly jkt: string;
  readonly jti: string;
  readonly untilMs: number;
}
/** A shared store (Redis-like): answers with a promise. */
function asyncStore(answer: (call: Call) => boolean): { store: ReplayStore; calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    store: {
      firstUse: (jkt, jti, untilMs) => {
        const call = { jkt, jti, untilMs };
        calls.push(call);
        return Promise.resolve(answer(call));
      },
      size: 0,
    },
  };
}

t.test('bindKey with a store that answers with a promise', async (t) => {
  const { store, calls } = asyncStore(() => true);
  const { parts } = partsOf({}, { replay: store });
  const proven: ProvenKey = proveKey(parts, inputOf(make()));
  const result = bindKey(parts, boundTo(key), proven);
  t.ok(result instanceof Promise, 'a promise');
  t.equal(await result, undefined, 'first use: resolves');
  t.strictSame(calls, [{ jkt: key.jkt, jti: proven.proof.jti, untilMs: proven.proof.replayableUntilMs }], 'asked with the proof\'s jkt, jti and window');

  const replayed = asyncStore(() => false);
  const again = partsOf({}, { replay: replayed.store }).parts;
  const pending = bindKey(again, boundTo(key), proven);
  t.ok(pending instanceof Promise);
  t.equal(await rejectionOf(() => pending), 'dpop_replay', 'seen before: rejects with dpop_replay');

  // The binding is checked before the store is asked, and throws synchronously.
  const untouched = asyncStore(() => true);
  const checked = partsOf({}, { replay: untouched.store }).parts;
  t.equal(codeOf(() => bindKey(checked, boundTo(other), proven)), 'dpop_key_mismatch');
  t.equal(codeOf(() => bindKey(checked, claims(), proven)), 'dpop_unbound_token');
  t.equal(untouched.calls.length, 0, 'the store is not asked for a token bound elsewhere');
});

t.test('bindKey with a store that answers with a rejected promise', async (t) => {
  const failing: ReplayStore = { firstUse: () => Promise.reject(new Error('store down')), size: 0 };
  const { parts } = partsOf({}, { replay: failing });
  const proven = proveKey(parts, inputOf(make()));
  await t.rejects(Promise.resolve(bindKey(parts, boundTo(key), proven)), { message: 'store down' }, 'the store\'s failure propagates');
});

t.test('bindKey with a synchronous store answering false', async (t) => {
  const store: ReplayStore = { firstUse: () => false, size: 0 };
  const { parts } = partsOf({}, { replay: store });
  const proven = proveKey(parts, inputOf(make()));
  t.equal(codeOf(() => bindKey(parts, boundTo(key), proven)), 'dpop_replay', 'thrown, not a rejected promise');
});
