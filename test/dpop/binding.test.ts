// RFC 9449 §6, §7: checkKeyBinding and refuseDowngrade (src/binding.ts), on claims as claimsOf builds them.
import t from 'tap';
import { checkKeyBinding, refuseDowngrade } from '../../src/binding.js';
import type { Proof } from '../../src/dpop/proof.js';
import { claimsOf } from '../../src/token/claims.js';
import type { TokenClaims } from '../../src/token/types.js';
import { codeOf } from '../helpers/codes.js';
import { proofKey } from './fixtures.js';

const X5T = 'A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0';
const key = proofKey('ES256');
const other = proofKey('ES256');
const claims = (cnf?: Record<string, unknown>): TokenClaims => claimsOf({ scope: 'accounts', ...(cnf === undefined ? {} : { cnf }) }, (m) => new Error(m));
const proofOf = (jkt: string): Proof => ({ jkt, jktBytes: Buffer.from(jkt), jti: 'j', replayableUntilMs: 0 });

t.test('refuseDowngrade: a DPoP-bound token presented as a bearer token', async (t) => {
  t.equal(codeOf(() => refuseDowngrade(claims({ jkt: key.jkt }))), 'dpop_downgrade', 'cnf.jkt');
  t.equal(codeOf(() => refuseDowngrade(claims({ jkt: key.jkt, 'x5t#S256': X5T }))), 'dpop_downgrade', 'cnf.jkt and cnf.x5t#S256');
  t.equal(codeOf(() => refuseDowngrade(claims({ jkt: '' }))), 'dpop_downgrade', 'an empty cnf.jkt is still a binding');
  t.equal(codeOf(() => refuseDowngrade(claims())), 'no error', 'no cnf');
  t.equal(codeOf(() => refuseDowngrade(claims({}))), 'no error', 'an empty cnf');
  t.equal(codeOf(() => refuseDowngrade(claims({ 'x5t#S256': X5T }))), 'no error', 'certificate-bound only');
  t.equal(refuseDowngrade(claims()), undefined);
});

t.test('claimsOf refuses a cnf.jkt that is no string', async (t) => {
  t.throws(() => claims({ jkt: 1 }), { message: 'cnf' });
  t.throws(() => claims({ jkt: null }), { message: 'cnf' });
  t.throws(() => claims({ jkt: [key.jkt] }), { message: 'cnf' });
});

t.test('checkKeyBinding', async (t) => {
  t.equal(checkKeyBinding(claims({ jkt: key.jkt }), proofOf(key.jkt)), undefined);
  t.equal(codeOf(() => checkKeyBinding(claims(), proofOf(key.jkt))), 'dpop_unbound_token');
  t.equal(codeOf(() => checkKeyBinding(claims({ 'x5t#S256': X5T }), proofOf(key.jkt))), 'dpop_unbound_token');
  t.equal(codeOf(() => checkKeyBinding(claims({ jkt: other.jkt }), proofOf(key.jkt))), 'dpop_key_mismatch');
  t.equal(codeOf(() => checkKeyBinding(claims({ jkt: key.jkt }), proofOf(`${key.jkt}x`))), 'dpop_key_mismatch');
  t.equal(codeOf(() => checkKeyBinding(claims({ jkt: `${key.jkt}x` }), proofOf(key.jkt))), 'dpop_key_mismatch');
  t.equal(codeOf(() => checkKeyBinding(claims({ jkt: '' }), proofOf(key.jkt))), 'dpop_key_mismatch');
  // The bytes are compared, as derived once per claims object: the same claims serve many checks.
  const bound = claims({ jkt: key.jkt });
  for (let i = 0; i < 3; i++) {
    t.equal(codeOf(() => checkKeyBinding(bound, proofOf(key.jkt))), 'no error');
    t.equal(codeOf(() => checkKeyBinding(bound, proofOf(other.jkt))), 'dpop_key_mismatch');
  }
  t.equal(bound.jktBytes, bound.jktBytes, 'derived once');
});
