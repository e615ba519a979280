// A throw-away PKI for tests, the demo and benchmarks. Never use these certificates in production.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { thumbprintOf } from '../certificate/thumbprint.js';

x509.cryptoProvider.set(webcrypto);

type CryptoKey = webcrypto.CryptoKey;

export interface Issued {
  certPem: string;
  keyPem: string;
  der: Buffer;
  /** base64url (no padding) SHA-256 of the DER certificate: RFC 8705 `x5t#S256`. */
  thumbprint: string;
  /** RFC 4514 subject DN, most specific RDN first, e.g. `CN=TPP A,O=Certbound Demo`. */
  subject: string;
}

export interface IssueOptions {
  commonName: string;
  organization?: string;
  kind: 'server' | 'client';
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Default `ec` (P-256). */
  keyAlgorithm?: 'ec' | 'rsa';
  /** `default`: serverAuth for servers, clientAuth for clients; `none`: no EKU extension. */
  extendedKeyUsage?: 'none' | 'default';
}

export interface Ca extends Issued {
  issue(opts: IssueOptions): Promise<Issued>;
}

export interface DemoPki {
  dir: string;
  ca: Ca;
  server: Issued;
  tppA: Issued;
  tppB: Issued;
  tppC: Issued;
  /** File name (e.g. `tpp-a.key`) → absolute path. */
  files: Record<string, string>;
}

const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const RSA_KEY: webcrypto.RsaHashedKeyGenParams = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
};
const DEFAULT_VALIDITY_MS = 365 * 24 * 3600 * 1000;
// Backdated so that a certificate issued "now" is valid on a peer whose clock runs slightly behind.
const BACKDATE_MS = 5 * 60 * 1000;

/** RFC 4514 form of a certificate's subject: Node lists RDNs in encoded order (most general first). */
export function subjectDnOf(cert: X509Certificate): string {
  return cert.subject.split('\n').reverse().join(',');
}

export { thumbprintOf };

export async function createCa(opts: { commonName: string; notBefore?: Date; notAfter?: Date }): Promise<Ca> {
  const keys = await generateKeys('ec');
  const { notBefore, notAfter } = validity(opts);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: nameOf(opts.commonName, undefined),
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const self = toIssued(cert, keys.privateKey);
  return {
    ...self,
    issue: (issueOpts) => issueLeaf(issueOpts, { cert, key: keys.privateKey }),
  };
}

export function createSelfSigned(opts: IssueOptions): Promise<Issued> {
  return issueLeaf(opts, undefined);
}

export async function writeDemoPki(dir: string): Promise<DemoPki> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true });
  const ca = await createCa({ commonName: 'Certbound Demo CA' });
  const [server, tppA, tppB, tppC] = await Promise.all([
    // RSA: the FAPI TLS 1.2 suites are all ECDHE-RSA/DHE-RSA, so an EC key would serve TLS 1.3 clients only.
    ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], keyAlgorithm: 'rsa' }),
    ca.issue({ commonName: 'TPP A', organization: 'Certbound Demo', kind: 'client' }),
    ca.issue({ commonName: 'TPP B', organization: 'Certbound Demo', kind: 'client' }),
    ca.issue({ commonName: 'TPP C', organization: 'Certbound Demo', kind: 'client' }),
  ]);
  const files: Record<string, string> = {};
  const write = async (name: string, content: string, mode: number): Promise<void> => {
    const path = resolve(root, name);
    await writeFile(path, content, { mode });
    await chmod(path, mode); // writeFile's mode only applies when it creates the file
    files[name] = path;
  };
  await write('ca.crt', ca.certPem, 0o644);
  for (const [name, issued] of [['server', server], ['tpp-a', tppA], ['tpp-b', tppB], ['tpp-c', tppC]] as const) {
    await write(`${name}.crt`, issued.certPem, 0o644);
    await write(`${name}.key`, issued.keyPem, 0o600);
  }
  return { dir: root, ca, server, tppA, tppB, tppC, files };
}

async function issueLeaf(opts: IssueOptions, issuer: { cert: x509.X509Certificate; key: CryptoKey } | undefined): Promise<Issued> {
  const keys = await generateKeys(opts.keyAlgorithm ?? 'ec');
  const { notBefore, notAfter } = validity(opts);
  const subject = nameOf(opts.commonName, opts.organization);
  const signingKey = issuer?.key ?? keys.privateKey;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(keyUsageFor(keys.privateKey), true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.cert));
  }
  if ((opts.extendedKeyUsage ?? 'default') === 'default') {
    const usage = opts.kind === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth;
    extensions.push(new x509.ExtendedKeyUsageExtension([usage]));
  }
  const altNames: x509.JsonGeneralName[] = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (altNames.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(altNames));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject,
    issuer: issuer ? issuer.cert.subjectName : subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: signingAlgorithmFor(signingKey),
    extensions,
  });
  return toIssued(cert, keys.privateKey);
}

function toIssued(cert: x509.X509Certificate, privateKey: CryptoKey): Issued {
  const der = Buffer.from(cert.rawData);
  const certPem = cert.toString('pem') + '\n';
  const keyPem = KeyObject.from(privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { certPem, keyPem, der, thumbprint: thumbprintOf(der), subject: subjectDnOf(new X509Certificate(der)) };
}

function generateKeys(algorithm: 'ec' | 'rsa'): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(algorithm === 'ec' ? EC_KEY : RSA_KEY, true, ['sign', 'verify']);
}

function signingAlgorithmFor(key: CryptoKey): webcrypto.EcdsaParams | webcrypto.Algorithm {
  return key.algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' };
}

function keyUsageFor(key: CryptoKey): x509.KeyUsageFlags {
  const { digitalSignature, keyEncipherment } = x509.KeyUsageFlags;
  return key.algorithm.name === 'ECDSA' ? digitalSignature : digitalSignature | keyEncipherment;
}

// Encoded most general first, as CAs do; `subjectDnOf` gives the RFC 4514 (reversed) string.
function nameOf(commonName: string, organization: string | undefined): x509.JsonName {
  return organization === undefined ? [{ CN: [commonName] }] : [{ O: [organization] }, { CN: [commonName] }];
}

function validity(opts: { notBefore?: Date; notAfter?: Date }): { notBefore: Date; notAfter: Date } {
  const notBefore = opts.notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + DEFAULT_VALIDITY_MS);
  return { notBefore, notAfter };
}

function serialNumber(): string {
  return `01${randomBytes(15).toString('hex')}`; // leading 0x01 keeps the INTEGER positive and 16 bytes long
}
