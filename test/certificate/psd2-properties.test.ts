import t from 'tap';
import fc from 'fast-check';
import { readPsd2Statement, type Psd2Statement } from '../../src/certificate/psd2.js';
import { PSD2_ROLES, type Psd2Role } from '../../src/config/schema.js';
import { psd2QcStatements } from '../fixtures/openssl-ca.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

// Fixed seed, bounded runs: the same cases on every machine.
const RUNS = { numRuns: 200, seed: 1194952 } as const;
const KNOWN_OIDS = new Set(['0.4.0.19495.1.1', '0.4.0.19495.1.2', '0.4.0.19495.1.3', '0.4.0.19495.1.4']);

/** Never throws, and the roles are distinct known roles in PSD2_ROLES order. */
function wellFormed(value: Uint8Array): Psd2Statement {
  const statement = readPsd2Statement(value);
  const canonical = PSD2_ROLES.filter((role) => statement.roles.includes(role));
  if (statement.roles.length !== canonical.length || statement.roles.some((role, i) => role !== canonical[i])) {
    throw new Error(`roles not a subset of PSD2_ROLES in order: ${JSON.stringify(statement.roles)}`);
  }
  if (!Object.isFrozen(statement) || !Object.isFrozen(statement.roles)) throw new Error('not frozen');
  return statement;
}

const seq = (body: Uint8Array): Buffer => {
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([0x30, ...length]), body]);
};
// QCStatements { QCStatement { 0.4.0.19495.2, SEQUENCE { <bytes> } } }
const asPsd2Info = (content: Uint8Array): Buffer => seq(seq(Buffer.concat([Buffer.from('0606040081982702', 'hex'), seq(content)])));

const unknownOid = fc
  .tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(fc.integer({ min: 0, max: 2 ** 20 }), { maxLength: 6 }))
  .map(([a, b, rest]) => [a, b, ...rest].join('.'))
  .filter((oid) => !KNOWN_OIDS.has(oid));
const roleEntry = fc.oneof(fc.constantFrom<Psd2Role>(...PSD2_ROLES), unknownOid);
const validStatement = fc
  .tuple(fc.array(roleEntry, { maxLength: 8 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 12 }))
  .map(([roles, ncaName, ncaId]) => psd2QcStatements(roles, ncaName, ncaId));

t.test('arbitrary bytes as the qcStatements value: never throws, roles ⊆ PSD2_ROLES', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
      wellFormed(bytes);
    }),
    RUNS,
  );
  t.pass('200 runs');
});

t.test('arbitrary bytes inside a PSD2 statement: never throws, roles ⊆ PSD2_ROLES', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      wellFormed(asPsd2Info(bytes));
    }),
    RUNS,
  );
  t.pass('200 runs');
});

t.test('well-formed statements: exactly the known roles listed, deduplicated, in PSD2_ROLES order', async (t) => {
  fc.assert(
    fc.property(
      fc.array(roleEntry, { maxLength: 10 }),
      fc.oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.integer({ min: 250, max: 260 }).map((n) => 'N'.repeat(n))),
      fc.string({ unit: 'binary', maxLength: 20 }),
      (roles, ncaName, ncaId) => {
        const statement = wellFormed(psd2QcStatements(roles, ncaName, ncaId));
        if (JSON.stringify(statement.roles) !== JSON.stringify(PSD2_ROLES.filter((role) => roles.includes(role)))) return false;
        // Either the text as encoded, or nothing; printable ASCII of 1–256 characters is always kept.
        const keeps = (text: string, read: string | undefined) => (read === undefined || read === text) && (!/^[\x20-\x7e]{1,256}$/.test(text) || read === text);
        return keeps(ncaName, statement.ncaName) && keeps(ncaId, statement.ncaId);
      },
    ),
    RUNS,
  );
  t.pass('200 runs');
});

t.test('a well-formed statement with one byte changed: never throws', async (t) => {
  fc.assert(
    fc.property(validStatement, fc.nat(), fc.integer({ min: 0, max: 255 }), (value, at, byte) => {
      const mutated = Buffer.from(value);
      mutated[at % mutated.length] = byte;
      wellFormed(mutated);
    }),
    RUNS,
  );
  t.pass('200 runs');
});

t.test('a truncated or extended statement: roles []', async (t) => {
  fc.assert(
    fc.property(validStatement, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (value, cut, tail) => {
      const prefix = wellFormed(value.subarray(0, cut % value.length));
      const longer = wellFormed(Buffer.concat([value, tail]));
      return prefix.roles.length === 0 && longer.roles.length === 0;
    }),
    RUNS,
  );
  t.pass('200 runs');
});
