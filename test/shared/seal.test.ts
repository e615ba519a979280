// What replicas write about a token in Redis: keys that name no token, values that open only for
// their token under the shared secret.
import t from 'tap';
import { createSealer } from '../../src/shared/seal.js';

const secret = Buffer.alloc(32, 7);
const sealer = createSealer(secret);

t.test('keys are HMACs: stable per token and secret, different otherwise, never the token', async (t) => {
  t.equal(sealer.keyOf('tok'), createSealer(Buffer.from(secret)).keyOf('tok'), 'every replica with the secret names it alike');
  t.not(sealer.keyOf('tok'), sealer.keyOf('tok2'));
  t.not(sealer.keyOf('tok'), createSealer(Buffer.alloc(32, 8)).keyOf('tok'), 'another secret, another key');
  t.match(sealer.keyOf('tok'), /^[A-Za-z0-9_-]{43}$/);
});

t.test('a sealed value opens for its token only, and hides its plaintext', async (t) => {
  const plaintext = Buffer.from('{"client_id":"tpp-a","scope":"accounts"}');
  const sealed = sealer.seal('tok', plaintext);
  t.same(sealer.open('tok', sealed), plaintext);
  t.notOk(sealed.includes(Buffer.from('tpp-a')), 'no claim in clear');
  t.not(sealer.seal('tok', plaintext).toString('hex'), sealed.toString('hex'), 'a fresh IV each time');
  t.equal(sealer.open('tok2', sealed), undefined, "another token's value does not open");
  t.equal(createSealer(Buffer.alloc(32, 8)).open('tok', sealed), undefined, 'another secret does not open it');
  for (let i = 0; i < sealed.length; i++) {
    const tampered = Buffer.from(sealed);
    tampered[i] = (tampered[i] as number) ^ 1;
    if (sealer.open('tok', tampered) !== undefined) t.fail(`byte ${i} flipped still opens`);
  }
  t.equal(sealer.open('tok', sealed.subarray(0, 20)), undefined, 'too short');
  t.equal(sealer.open('tok', Buffer.from([2, ...sealed.subarray(1)])), undefined, 'another format version');
});
