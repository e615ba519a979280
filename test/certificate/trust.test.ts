import t from 'tap';
import { createProxyTrust } from '../../src/certificate/trust.js';

t.test('answers are remembered per address, and stay exact past the memory bound', async (t) => {
  const trusted = createProxyTrust(['10.0.0.0/8', '::1']);
  for (let pass = 0; pass < 2; pass++) {
    t.equal(trusted('10.1.2.3'), true, `pass ${pass}: trusted`);
    t.equal(trusted('11.1.2.3'), false, `pass ${pass}: not trusted`);
    t.equal(trusted('::ffff:10.1.2.3'), true, `pass ${pass}: IPv4-mapped`);
    t.equal(trusted(undefined), false, `pass ${pass}: no address`);
    t.equal(trusted('not-an-ip'), false, `pass ${pass}: not an address`);
  }
  // More distinct peers than it remembers (4,096): every answer is still the BlockList's.
  const wrong: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const inside = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const outside = `12.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (!trusted(inside)) wrong.push(inside);
    if (trusted(outside)) wrong.push(outside);
  }
  t.same(wrong, []);
  t.equal(trusted('::1'), true);
  t.equal(trusted('::2'), false);
});
