import t from 'tap';
import { uuidV4 } from '../../src/uuid.js';

t.test('version 4 UUIDs: format, version and variant bits, no repeats', async (t) => {
  const seen = new Set<string>();
  const bad: string[] = [];
  // More than one pool of random bytes (256 UUIDs), so refills are crossed many times.
  for (let i = 0; i < 20_000; i++) {
    const id = uuidV4();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)) bad.push(id);
    seen.add(id);
  }
  t.same(bad, [], 'every one is a lower-case RFC 9562 version 4 UUID');
  t.equal(seen.size, 20_000, 'no repeats');
});

t.test('the random positions take every hex digit (no stuck bits)', async (t) => {
  const digits = Array.from({ length: 36 }, () => new Set<string>());
  for (let i = 0; i < 5_000; i++) [...uuidV4()].forEach((c, at) => digits[at]?.add(c));
  const fixed = new Set([8, 13, 14, 18, 19, 23]); // dashes, version, variant
  const stuck = digits.map((d, at) => (fixed.has(at) ? 16 : d.size)).flatMap((n, at) => (n === 16 ? [] : [at]));
  t.same(stuck, [], 'all 16 digits seen at every random position');
  t.same([...(digits[14] ?? [])], ['4'], 'version digit');
  t.same([...(digits[19] ?? [])].sort(), ['8', '9', 'a', 'b'], 'variant digit');
});
