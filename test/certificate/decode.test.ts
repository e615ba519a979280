import t from 'tap';
import { pemBlocks, pemOrBase64, percentDecode, strictBase64, trimWhitespace } from '../../src/certificate/decode.js';
import { isNoCertificateValue } from '../../src/certificate/formats.js';
import { GatewayError } from '../../src/errors.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return e instanceof GatewayError ? e.code : 'other';
  }
  return 'none';
};

t.test('strictBase64', async (t) => {
  t.same(strictBase64('+/+/', 'x'), Buffer.from([0xfb, 0xff, 0xbf]));
  t.same(strictBase64('QQ==', 'x'), Buffer.from('A'));
  t.same(strictBase64('QUI=', 'x'), Buffer.from('AB'));
  for (const bad of ['', 'QQ', 'QQ=', 'QR==', 'QUJ=', 'Q===', 'QQ==QQ==', '-_-_', 'QU I=', 'QUI=\n', 'QUJD\u00e9', '====']) {
    t.equal(code(() => strictBase64(bad, 'x')), 'certificate_malformed', JSON.stringify(bad));
  }
});

t.test('percentDecode keeps + and refuses broken escapes', async (t) => {
  t.equal(percentDecode('a+b%2Bc%2fd%3D', 'x'), 'a+b+c/d=');
  t.equal(percentDecode('no escapes', 'x'), 'no escapes');
  t.equal(percentDecode('%0A%20', 'x'), '\n ');
  for (const bad of ['%', '%2', '%2G', 'a%zz', '%%41']) t.equal(code(() => percentDecode(bad, 'x')), 'certificate_malformed', bad);
});

t.test('pemBlocks and pemOrBase64', async (t) => {
  const block = (b: string): string => `-----BEGIN CERTIFICATE-----\n${b}\n-----END CERTIFICATE-----\n`;
  t.same(pemBlocks(block('QUI=') + block('QQ=='), 'x'), [Buffer.from('AB'), Buffer.from('A')]);
  t.same(pemBlocks('-----BEGIN CERTIFICATE-----QUI=-----END CERTIFICATE-----', 'x'), [Buffer.from('AB')], 'one line');
  t.same(pemBlocks(' \t-----BEGIN CERTIFICATE----- QU\tI= -----END CERTIFICATE----- ', 'x'), [Buffer.from('AB')], 'spaces and tabs');
  t.same(pemOrBase64('  QUI= ', 'x'), [Buffer.from('AB')], 'bare base64');
  for (const bad of ['', '   ', block('QUI=') + 'x', 'x' + block('QUI='), '-----BEGIN CERTIFICATE-----QUI=', block('QUI').replaceAll('CERTIFICATE', 'X509 CRL'), block('QU*I='), block('QUI=').repeat(11)]) {
    t.equal(code(() => pemBlocks(bad, 'x')), 'certificate_malformed', JSON.stringify(bad.slice(0, 40)));
  }
});

t.test('trimWhitespace trims ASCII whitespace only', async (t) => {
  t.equal(trimWhitespace(' \t\r\nab c\n '), 'ab c');
  t.equal(trimWhitespace('   '), '');
  t.equal(trimWhitespace('\u00a0a\u00a0'), '\u00a0a\u00a0');
});

t.test('no-certificate shapes', async (t) => {
  for (const v of ['', ' ', '(null)', '{http.request.tls.client.certificate_der_base64}', ' {x} ']) t.ok(isNoCertificateValue(v), JSON.stringify(v));
  for (const v of ['null', '(null) x', '{a}{b}', 'MIIB', '{{x}}', '-']) t.notOk(isNoCertificateValue(v), JSON.stringify(v));
});

t.test('hostile input of a million characters is refused (a decoder worse than linear would not finish)', async (t) => {
  // No wall-clock budget: at this size a quadratic decoder runs for many minutes and the file times out.
  const N = 1_000_000;
  t.equal(code(() => pemOrBase64(' '.repeat(N) + 'x', 'x')), 'certificate_malformed', 'whitespace, then one stray character');
  t.equal(code(() => pemBlocks('-----BEGIN CERTIFICATE-----' + ' '.repeat(N), 'x')), 'certificate_malformed', 'BEGIN without END');
  t.equal(code(() => pemBlocks('-----BEGIN CERTIFICATE-----\nQUI=\n-----END CERTIFICATE-----' + ' \t'.repeat(N / 2) + 'x', 'x')), 'certificate_malformed', 'a block, whitespace, then data');
  t.equal(code(() => strictBase64('A'.repeat(N + 1), 'x')), 'certificate_malformed', 'base64 one character too long');
  t.equal(code(() => strictBase64('A'.repeat(N) + '=', 'x')), 'certificate_malformed', 'base64 with bad padding at the very end');
  t.equal(strictBase64('QUJD'.repeat(N / 4), 'x').length, (N / 4) * 3, 'a million characters of valid base64 decode');
  t.equal(code(() => percentDecode('%41'.repeat(333_334) + '%', 'x')), 'certificate_malformed', 'a broken escape at the very end');
  t.equal(percentDecode('%41'.repeat(N / 4), 'x'), 'A'.repeat(N / 4), 'a quarter million escapes decode');
  t.equal(trimWhitespace(' '.repeat(N / 2) + 'a' + '\t'.repeat(N / 2)), 'a', 'half a million spaces each side trimmed');
});
