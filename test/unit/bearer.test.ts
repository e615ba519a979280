import t from 'tap';
import { codeOf } from '../helpers/codes.js';
import { bearerToken } from '../../src/bearer.js';

const code = codeOf;

t.test('extracts token68 with a case-insensitive scheme', async (t) => {
  t.equal(bearerToken(['Bearer abc.DEF-_~+/=='], ''), 'abc.DEF-_~+/==');
  t.equal(bearerToken(['bearer x'], ''), 'x');
  t.equal(bearerToken(['BEARER x'], '?a=1'), 'x');
  t.equal(bearerToken(['Bearer  x '], ''), 'x');
});

t.test('missing, malformed and query tokens', async (t) => {
  t.equal(code(() => bearerToken(undefined, '')), 'missing_token');
  t.equal(code(() => bearerToken([], '')), 'missing_token');
  t.equal(code(() => bearerToken(['Basic abc'], '')), 'missing_token', 'another scheme counts as no credential');
  t.equal(code(() => bearerToken(['DPoP abc'], '')), 'missing_token');
  t.equal(code(() => bearerToken(['Bearerabc'], '')), 'missing_token');
  t.equal(code(() => bearerToken(['Bearer'], '')), 'malformed_token');
  t.equal(code(() => bearerToken(['Bearer '], '')), 'malformed_token');
  t.equal(code(() => bearerToken(['Bearer a b'], '')), 'malformed_token');
  t.equal(code(() => bearerToken(['Bearer a=b'], '')), 'malformed_token');
  t.equal(code(() => bearerToken(['Bearer a', 'Bearer b'], '')), 'malformed_token');
  t.equal(code(() => bearerToken(['Bearer a'], '?access_token=x')), 'token_in_query');
  t.equal(code(() => bearerToken(undefined, '?x=1&access_token')), 'token_in_query');
  t.equal(code(() => bearerToken(['Bearer a'], '?my_access_token=1')), 'no error');
});
