// RFC 9449 §4.3 check 9: htu names the configured origin plus the router's normalized path.
import t from 'tap';
import { htuMatches, normalizeHtu } from '../../src/dpop/htu.js';
import { parseTarget } from '../../src/route.js';

const ORIGIN = 'https://api.example.com';

t.test('normalizeHtu: the canonical string', async (t) => {
  const cases: Record<string, string> = {
    'https://api.example.com/accounts': 'https://api.example.com/accounts',
    'https://api.example.com': 'https://api.example.com/',
    'https://api.example.com/': 'https://api.example.com/',
    'HTTPS://API.EXAMPLE.COM/accounts': 'https://api.example.com/accounts',
    'https://api.example.com:443/accounts': 'https://api.example.com/accounts',
    'https://api.example.com:8443/accounts': 'https://api.example.com:8443/accounts',
    'http://api.example.com:80/accounts': 'http://api.example.com/accounts',
    'http://api.example.com:443/accounts': 'http://api.example.com:443/accounts',
    'https://api.example.com:80/accounts': 'https://api.example.com:80/accounts',
    'https://api.example.com/accounts?x=1#f': 'https://api.example.com/accounts',
    'https://api.example.com/accounts#f?x=1': 'https://api.example.com/accounts',
    'https://api.example.com/%7e/%7E/~': 'https://api.example.com/~/~/~',
    'https://api.example.com/%61%62c': 'https://api.example.com/abc',
    'https://api.example.com/caf%c3%a9': 'https://api.example.com/caf%C3%A9',
    'https://api.example.com/café': 'https://api.example.com/caf%C3%A9',
    'https://api.example.com/a%20b': 'https://api.example.com/a%20b',
    'https://api.example.com/a b': 'https://api.example.com/a%20b',
    'https://api.example.com/a|b': 'https://api.example.com/a%7Cb',
    'https://api.example.com/a%7cb': 'https://api.example.com/a%7Cb',
    "https://api.example.com/!$&'()*+,=:@": "https://api.example.com/!$&'()*+,=:@",
    'https://api.example.com/a/./b': 'https://api.example.com/a/b',
    'https://api.example.com/a/x/../b': 'https://api.example.com/a/b',
    'https://api.example.com/../../a': 'https://api.example.com/a',
    'https://api.example.com/a/%2e%2E/b': 'https://api.example.com/b',
    'https://api.example.com/a//b': 'https://api.example.com/a/b',
    'https://api.example.com/a/': 'https://api.example.com/a/',
    'https://api.example.com/a%2541': 'https://api.example.com/a%2541',
    'https://[::1]:8443/a': 'https://[::1]:8443/a',
    'https://127.0.0.1/a': 'https://127.0.0.1/a',
    'https://bücher.example/a': 'https://xn--bcher-kva.example/a',
  };
  for (const [htu, expected] of Object.entries(cases)) t.equal(normalizeHtu(htu), expected, htu);
});

t.test('normalizeHtu: no http(s) URI, or a path the router refuses', async (t) => {
  const cases = [
    'not a url',
    '',
    '/accounts',
    'api.example.com/accounts',
    'ftp://x/',
    'wss://api.example.com/a',
    'file:///etc/passwd',
    'mailto:a@example.com',
    'data:text/plain,x',
    'https://',
    'https://exa mple.com/',
    'https://user@api.example.com/a',
    'https://user:pw@api.example.com/a',
    'https://:pw@api.example.com/a',
    'https://api.example.com/a%2Fb',
    'https://api.example.com/a%2fb',
    'https://api.example.com/a%5Cb',
    'https://api.example.com/a%00b',
    'https://api.example.com/a;b',
    'https://api.example.com/a%3Bb',
    'https://api.example.com/a%3bb',
    'https://api.example.com/a%ffb',
    'https://api.example.com/a%c3',
    'https://api.example.com/a%zz',
    'https://api.example.com/a%',
    'https://api.example.com:99999/a',
  ];
  for (const htu of cases) t.equal(normalizeHtu(htu), undefined, JSON.stringify(htu));
});

t.test('htuMatches: the fast path (exactly the expected string)', async (t) => {
  t.ok(htuMatches('https://api.example.com/accounts', ORIGIN, '/accounts'));
  t.ok(htuMatches('https://api.example.com/', ORIGIN, '/'));
  t.ok(htuMatches('https://api.example.com/caf%C3%A9', ORIGIN, '/caf%C3%A9'));
  // Same length, same origin prefix, another path: not the fast path, and no match.
  t.notOk(htuMatches('https://api.example.com/accountz', ORIGIN, '/accounts'));
  t.notOk(htuMatches('https://api.example.con/accounts', ORIGIN, '/accounts'));
  // The expected side is taken as canonical: the fast path compares strings only.
  t.ok(htuMatches('https://API.example.com/x', 'https://API.example.com', '/x'), 'an uncanonical origin matches itself exactly');
  t.notOk(htuMatches('https://api.example.com/x', 'https://API.example.com', '/x'), '…and nothing else');
});

t.test('htuMatches: normalized first', async (t) => {
  const path = '/accounts/~1';
  for (const htu of [
    'https://api.example.com/accounts/~1?page=2',
    'https://api.example.com/accounts/~1#top',
    'HTTPS://API.EXAMPLE.COM/accounts/~1',
    'https://api.example.com:443/accounts/~1',
    'https://api.example.com/accounts/%7e1',
    'https://api.example.com/accounts/%7E1',
    'https://api.example.com/x/../accounts/./~1',
    'https://api.example.com//accounts//~1',
  ]) t.ok(htuMatches(htu, ORIGIN, path), htu);
  for (const htu of [
    'https://api.example.com/accounts/~2',
    'https://api.example.com/Accounts/~1',
    'https://api.example.com/accounts/~1/',
    'https://api.example.com/accounts',
    'http://api.example.com/accounts/~1',
    'https://other.example.com/accounts/~1',
    'https://api.example.com:8443/accounts/~1',
    'https://user@api.example.com/accounts/~1',
    'https://api.example.com/accounts%2F~1',
    'not a url',
    '',
  ]) t.notOk(htuMatches(htu, ORIGIN, path), htu);
});

t.test('the expected side as the router builds it', async (t) => {
  // What parseTarget makes of a request target is what htu is compared with.
  for (const [target, htu] of [
    ['/accounts/%7E1', 'https://api.example.com/accounts/~1'],
    ['/accounts/caf%c3%a9', 'https://api.example.com/accounts/café'],
    ['/a/./b/../c', 'https://api.example.com/a/c'],
    ['/a//b', 'https://api.example.com/a/b'],
    ['/a%20b?x=1', 'https://api.example.com/a b'],
    ['/', 'https://api.example.com'],
  ] as const) {
    t.ok(htuMatches(htu, ORIGIN, parseTarget(target).encodedPath), `${target} ~ ${htu}`);
    t.ok(htuMatches(`${ORIGIN}${target}`, ORIGIN, parseTarget(target).encodedPath), `${target} written as the request was`);
  }
});

// The router resolves '/a/b/..', '/a/.' and '/a//../b' as '/a', '/a' and '/b' (RFC 3986 §5.2.4
// would keep a trailing slash and the empty segment). htu's path goes through the very same
// normalization, never the URL parser's, so a client whose htu is the URI it requested matches.
t.test('htu identical to the request target ending in a dot segment', async (t) => {
  t.ok(htuMatches(`${ORIGIN}/a/b/../`, ORIGIN, parseTarget('/a/b/../').encodedPath), 'a trailing slash after ..: both /a/');
  for (const target of ['/a/b/..', '/a/.', '/a/b/%2e%2e', '/a//../b']) {
    t.ok(htuMatches(`${ORIGIN}${target}`, ORIGIN, parseTarget(target).encodedPath), target);
  }
});

t.test('an error of the router that is no GatewayError is not taken for a bad htu', async (t) => {
  const route = await import('../../src/route.js');
  const { normalizeHtu: mocked } = await t.mockImport<typeof import('../../src/dpop/htu.js')>('../../src/dpop/htu.js', {
    '../../src/route.js': {
      ...route,
      parseTarget: (url: string) => {
        if (url === '/boom') throw new TypeError('a defect');
        return route.parseTarget(url);
      },
    },
  });
  t.equal(mocked('https://api.example.com/a%2Fb'), undefined, 'a GatewayError (bad_path): no URI');
  t.equal(mocked('https://api.example.com/ok'), 'https://api.example.com/ok');
  t.throws(() => mocked('https://api.example.com/boom'), TypeError, 'anything else propagates');
});
