// The two primitives both sources share: serial numbers as one key, and signature checks.
import t from 'tap';
import { generateKeyPairSync, sign } from 'node:crypto';
import { SIGNATURE_ALGORITHMS, verifySignature } from '../../src/revocation/signature.js';
import { serialKey } from '../../src/revocation/types.js';
import { DerError, TAG, certificateParts, extensionAt, isOid, oidOf, tlvAt } from '../../src/certificate/der.js';

t.test('serialKey: hex and INTEGER bytes give one key', async (t) => {
  t.equal(serialKey('00AB12'), 'AB12', 'X509Certificate keeps a leading 00 for a positive serial with the high bit set');
  t.equal(serialKey('ab12'), 'AB12');
  t.equal(serialKey('0000'), '0');
  t.equal(serialKey(Uint8Array.from([0x00, 0xab, 0x12])), 'AB12');
  t.equal(serialKey(Uint8Array.from([0x0a, 0xb1])), 'AB1', 'a leading zero nibble goes too');
  t.equal(serialKey(Uint8Array.from([0x00])), '0');
  t.equal(serialKey(Uint8Array.from([0x00, 0x00, 0x05])), '5');
  const inside = Uint8Array.from([0xff, 0x00, 0x10, 0xff]).subarray(1, 3);
  t.equal(serialKey(inside), '10', 'a view into a larger buffer reads only its own bytes');
});

t.test('verifySignature: the accepted algorithms, each with its own key type only', async (t) => {
  const data = Buffer.from('tbs');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = generateKeyPairSync('ed25519');
  const ecSig = sign('sha256', data, { key: ec.privateKey, dsaEncoding: 'der' });
  t.equal(verifySignature('1.2.840.10045.4.3.2', data, ecSig, ec.publicKey), true);
  t.equal(verifySignature('1.2.840.10045.4.3.2', Buffer.from('other'), ecSig, ec.publicKey), false);
  t.equal(verifySignature('1.2.840.113549.1.1.11', data, ecSig, ec.publicKey), false, 'an RSA algorithm with an EC key');
  t.equal(verifySignature('1.2.840.113549.1.1.11', data, sign('sha256', data, rsa.privateKey), rsa.publicKey), true);
  t.equal(verifySignature('1.2.840.113549.1.1.5', data, sign('sha1', data, rsa.privateKey), rsa.publicKey), false, 'SHA-1 is not accepted');
  t.equal(verifySignature('1.3.101.112', data, sign(null, data, ed.privateKey), ed.publicKey), true);
  t.equal(verifySignature('1.2.840.10045.4.3.2', data, Buffer.from([1, 2, 3]), ec.publicKey), false, 'a signature that is not DER');
  t.notOk(SIGNATURE_ALGORITHMS.includes('1.2.840.113549.1.1.10'), 'no RSASSA-PSS');
});

/** 'malformed' for a DerError, 'read' when `fn` returns. */
function reason(fn: () => unknown): string {
  try {
    fn();
    return 'read';
  } catch (e) {
    return e instanceof DerError ? 'malformed' : 'other';
  }
}

t.test('der: framing errors are typed', async (t) => {
  t.equal(reason(() => tlvAt(Uint8Array.from([0x1f, 0x01, 0x00]), 0)), 'malformed', 'a high tag number');
  t.equal(reason(() => tlvAt(Uint8Array.from([0x30, 0x85, 1, 1, 1, 1, 1]), 0)), 'malformed', 'a length in five bytes');
  t.equal(reason(() => tlvAt(Uint8Array.from([0x30, 0x80]), 0)), 'malformed', 'an indefinite length');
  t.equal(reason(() => tlvAt(Uint8Array.from([0x30, 0x82, 0x01]), 0)), 'malformed', 'a length cut short');
  t.equal(reason(() => tlvAt(Uint8Array.from([0x30, 0x05, 0x00]), 0)), 'malformed', 'contents cut short');
  t.same(tlvAt(Uint8Array.from([0x30, 0x81, 0x01, 0x00]), 0), { tag: TAG.SEQUENCE, start: 0, body: 3, end: 4 });
  const oid = (bytes: number[]) => oidOf(Uint8Array.from(bytes), tlvAt(Uint8Array.from(bytes), 0));
  t.equal(oid([0x06, 0x03, 0x55, 0x1d, 0x1d]), '2.5.29.29');
  t.equal(oid([0x06, 0x06, 0x04, 0x00, 0x81, 0x98, 0x27, 0x02]), '0.4.0.19495.2');
  t.equal(oid([0x06, 0x02, 0x88, 0x37]), '2.999', 'a first arc of 2 above 39');
  t.equal(reason(() => oid([0x06, 0x02, 0x55, 0x9d])), 'malformed', 'a last byte with the continuation bit');
  t.equal(reason(() => oid([0x04, 0x01, 0x00])), 'malformed', 'not an OID');
  t.equal(reason(() => oid([0x06, 0x00])), 'malformed', 'an empty OID');
});

t.test('der: extensions and certificate parts', async (t) => {
  const at = (bytes: number[]) => {
    const buf = Uint8Array.from(bytes);
    return extensionAt(buf, tlvAt(buf, 0));
  };
  const keyUsage = [0x06, 0x03, 0x55, 0x1d, 0x0f];
  const plain = at([0x30, 0x09, ...keyUsage, 0x04, 0x02, 0x03, 0x00]);
  t.same([plain.critical, plain.value.body, plain.value.end], [false, 9, 11], 'critical defaults to false');
  const flagged = at([0x30, 0x0c, ...keyUsage, 0x01, 0x01, 0xff, 0x04, 0x02, 0x03, 0x00]);
  t.equal(flagged.critical, true);
  t.ok(isOid(Uint8Array.from([0x30, 0x0c, ...keyUsage]), flagged.id, Uint8Array.from(keyUsage)));
  t.notOk(isOid(Uint8Array.from([0x30, 0x0c, ...keyUsage]), flagged.id, Uint8Array.from([0x06, 0x03, 0x55, 0x1d, 0x1d])));
  t.equal(reason(() => at([0x31, 0x00])), 'malformed', 'not a SEQUENCE');
  t.equal(reason(() => at([0x30, 0x05, ...keyUsage])), 'malformed', 'no value');
  t.equal(reason(() => at([0x30, 0x09, ...keyUsage, 0x02, 0x02, 0x03, 0x00])), 'malformed', 'a value that is no OCTET STRING');
  t.equal(reason(() => at([0x30, 0x0d, ...keyUsage, 0x01, 0x02, 0xff, 0xff, 0x04, 0x02, 0x03, 0x00])), 'malformed', 'a BOOLEAN of two bytes');
  t.equal(reason(() => at([0x30, 0x0d, ...keyUsage, 0x04, 0x02, 0x03, 0x00, 0x04, 0x00, 0x04, 0x00])), 'malformed', 'too many fields');
  t.equal(reason(() => certificateParts(Uint8Array.from([0x31, 0x00]))), 'malformed', 'not a certificate');
  t.equal(reason(() => certificateParts(Uint8Array.from([0x30, 0x04, 0x30, 0x02, 0x02, 0x00]))), 'malformed', 'no subject');
});
