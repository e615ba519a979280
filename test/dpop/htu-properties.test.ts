// htu normalisation as properties: every way of writing the URI the router normalized matches it,
// and nothing names another path, host, port or scheme. Exact: each run either holds or is a bug.
import t from 'tap';
import fc from 'fast-check';
import { htuMatches, normalizeHtu } from '../../src/dpop/htu.js';
import { parseTarget } from '../../src/route.js';

// Fixed seed, bounded runs: the same cases on every machine.
const RUNS = { numRuns: 400, seed: 9449 } as const;

/**
 * Characters a path segment holds once decoded: unreserved, sub-delims but `;` (the router
 * refuses it), `:` `@`, characters the URL parser or the router percent-encode, non-ASCII, and
 * `%` itself. Never `/`, `\`, NUL, `?`, `#` (no encoded slash: the router refuses those).
 */
const POOL = [
  ...'abcxyzABCXYZ0189-._~',
  ..."!$&'()*+,=:@",
  ...' "|[]^`{}<>',
  '%',
  'é', 'ß', '中', '😀',
];
/** Written literally in an htu, the URL parser reads these as themselves (percent-encoding them or not). */
const LITERAL_OK = (ch: string): boolean => !'%'.includes(ch);

const segment = fc
  .array(fc.constantFrom(...POOL), { minLength: 1, maxLength: 8 })
  .map((chars) => chars.join(''))
  .filter((s) => s !== '.' && s !== '..');

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const tld = fc.stringMatching(/^[a-z]{2,6}$/);
const host = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), tld).map(([labels, end]) => [...labels, end].join('.'));
/** undefined: the default port. */
const port = fc.option(fc.integer({ min: 1, max: 65535 }).filter((p) => p !== 443), { nil: undefined });

interface Path {
  readonly segments: readonly string[];
  readonly trailingSlash: boolean;
}
const path = fc.record({ segments: fc.array(segment, { maxLength: 5 }), trailingSlash: fc.boolean() });

/** The request target a client sends for `path`, and what the router makes of it: the expected side. */
const targetOf = (p: Path): string => `/${p.segments.map(encodeURIComponent).join('/')}${p.trailingSlash && p.segments.length > 0 ? '/' : ''}`;
const encodedPathOf = (p: Path): string => parseTarget(targetOf(p)).encodedPath;
const originOf = (h: string, pt: number | undefined): string => `https://${h}${pt === undefined ? '' : `:${pt}`}`;

/** How one htu spells the URI: the choices the property draws. */
interface Spelling {
  readonly schemeCase: readonly boolean[];
  readonly hostCase: readonly boolean[];
  /** Write the port (the default one too) with this many leading zeros; undefined: as the origin does. */
  readonly portZeros: number | undefined;
  /** Per character of the path: written literally (when it can be), and the case of each hex digit. */
  readonly chars: readonly { readonly literal: boolean; readonly upper: readonly boolean[] }[];
  /** Per segment: a dot segment or a detour written before it, and a doubled slash. */
  readonly detours: readonly { readonly dots: 0 | 1 | 2 | 3 | 4; readonly doubled: boolean; readonly detour: string }[];
  readonly query: string | undefined;
  readonly fragment: string | undefined;
}

const caseFlags = (n: number): fc.Arbitrary<boolean[]> => fc.array(fc.boolean(), { minLength: n, maxLength: n });
const spelling: fc.Arbitrary<Spelling> = fc.record({
  schemeCase: caseFlags(5),
  hostCase: caseFlags(64),
  portZeros: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
  chars: fc.array(fc.record({ literal: fc.boolean(), upper: caseFlags(8) }), { minLength: 60, maxLength: 60 }),
  detours: fc.array(
    fc.record({ dots: fc.constantFrom<0 | 1 | 2 | 3 | 4>(0, 1, 2, 3, 4), doubled: fc.boolean(), detour: segment }),
    { minLength: 6, maxLength: 6 },
  ),
  query: fc.option(fc.string({ maxLength: 10 }).map((s) => s.replace(/#/g, '')), { nil: undefined }),
  fragment: fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
});

const withCase = (text: string, upper: readonly boolean[]): string => [...text].map((ch, i) => (upper[i % upper.length] ? ch.toUpperCase() : ch.toLowerCase())).join('');
const percent = (ch: string, upper: readonly boolean[]): string =>
  [...Buffer.from(ch, 'utf8')].map((byte, i) => `%${withCase(byte.toString(16).padStart(2, '0'), [upper[(2 * i) % 8] ?? false, upper[(2 * i + 1) % 8] ?? false])}`).join('');

/**
 * `path` on `h`:`pt` as one client might write its htu: scheme and host in any case, the port
 * written out (the default one too, with leading zeros), each character literal or percent-encoded
 * in either case, dot segments and detours (`x/..`) before segments, doubled slashes, a query, a
 * fragment. Never a dot segment last nor after an empty segment: there the router's resolution is
 * not RFC 3986's, and htu.test.ts checks those cases one by one.
 */
function spell(p: Path, h: string, pt: number | undefined, s: Spelling): string {
  const scheme = withCase('https', s.schemeCase);
  const portText = s.portZeros === undefined ? (pt === undefined ? '' : `:${pt}`) : `:${'0'.repeat(s.portZeros)}${pt ?? 443}`;
  let k = 0;
  const spellSegment = (text: string): string =>
    [...text].map((ch) => {
      const choice = s.chars[k++ % s.chars.length] as Spelling['chars'][number];
      return choice.literal && LITERAL_OK(ch) ? ch : percent(ch, choice.upper);
    }).join('');
  let out = '';
  p.segments.forEach((seg, i) => {
    const d = s.detours[i % s.detours.length] as Spelling['detours'][number];
    if (d.dots === 1) out += '/.';
    if (d.dots === 2) out += '/%2E';
    if (d.dots === 3) out += `/${spellSegment(d.detour)}/..`;
    if (d.dots === 4) out += `/${spellSegment(d.detour)}/%2e%2E`;
    if (d.doubled) out += '/';
    out += `/${spellSegment(seg)}`;
  });
  if (p.trailingSlash || p.segments.length === 0) out += '/';
  if (p.segments.length === 0 && s.detours[0]?.doubled === true) out = ''; // https://host, no path at all
  return `${scheme}://${withCase(h, s.hostCase)}${portText}${out}${s.query === undefined ? '' : `?${s.query}`}${s.fragment === undefined ? '' : `#${s.fragment}`}`;
}

t.test('the expected side is a fixed point: the fast path accepts nothing the normalization would not', async (t) => {
  fc.assert(
    fc.property(host, port, path, (h, pt, p) => {
      const origin = originOf(h, pt);
      const expected = origin + encodedPathOf(p);
      return normalizeHtu(expected) === expected && htuMatches(expected, origin, encodedPathOf(p));
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('any spelling of the URI matches', async (t) => {
  fc.assert(
    fc.property(host, port, path, spelling, (h, pt, p, s) => {
      const origin = originOf(h, pt);
      const htu = spell(p, h, pt, s);
      const encodedPath = encodedPathOf(p);
      if (normalizeHtu(htu) !== origin + encodedPath) throw new Error(`${htu} normalizes to ${normalizeHtu(htu)}, not ${origin}${encodedPath}`);
      return htuMatches(htu, origin, encodedPath);
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('a spelling of another path does not match', async (t) => {
  fc.assert(
    fc.property(host, port, path, path, spelling, (h, pt, p, q, s) => {
      fc.pre(encodedPathOf(p) !== encodedPathOf(q));
      return !htuMatches(spell(p, h, pt, s), originOf(h, pt), encodedPathOf(q));
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('a spelling on another host or port does not match', async (t) => {
  fc.assert(
    fc.property(host, host, port, port, path, spelling, (h, g, pt, qt, p, s) => {
      fc.pre(h !== g || pt !== qt);
      return !htuMatches(spell(p, h, pt, s), originOf(g, qt), encodedPathOf(p));
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('http, or credentials in the authority, never match', async (t) => {
  fc.assert(
    fc.property(host, port, path, spelling, fc.stringMatching(/^[a-z0-9]{1,8}$/), (h, pt, p, s, user) => {
      const htu = spell(p, h, pt, s);
      const origin = originOf(h, pt);
      const encodedPath = encodedPathOf(p);
      const plain = htu.replace(/^https/i, 'http');
      const withUser = htu.replace('://', `://${user}@`);
      const withPassword = htu.replace('://', `://${user}:${user}@`);
      return !htuMatches(plain, origin, encodedPath) && !htuMatches(withUser, origin, encodedPath) && !htuMatches(withPassword, origin, encodedPath);
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('an encoded slash, backslash or NUL anywhere in the path: no URI', async (t) => {
  fc.assert(
    fc.property(host, path, spelling, fc.constantFrom('%2F', '%2f', '%5C', '%5c', '%00'), fc.nat(), (h, p, s, bad, at) => {
      // No detour (`x/..`): an encoded slash inside a segment that `..` removes is gone with it.
      const htu = spell(p, h, undefined, { ...s, query: undefined, fragment: undefined, detours: s.detours.map((d) => ({ ...d, dots: d.dots > 2 ? 0 : d.dots })) });
      const pathStart = htu.indexOf('/', 'https://'.length);
      fc.pre(pathStart !== -1);
      const i = pathStart + 1 + (at % (htu.length - pathStart));
      return normalizeHtu(`${htu.slice(0, i)}${bad}${htu.slice(i)}`) === undefined;
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});

t.test('normalizeHtu never throws and is idempotent', async (t) => {
  const anyText = fc.oneof(fc.string({ maxLength: 40 }), fc.webUrl({ withQueryParameters: true, withFragments: true }), fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `https://h/${s}`));
  fc.assert(
    fc.property(anyText, (text) => {
      const once = normalizeHtu(text);
      return once === undefined || normalizeHtu(once) === once;
    }),
    RUNS,
  );
  t.pass(`${RUNS.numRuns} runs`);
});
