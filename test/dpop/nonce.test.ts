// RFC 9449 §8, §9: stateless server nonces, on a frozen clock.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { createNonces, type NonceOptions, type Nonces } from '../../src/dpop/nonce.js';

const SECRET = Buffer.alloc(32, 7);
const LIFETIME = 300;
const STEP = 60; // floor(300 / 5)
const LEEWAY = 60;
/** A step boundary: the nonce current() hands out is issued exactly now. */
const T0_S = Math.ceil(1_700_000_000 / STEP) * STEP;
const T0 = T0_S * 1000;

interface Clocked {
  readonly nonces: Nonces;
  /** Sets the clock, in ms since the epoch. */
  at(ms: number): Nonces;
}
function clocked(over: Partial<Omit<NonceOptions, 'clock'>> = {}, start = T0): Clocked {
  let now = start;
  const nonces = createNonces({ secret: SECRET, lifetimeSeconds: LIFETIME, leewaySeconds: LEEWAY, clock: () => now, ...over });
  return {
    nonces,
    at(ms) {
      now = ms;
      return nonces;
    },
  };
}
const VALID_FRESH = { valid: true, refresh: false } as const;
const VALID_REFRESH = { valid: true, refresh: true } as const;
const INVALID = { valid: false } as const;
const macOf = (secret: Buffer, step: number): string => createHmac('sha256', secret).update(`certbound-dpop-nonce:${step}`).digest().subarray(0, 16).toString('base64url');

t.test('the nonce: the step and an HMAC of it (the format replicas share)', async (t) => {
  const { nonces } = clocked();
  const nonce = nonces.current();
  t.match(nonce, /^\d{1,12}\.[A-Za-z0-9_-]{22}$/);
  t.equal(nonce, `${T0_S / STEP}.${macOf(SECRET, T0_S / STEP)}`);
});

t.test('current(): stable within a step, another one in the next', async (t) => {
  const c = clocked();
  const first = c.at(T0).current();
  t.equal(c.at(T0 + 1).current(), first);
  t.equal(c.at(T0 + 30_000).current(), first);
  t.equal(c.at(T0 + STEP * 1000 - 1).current(), first, 'the last millisecond of the step');
  const second = c.at(T0 + STEP * 1000).current();
  t.not(second, first, 'the first millisecond of the next step');
  t.equal(second, `${T0_S / STEP + 1}.${macOf(SECRET, T0_S / STEP + 1)}`);
  t.equal(c.at(T0 + 10 * STEP * 1000).current(), `${T0_S / STEP + 10}.${macOf(SECRET, T0_S / STEP + 10)}`);
  // A clock set back: the earlier step's nonce again (computed, not remembered).
  t.equal(c.at(T0 + 5).current(), first);
});

t.test('check(): valid, refresh after half the lifetime, invalid after it', async (t) => {
  const c = clocked();
  const nonce = c.at(T0).current();
  t.strictSame(c.nonces.check(nonce), VALID_FRESH, 'just issued');
  t.strictSame(c.at(T0 + 1000).check(nonce), VALID_FRESH);
  t.strictSame(c.at(T0 + (LIFETIME / 2) * 1000).check(nonce), VALID_FRESH, 'exactly half the lifetime');
  t.strictSame(c.at(T0 + (LIFETIME / 2) * 1000 + 1).check(nonce), VALID_REFRESH, 'more than half the lifetime');
  t.strictSame(c.at(T0 + (LIFETIME - 1) * 1000).check(nonce), VALID_REFRESH);
  t.strictSame(c.at(T0 + LIFETIME * 1000).check(nonce), VALID_REFRESH, 'exactly the lifetime');
  t.strictSame(c.at(T0 + LIFETIME * 1000 + 1).check(nonce), INVALID, 'one millisecond after the lifetime');
  t.strictSame(c.at(T0 + 86_400_000).check(nonce), INVALID, 'a day later');
});

t.test('a nonce handed out late in its step is good for at least 4/5 of the lifetime', async (t) => {
  const c = clocked();
  const late = c.at(T0 + STEP * 1000 - 1).current();
  t.equal(late, c.at(T0).current(), 'issued at the step start');
  const handedOut = T0 + STEP * 1000 - 1;
  t.strictSame(c.at(handedOut + (LIFETIME * 4 / 5) * 1000).check(late), VALID_REFRESH, '4/5 of the lifetime after it was handed out');
  t.strictSame(c.at(handedOut + (LIFETIME * 4 / 5) * 1000 + 2).check(late), INVALID);
});

t.test('check(): nonces from another secret, tampered, garbage', async (t) => {
  const c = clocked();
  const nonce = c.nonces.current();
  const [step, mac] = nonce.split('.') as [string, string];
  const other = clocked({ secret: Buffer.alloc(32, 8) }).nonces.current();
  t.not(other, nonce);
  t.strictSame(c.nonces.check(other), INVALID, 'another secret');
  t.strictSame(c.nonces.check(`${step}.${other.split('.')[1] as string}`), INVALID, 'this step, another secret\'s MAC');
  const flip = (text: string, i: number): string => `${text.slice(0, i)}${text[i] === 'A' ? 'B' : 'A'}${text.slice(i + 1)}`;
  const cases: Record<string, string | undefined> = {
    'undefined': undefined,
    'empty': '',
    'garbage': 'garbage',
    'a JWT': 'eyJhbGciOiJub25lIn0.e30.',
    'the MAC only': mac,
    'the step only': step,
    'the step and a dot': `${step}.`,
    'first MAC character changed': `${step}.${flip(mac, 0)}`,
    'a middle MAC character changed': `${step}.${flip(mac, 11)}`,
    'the MAC of the next step': `${step}.${macOf(SECRET, Number(step) + 1)}`,
    'the next step with this MAC': `${Number(step) + 1}.${mac}`,
    'the previous step with this MAC': `${Number(step) - 1}.${mac}`,
    'MAC one character short': `${step}.${mac.slice(0, 21)}`,
    'MAC one character long': `${step}.${mac}A`,
    'MAC padded': `${step}.${mac}==`,
    'a standard base64 character in the MAC': `${step}.+${mac.slice(1)}`,
    'another standard base64 character in the MAC': `${step}.${mac.slice(0, 5)}/${mac.slice(6)}`,
    'a space after': `${nonce} `,
    'a space before': ` ${nonce}`,
    'a line break after': `${nonce}\n`,
    'a negative step': `-${nonce}`,
    'a signed step': `+${nonce}`,
    'a step of 13 digits': `${'1'.repeat(13)}.${mac}`,
    'a hex step': `0x${Number(step).toString(16)}.${mac}`,
    'two dots': `${step}..${mac}`,
    'the nonce twice': `${nonce}${nonce}`,
  };
  for (const [name, value] of Object.entries(cases)) t.strictSame(c.nonces.check(value), INVALID, name);
  t.strictSame(c.nonces.check(nonce), VALID_FRESH, 'the nonce itself');
});

// A 16-byte MAC in 22 base64url characters leaves 4 bits of the last one unused, and the step is read
// as a number: other spellings of a nonce certbound issued decode to the same step and MAC.
t.test('check(): only the nonce as issued, not another spelling of it', async (t) => {
  const c = clocked();
  const nonce = c.nonces.current();
  const [step, mac] = nonce.split('.') as [string, string];
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = ALPHABET.indexOf(mac.slice(-1));
  const sibling = `${mac.slice(0, -1)}${ALPHABET[last ^ 1] as string}`;
  t.not(sibling, mac);
  t.ok(Buffer.from(sibling, 'base64url').equals(Buffer.from(mac, 'base64url')), 'the two spellings decode to the same 16 bytes');
  t.strictSame(c.nonces.check(`${step}.${sibling}`), INVALID, 'the last character with other unused bits');
  t.strictSame(c.nonces.check(`0${nonce}`), INVALID, 'the step with a leading zero');
});

t.test('a nonce from a step ahead: accepted up to the leeway', async (t) => {
  const here = clocked();
  // Another replica whose clock runs ahead.
  const ahead = (ms: number): string => clocked({}, T0 + ms).nonces.current();
  t.strictSame(here.nonces.check(ahead(STEP * 1000)), VALID_FRESH, 'one step (60 s = the leeway) ahead');
  t.strictSame(here.nonces.check(ahead(STEP * 1000 + 59_999)), VALID_FRESH, 'still that step');
  t.strictSame(here.nonces.check(ahead(2 * STEP * 1000)), INVALID, 'two steps (120 s) ahead: beyond the leeway');
  t.strictSame(here.nonces.check(`${'9'.repeat(12)}.${macOf(SECRET, 999_999_999_999)}`), INVALID, 'far in the future, correctly signed');
  // The same step, seen a millisecond later, is within the leeway.
  t.strictSame(here.at(T0 + 1).check(ahead(2 * STEP * 1000)), INVALID);
  t.strictSame(here.at(T0 + STEP * 1000).check(ahead(2 * STEP * 1000)), VALID_FRESH, 'once the step is one leeway ahead');
  // Without leeway, any step ahead is refused.
  const strict = clocked({ leewaySeconds: 0 });
  t.strictSame(strict.nonces.check(ahead(STEP * 1000)), INVALID, 'leeway 0: one step ahead');
  t.strictSame(strict.nonces.check(ahead(0)), VALID_FRESH, 'leeway 0: this step');
});

t.test('replicas with the same secret accept each other\'s nonces', async (t) => {
  const a = clocked({ secret: Buffer.from(SECRET) });
  const b = clocked({ secret: Buffer.alloc(32, 7) });
  t.equal(a.nonces.current(), b.nonces.current(), 'the same nonce at the same time');
  t.strictSame(b.nonces.check(a.nonces.current()), VALID_FRESH);
  t.strictSame(a.nonces.check(b.nonces.current()), VALID_FRESH);
  // Issued by a, checked later by b.
  const fromA = a.nonces.current();
  t.strictSame(b.at(T0 + 200_000).check(fromA), VALID_REFRESH);
  t.strictSame(b.at(T0 + 301_000).check(fromA), INVALID);
  // A replica started later (a new instance: nothing remembered) accepts it as well.
  t.strictSame(clocked({}, T0 + 100_000).nonces.check(fromA), VALID_FRESH);
  // Another lifetime (a replica configured otherwise) reads the same step number as another time.
  t.strictSame(clocked({ lifetimeSeconds: 600 }).nonces.check(fromA), INVALID, 'steps of 120 s: step n names a time twice as far');
});

t.test('step lengths', async (t) => {
  const stepOf = (nonce: string): number => Number(nonce.split('.')[0]);
  for (const [lifetime, step] of [[300, 60], [10, 2], [11, 2], [7, 1], [5, 1], [4, 1], [3, 1], [1, 1], [86_400, 17_280]] as const) {
    const c = clocked({ lifetimeSeconds: lifetime }, 0);
    const at = (s: number): number => stepOf(c.at(s * 1000).current());
    t.equal(at(T0_S), Math.floor(T0_S / step), `lifetime ${lifetime}: step ${step} s`);
    t.equal(at(T0_S + step) - at(T0_S), 1, `lifetime ${lifetime}: the next step ${step} s later`);
  }
});

t.test('a short lifetime (step of one second)', async (t) => {
  const c = clocked({ lifetimeSeconds: 3, leewaySeconds: 1 });
  const nonce = c.at(T0).current();
  t.strictSame(c.at(T0 + 1000).check(nonce), VALID_FRESH);
  t.strictSame(c.at(T0 + 1500).check(nonce), VALID_FRESH, 'exactly half of 3 s');
  t.strictSame(c.at(T0 + 1501).check(nonce), VALID_REFRESH);
  t.strictSame(c.at(T0 + 3000).check(nonce), VALID_REFRESH);
  t.strictSame(c.at(T0 + 3001).check(nonce), INVALID);
  t.not(c.at(T0 + 1000).current(), nonce, 'a new nonce every second');
});
