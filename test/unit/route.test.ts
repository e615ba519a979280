import t from 'tap';
import { codeOf } from '../helpers/codes.js';
import { createRouter, normalizePrefix, parseTarget } from '../../src/route.js';
import type { RouteConfig } from '../../src/config/types.js';

const route = (name: string, pathPrefix: string, methods = ['GET'], extra: Partial<RouteConfig> = {}): { readonly name: string; readonly config: RouteConfig } => ({
  name,
  config: { name, pathPrefix, methods, upstream: 'u', auth: 'none', scopes: [], forwardAuthorization: false, allowDoubleEncoding: false, psd2Roles: [], ...extra },
});

const code = codeOf;

t.test('parseTarget normalizes dot-segments, slashes and encoding', async (t) => {
  t.same(parseTarget('/a/b/../c/./d?x=1'), { path: '/a/c/d', encodedPath: '/a/c/d', query: '?x=1' });
  t.same(parseTarget('/a//b/'), { path: '/a/b/', encodedPath: '/a/b/', query: '' });
  t.equal(parseTarget('/%61isp').path, '/aisp', 'unreserved percent-encoding is decoded before matching');
  t.equal(parseTarget('/a/%2e%2e/b').path, '/b', 'encoded dot-segments are resolved');
  t.equal(parseTarget('/../../etc').path, '/etc', 'cannot climb above the root');
  t.equal(parseTarget('/caf%C3%A9 x').encodedPath, '/caf%C3%A9%20x');
  t.equal(parseTarget('http://host:1/p/q?z').path, '/p/q', 'absolute-form target');
  t.equal(parseTarget('http://host').path, '/');
  t.equal(parseTarget('/').path, '/');
});

t.test('parseTarget refuses ambiguous paths with bad_path', async (t) => {
  for (const bad of ['/a/..;/b', '/a;x=1', '/a%3Bb', '/a%3b', '/a%2Fb', '/a%2fb', '/a%5Cb', '/a%00', '/a%zz', '/a%4', '/a\\b', '/a\0b', '/%C3%28', '*', 'ftp://x/y']) {
    t.equal(code(() => parseTarget(bad)), 'bad_path', bad);
  }
});

t.test('router: longest prefix wins on segment boundaries; no route and method not allowed are data', async (t) => {
  const router = createRouter([route('root', '/'), route('aisp', '/ob/aisp', ['GET', 'HEAD']), route('accounts', '/ob/aisp/accounts', ['POST'])]);
  const matched = (method: string, url: string): string | undefined => {
    const r = router(method, url);
    return r.kind === 'match' ? r.route.name : undefined;
  };
  t.equal(matched('GET', '/ob/aisp/x'), 'aisp');
  t.equal(matched('POST', '/ob/aisp/accounts/1'), 'accounts');
  t.equal(matched('GET', '/ob/aispx'), 'root', 'no match inside a segment');
  t.equal(matched('GET', '/ob/aisp/../x'), 'root', 'matched after normalization');
  t.equal(matched('GET', '/ob/aisp/accounts/../y'), 'aisp');
  const refused = router('GET', '/ob/aisp/accounts');
  t.equal(refused.kind, 'method_not_allowed');
  t.same(refused.kind === 'method_not_allowed' ? [refused.route.name, refused.route.config.methods] : [], ['accounts', ['POST']], 'the route is named: its 405 is counted on it');
  const narrow = createRouter([route('aisp', '/ob/aisp')]);
  t.same(narrow('GET', '/other'), { kind: 'no_route', target: { path: '/other', encodedPath: '/other', query: '' } });
  t.equal(narrow('GET', '/ob/aisp').target.encodedPath, '/ob/aisp');
  t.equal(code(() => narrow('GET', '/a%2Fb')), 'bad_path', 'a target that cannot be read one way is still refused by throwing');
});

t.test('router: a double-encoded octet (%25XX) is refused unless the route allows it', async (t) => {
  const router = createRouter([route('public', '/public'), route('files', '/files', ['GET'], { allowDoubleEncoding: true })]);
  for (const path of ['/public/%252e%252e/open-banking/v3.1/aisp/accounts', '/public/a%252Fb', '/public/%2541']) {
    t.equal(code(() => router('GET', path)), 'bad_path', path);
  }
  t.equal(router('GET', '/public/100%25').target.encodedPath, '/public/100%25', 'a lone %25 is one encoded "%"');
  t.equal(router('GET', '/public/%25zz').target.encodedPath, '/public/%25zz', '%25 not followed by two hex digits');
  t.equal(parseTarget('/public/%252e').doubleEncoded, true);
  t.equal(parseTarget('/public/%2e').doubleEncoded, undefined);
  t.equal(router('GET', '/files/%252e%252e/x').target.encodedPath, '/files/%252e%252e/x', 'forwarded as it came where allowed');
});

t.test('normalizePrefix', async (t) => {
  t.equal(normalizePrefix('/a/b/'), '/a/b');
  t.equal(normalizePrefix('/'), '/');
  t.equal(normalizePrefix('//a'), '/a');
  for (const bad of ['/a/../b', '/a/./b', '/%41', '/a?b', '/a#b', '/a\\b', '/a;b']) t.equal(normalizePrefix(bad), undefined, bad);
});
