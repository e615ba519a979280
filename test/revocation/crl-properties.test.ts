import t from 'tap';
import fc from 'fast-check';
import { readCrl } from '../../src/revocation/crl.js';
import { RevocationError, serialKey, type RevocationFailure } from '../../src/revocation/types.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const ca = createOpensslCa('CRL Property CA');
t.teardown(() => ca.remove());
const leaves = [ca.issue('One'), ca.issue('Two'), ca.issue('Three')];
for (const leaf of leaves) ca.revoke(leaf);
const crl = ca.crl();
const serials = leaves.map((leaf) => serialKey(leaf.serial));
const READ_FAILURES: readonly RevocationFailure[] = ['malformed', 'wrong_certificate', 'bad_signature', 'unsupported'];

type Mutation = { kind: 'flip'; at: number; bit: number } | { kind: 'truncate'; length: number } | { kind: 'insert'; at: number; bytes: Uint8Array } | { kind: 'set'; at: number; value: number };

const mutation = (size: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(size - 1), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('truncate' as const), length: fc.nat(size - 1) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(size), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    // The bytes that decide the structure: tags and lengths near the start, 0x00/0x80/0xff anywhere.
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(Math.min(size - 1, 40)), value: fc.constantFrom(0x00, 0x30, 0x80, 0x81, 0x84, 0xa0, 0xff) }),
  );

function mutate(der: Buffer, mutations: readonly Mutation[]): Buffer {
  let bytes = Buffer.from(der);
  for (const m of mutations) {
    if (m.kind === 'flip') bytes[m.at % bytes.length] = (bytes[m.at % bytes.length] ?? 0) ^ (1 << m.bit);
    else if (m.kind === 'set') bytes[m.at % bytes.length] = m.value;
    else if (m.kind === 'truncate') bytes = bytes.subarray(0, m.length);
    else bytes = Buffer.concat([bytes.subarray(0, m.at), m.bytes, bytes.subarray(m.at)]);
    if (bytes.length === 0) break;
  }
  return bytes;
}

t.test('a mutated real CRL is read as the same CRL or refused with a RevocationError, never anything else', async (t) => {
  const outcomes = new Map<string, number>();
  fc.assert(
    fc.property(fc.array(mutation(crl.der.length), { minLength: 1, maxLength: 3 }), (mutations) => {
      const bytes = mutate(crl.der, mutations);
      let outcome: string;
      try {
        const read = readCrl(bytes, [ca.x509]);
        // Accepted only when what was signed is intact: then it says exactly what the original says.
        if (read.size !== serials.length || !serials.every((serial) => read.has(serial)) || read.issuer !== ca.x509) return false;
        outcome = 'read';
      } catch (e) {
        if (!(e instanceof RevocationError) || !READ_FAILURES.includes(e.reason)) throw e;
        outcome = e.reason;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      return true;
    }),
    { numRuns: 300, seed: 5280 },
  );
  t.equal([...outcomes.values()].reduce((a, b) => a + b, 0), 300, 'every run judged');
  t.ok((outcomes.get('malformed') ?? 0) > 0, 'some runs break the structure');
  t.ok((outcomes.get('bad_signature') ?? 0) > 0, 'some runs break the signature');
});

t.test('the unmutated CRL is read', async (t) => {
  const read = readCrl(crl.der, [ca.x509]);
  t.equal(read.size, 3);
  t.ok(serials.every((serial) => read.has(serial)));
});
