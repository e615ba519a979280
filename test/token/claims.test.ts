import t from 'tap';
import { GatewayError } from '../../src/errors.js';
import { claimsAt, claimsOf, keyOf } from '../../src/token/claims.js';

const code = (f: () => unknown) => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof GatewayError ? e.code : String(e);
  }
};

t.test('claimsAt re-checks a cached outcome against the clock', async (t) => {
  const exp = 1_000;
  const outcome = { active: true as const, claims: { scopes: new Set<string>(), exp, nbf: 900, forwarded: {} } };
  t.equal(code(() => claimsAt(outcome, (exp + 29) * 1000, 30)), 'ok', 'within the skew after exp');
  t.equal(code(() => claimsAt(outcome, (exp + 30) * 1000, 30)), 'expired');
  t.equal(code(() => claimsAt(outcome, (900 - 31) * 1000, 30)), 'not_yet_valid');
  t.equal(code(() => claimsAt({ active: false }, 0, 30)), 'inactive');
});

t.test('claimsOf keeps only well-typed members', async (t) => {
  const malformed = (m: string) => new Error(`bad ${m}`);
  const c = claimsOf({ scope: ' a  b ', cnf: { jkt: 'x' }, extra: 1 }, malformed);
  t.same([...c.scopes], ['a', 'b'], 'empty scope tokens dropped');
  t.equal(c.x5tS256, undefined, 'a cnf without x5t#S256 binds nothing here');
  t.throws(() => claimsOf({ exp: Number.NaN }, malformed), /bad exp/);
  t.throws(() => claimsOf({ cnf: null }, malformed), /bad cnf/);
  t.throws(() => claimsOf({ cnf: [] }, malformed), /bad cnf/);
  t.throws(() => claimsOf({ sub: 1 }, malformed), /bad sub/);
});

t.test('keyOf is a SHA-256 hash, never the token', async (t) => {
  t.equal(keyOf('abc'), 'ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
});

t.test('claims are compact: values that repeat across tokens are kept once, and a claims object is its own outcome', async (t) => {
  const malformed = (m: string) => new Error(m);
  const thumbprint = 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2';
  const raw = (sub: string) => JSON.parse(JSON.stringify({ scope: 'accounts payments', client_id: 'tpp-a', sub, iss: 'https://as.example', exp: 2_000_000_000, cnf: { 'x5t#S256': thumbprint, jkt: 'jkt-1' } })) as Record<string, unknown>;
  const a = claimsOf(raw('user-1'), malformed);
  const b = claimsOf(raw('user-2'), malformed);
  t.equal(a.scopes, b.scopes, 'one scope set per scope string');
  t.same([...a.scopes], ['accounts', 'payments']);
  t.equal(a.x5tS256Bytes, b.x5tS256Bytes, 'one Buffer per thumbprint');
  t.same(a.x5tS256Bytes, Buffer.from(thumbprint));
  t.equal(a.jktBytes, b.jktBytes);
  t.same([a.x5tS256, a.jkt, a.clientId, a.subject, b.subject, a.iss, a.exp], [thumbprint, 'jkt-1', 'tpp-a', 'user-1', 'user-2', 'https://as.example', 2_000_000_000]);
  t.equal(claimsOf({ scope: 'payments accounts' }, malformed).scopes === a.scopes, false, 'another scope string, another set');
  t.equal(claimsOf({}, malformed).scopes.size, 0);
  t.equal(claimsOf({}, malformed).x5tS256Bytes, undefined);
  t.equal(claimsOf({}, malformed).jktBytes, undefined);
  // As an outcome: active, itself as the claims; what the cache stores instead of a wrapper.
  const outcome: import('../../src/token/claims.js').Outcome = a as unknown as import('../../src/token/claims.js').Outcome;
  t.equal(outcome.active, true);
  t.equal(outcome.active && outcome.claims, a);
  // Past 256 characters a value is not pooled, and a pool that fills up starts again: still correct.
  const long = 'x'.repeat(300);
  t.equal(claimsOf({ scope: long }, malformed).scopes.has(long), true);
  t.not(claimsOf({ scope: long }, malformed).scopes, claimsOf({ scope: long }, malformed).scopes);
  const wrong: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const c = claimsOf({ client_id: `client-${i}`, cnf: { 'x5t#S256': `t-${i}` } }, malformed);
    if (c.x5tS256Bytes?.toString() !== `t-${i}` || c.clientId !== `client-${i}`) wrong.push(i);
  }
  t.same(wrong, [], '5,000 distinct values through pools of 4,096');
  t.same(claimsOf(raw('user-3'), malformed).x5tS256Bytes, Buffer.from(thumbprint), 'after the pool started again');
});
