import t from 'tap';
import { createHash, X509Certificate } from 'node:crypto';
import { stat, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createCa, createSelfSigned, writeDemoPki, subjectDnOf, type Issued } from '../../src/dev/pki.js';

interface HandshakeResult { authorized: boolean; authorizationError: string | undefined; peerSubjectCn: string | undefined }

/** Mutual TLS handshake against a server that asks for (but does not require) a client certificate. */
async function handshake(ca: { certPem: string }, server: Issued, client: Issued | undefined): Promise<HandshakeResult> {
  const srv = tls.createServer({ key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false });
  const result = new Promise<HandshakeResult>((resolve) => {
    srv.once('secureConnection', (socket) => {
      const peer = socket.getPeerCertificate();
      const cn = peer.subject?.CN;
      resolve({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError === null ? undefined : String(socket.authorizationError),
        peerSubjectCn: Array.isArray(cn) ? cn[0] : cn,
      });
      socket.end();
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  const socket = tls.connect({
    host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem,
    ...(client ? { key: client.keyPem, cert: client.certPem } : {}),
  });
  const serverVerified = await new Promise<boolean>((resolve, reject) => {
    socket.once('secureConnect', () => resolve(socket.authorized));
    socket.once('error', reject);
  });
  const out = await result;
  socket.destroy();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  // The client checks the server certificate (SAN 127.0.0.1 / localhost) against the same CA.
  if (!serverVerified) throw new Error('server certificate not verified by the client');
  return out;
}

t.test('issued certificates', async (t) => {
  const ca = await createCa({ commonName: 'Test CA' });
  const client = await ca.issue({ commonName: 'TPP A', organization: 'Acme', kind: 'client' });
  const rsa = await ca.issue({ commonName: 'rsa', kind: 'client', keyAlgorithm: 'rsa' });
  for (const issued of [ca, client, rsa]) {
    const x = new X509Certificate(issued.certPem);
    t.equal(issued.thumbprint, createHash('sha256').update(x.raw).digest('base64url'));
    t.notMatch(issued.thumbprint, /[=+/]/);
    t.same(issued.der, x.raw);
    t.match(issued.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  }
  t.equal(client.subject, 'CN=TPP A,O=Acme');
  t.equal(subjectDnOf(new X509Certificate(client.certPem)), client.subject);
  t.equal(ca.subject, 'CN=Test CA');
  const x = new X509Certificate(client.certPem);
  t.ok(x.checkIssued(new X509Certificate(ca.certPem)));
  t.ok(x.verify(new X509Certificate(ca.certPem).publicKey));
  t.equal(x.ca, false);
  t.equal(new X509Certificate(ca.certPem).ca, true);
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  const none = await ca.issue({ commonName: 'no eku', kind: 'client', extendedKeyUsage: 'none' });
  t.equal(new X509Certificate(none.certPem).keyUsage, undefined);
  const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
  const sx = new X509Certificate(server.certPem);
  t.same(sx.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  t.equal(sx.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  t.equal(new X509Certificate(rsa.certPem).publicKey.asymmetricKeyType, 'rsa');
});

t.test('validity dates are respected', async (t) => {
  const notBefore = new Date('2030-01-02T03:04:05Z');
  const notAfter = new Date('2031-06-07T08:09:10Z');
  const ca = await createCa({ commonName: 'Dated CA', notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2040-01-01T00:00:00Z') });
  const x = new X509Certificate((await ca.issue({ commonName: 'later', kind: 'client', notBefore, notAfter })).certPem);
  t.equal(new Date(x.validFrom).toISOString(), notBefore.toISOString());
  t.equal(new Date(x.validTo).toISOString(), notAfter.toISOString());
  const def = new X509Certificate((await createSelfSigned({ commonName: 'now', kind: 'client' })).certPem);
  t.ok(new Date(def.validFrom).getTime() <= Date.now(), 'default certificate is already valid');
  t.ok(new Date(def.validTo).getTime() > Date.now() + 24 * 3600 * 1000, 'and stays valid for a while');
});

t.test('mutual TLS handshake with node:tls', async (t) => {
  const ca = await createCa({ commonName: 'Trusted CA' });
  const other = await createCa({ commonName: 'Other CA' });
  const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
  const good = await ca.issue({ commonName: 'TPP A', organization: 'Acme', kind: 'client' });
  const goodRsa = await ca.issue({ commonName: 'TPP R', kind: 'client', keyAlgorithm: 'rsa' });
  const foreign = await other.issue({ commonName: 'TPP X', kind: 'client' });
  const selfSigned = await createSelfSigned({ commonName: 'TPP S', kind: 'client', keyAlgorithm: 'rsa' });
  t.ok(new X509Certificate(selfSigned.certPem).verify(new X509Certificate(selfSigned.certPem).publicKey), 'self-signed RSA certificate');
  const expired = await ca.issue({ commonName: 'TPP E', kind: 'client', notBefore: new Date(Date.now() - 2 * 86400_000), notAfter: new Date(Date.now() - 86400_000) });

  const ok = await handshake(ca, server, good);
  t.same(ok, { authorized: true, authorizationError: undefined, peerSubjectCn: 'TPP A' });
  t.equal((await handshake(ca, server, goodRsa)).authorized, true, 'RSA client key works too');

  const bad = await handshake(ca, server, foreign);
  t.equal(bad.authorized, false, 'certificate from another CA is presented but not authorized');
  t.equal(bad.peerSubjectCn, 'TPP X');
  t.equal(bad.authorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  t.equal((await handshake(ca, server, selfSigned)).authorized, false);
  t.equal((await handshake(ca, server, expired)).authorizationError, 'CERT_HAS_EXPIRED');
  t.equal((await handshake(ca, server, undefined)).authorized, false, 'no client certificate');
});

t.test('writeDemoPki', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'certbound-pki-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await writeDemoPki(join(dir, 'nested'));
  t.same(Object.keys(pki.files).sort(), ['ca.crt', 'server.crt', 'server.key', 'tpp-a.crt', 'tpp-a.key', 'tpp-b.crt', 'tpp-b.key', 'tpp-c.crt', 'tpp-c.key']);
  for (const [name, path] of Object.entries(pki.files)) {
    t.equal(path, join(dir, 'nested', name));
    t.equal((await stat(path)).mode & 0o777, name.endsWith('.key') ? 0o600 : 0o644, `${name} mode`);
  }
  t.equal(await readFile(pki.files['tpp-a.crt'] ?? '', 'utf8'), pki.tppA.certPem);
  t.equal(pki.tppA.subject, 'CN=TPP A,O=Certbound Demo');
  t.equal(new Set([pki.tppA.thumbprint, pki.tppB.thumbprint, pki.tppC.thumbprint]).size, 3);
  t.equal((await handshake(pki.ca, pki.server, pki.tppC)).authorized, true);
});
