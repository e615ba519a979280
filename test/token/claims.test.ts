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
