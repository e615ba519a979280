// The revocation list on plain values: each kind, issued_before's edges, expiry, and add's answer.
import t from 'tap';
import { createRevocationList } from '../../src/shared/revocations.js';
import { claimsOf } from '../../src/token/claims.js';

let now = 1_800_000_000_000;
const list = () => createRevocationList(() => now);
const claims = (raw: Record<string, unknown>) => claimsOf(raw, (m) => new Error(m));

t.test('an empty list revokes nothing', async (t) => {
  t.equal(list().revoked('k', claims({ client_id: 'c' })), false);
  t.equal(list().size, 0);
});

t.test('by token key: before and without claims', async (t) => {
  const l = list();
  t.equal(l.add({ kind: 'token', key: 'k1', until: now + 1000 }), true);
  t.equal(l.add({ kind: 'token', key: 'k1', until: now + 500 }), false, 'a shorter copy changes nothing');
  t.equal(l.add({ kind: 'token', key: 'k1', until: now + 2000 }), true, 'a longer one extends it');
  t.equal(l.revoked('k1', undefined), true);
  t.equal(l.revoked('k2', claims({})), false);
  now += 2000;
  t.equal(l.revoked('k1', undefined), false, 'expired');
  t.equal(l.add({ kind: 'token', key: 'k3', until: now }), false, 'an entry already over is not added');
  t.equal(l.size, 0, 'pruned');
});

t.test('by client: tokens issued before, and tokens without iat', async (t) => {
  const l = list();
  l.add({ kind: 'client', clientId: 'tpp', issuedBefore: 1000, until: now + 1000 });
  t.equal(l.revoked('x', claims({ client_id: 'tpp', iat: 999 })), true, 'iat earlier');
  t.equal(l.revoked('x', claims({ client_id: 'tpp', iat: 1000 })), false, 'iat equal: not earlier');
  t.equal(l.revoked('x', claims({ client_id: 'tpp' })), true, 'no iat');
  t.equal(l.revoked('x', claims({ client_id: 'other', iat: 1 })), false, 'another client');
  t.equal(l.revoked('x', claims({ iat: 1 })), false, 'no client_id');
  t.equal(l.add({ kind: 'client', clientId: 'tpp', issuedBefore: 500, until: now + 500 }), false, 'an earlier cut-off, kept shorter: nothing new');
  t.equal(l.add({ kind: 'client', clientId: 'tpp', issuedBefore: 2000, until: now + 500 }), true, 'a later cut-off');
  t.equal(l.revoked('x', claims({ client_id: 'tpp', iat: 1500 })), true);
  now += 1001;
  t.equal(l.revoked('x', claims({ client_id: 'tpp', iat: 1 })), false, 'expired');
});

t.test('by certificate thumbprint: every token bound to it', async (t) => {
  const l = list();
  l.add({ kind: 'certificate', thumbprint: 'T'.repeat(43), until: now + 1000 });
  t.equal(l.revoked('x', claims({ cnf: { 'x5t#S256': 'T'.repeat(43) } })), true);
  t.equal(l.revoked('x', claims({ cnf: { 'x5t#S256': 'U'.repeat(43) } })), false);
  t.equal(l.revoked('x', claims({ cnf: { jkt: 'T'.repeat(43) } })), false, 'a DPoP key is not a certificate');
});
