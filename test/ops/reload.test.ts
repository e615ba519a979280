import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { stringify } from 'yaml';
import { buildConfig } from '../../src/config/load.js';
import { keepRestartOnly } from '../../src/server/reload.js';
import { createCa, type Issued } from '../fixtures/pki.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';
import { eventually, k8sVolumeWrite, sample, scrape, startFromFile } from './fixtures/ops.js';

const ca1 = await createCa({ commonName: 'Client CA 1' });
const ca2 = await createCa({ commonName: 'Client CA 2' });
const serverCa = await createCa({ commonName: 'Server CA' });
const serverCert = (cn: string) => serverCa.issue({ commonName: cn, kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const s1 = await serverCert('localhost');
const s2 = await serverCert('localhost');
const s3 = await serverCert('localhost');
const tppA = await ca1.issue({ commonName: 'TPP A', kind: 'client' });
const tppC = await ca2.issue({ commonName: 'TPP C', kind: 'client' });
const serialOf = (issued: Issued) => new X509Certificate(issued.certPem).serialNumber;

const now = Math.floor(Date.now() / 1000);
const as = await startIntrospection(new Map([
  ['tokA', { active: true, client_id: 'tpp-a', scope: 'accounts', exp: now + 600, cnf: { 'x5t#S256': tppA.thumbprint } }],
  ['tokC', { active: true, client_id: 'tpp-c', scope: 'accounts', exp: now + 600, cnf: { 'x5t#S256': tppC.thumbprint } }],
]));
const upstream = await startUpstream();

// Kubernetes-style volumes: a ConfigMap for gateway.yaml, a tls Secret, a client CA Secret.
const root = mkdtempSync(join(tmpdir(), 'certbound-reload-'));
const configDir = join(root, 'config');
const tlsDir = join(root, 'tls');
const caDir = join(root, 'client-ca');
const doc = (extra: Record<string, unknown> = {}) => ({
  listen: { host: '127.0.0.1', port: 0, tls: { cert_file: join(tlsDir, 'tls.crt'), key_file: join(tlsDir, 'tls.key'), client_ca_file: join(caDir, 'ca.crt') } },
  admin: { host: '127.0.0.1', port: 0 },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'certbound', client_secret: 'reload-secret' },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'accounts', path_prefix: '/accounts', methods: ['GET'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] },
    { name: 'public', path_prefix: '/public', methods: ['GET'], upstream: 'bank', auth: 'none' },
  ],
  reload: { watch: true, debounce_ms: 50 },
  ...extra,
});
k8sVolumeWrite(tlsDir, { 'tls.crt': s1.certPem, 'tls.key': s1.keyPem });
k8sVolumeWrite(caDir, { 'ca.crt': ca1.certPem });
k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc()) });

const gw = await startFromFile(join(configDir, 'gateway.yaml'));
const port = gw.runtime.trafficAddress.port;
const reloads = async (result: 'success' | 'failure') => sample(await scrape(gw.adminUrl), 'certbound_config_reloads_total', { result }) ?? 0;
t.teardown(async () => {
  await gw.close();
  await Promise.all([as.close(), upstream.close()]);
});

/** The serving certificate a brand-new handshake gets. */
function handshakeSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: serverCa.certPem, cert: tppA.certPem, key: tppA.keyPem }, () => {
      const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

interface Outcome {
  /** Which keepAliveClient. */
  readonly client: number;
  /** When the request was sent, and when its answer ended (Date.now()). */
  readonly sentAt: number;
  readonly at: number;
  readonly status: number | 'error';
  readonly serial?: string;
  readonly reused?: boolean;
  readonly error?: string;
}

// Node reports the peer certificate on a connection's first response only: remember it per socket.
const serials = new WeakMap<object, string>();

/** One client on one keep-alive connection (maxSockets 1), requesting until told to stop. */
async function keepAliveClient(client: number, until: () => boolean, outcomes: Outcome[]): Promise<void> {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: serverCa.certPem, cert: tppA.certPem, key: tppA.keyPem, servername: 'localhost' });
  while (!until()) {
    const sentAt = Date.now();
    outcomes.push(await new Promise<Outcome>((resolve) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/accounts/x', agent, headers: { authorization: 'Bearer tokA' } }, (res) => {
        const socket = res.socket as TLSSocket;
        const serial = serials.get(socket) ?? socket.getPeerX509Certificate()?.serialNumber;
        if (serial) serials.set(socket, serial);
        res.resume();
        res.on('end', () => resolve({ client, sentAt, at: Date.now(), status: res.statusCode ?? 0, ...(serial ? { serial } : {}), reused: req.reusedSocket }));
      });
      req.on('error', (error) => resolve({ client, sentAt, at: Date.now(), status: 'error', error: String(error) }));
      req.end();
    }));
  }
  agent.destroy();
}

t.test('certificate rotation by symlink swap under keep-alive traffic: zero failures', async (t) => {
  t.equal(await handshakeSerial(), serialOf(s1));
  const newCa = tlsClient(serverCa.certPem, tppC);
  t.teardown(() => newCa.close());
  t.equal((await call(`https://localhost:${port}/accounts/x`, { dispatcher: newCa, headers: { authorization: 'Bearer tokC' } })).status, 401, 'CA 2 not trusted yet');

  let stop = false;
  const outcomes: Outcome[] = [];
  const CLIENTS = 8;
  const clients = Array.from({ length: CLIENTS }, (_, i) => keepAliveClient(i, () => stop, outcomes));
  // Every client has its connection, on the old certificate, before the rotation.
  const answered = (client: number) => outcomes.some((o) => o.client === client);
  t.ok(await eventually(() => Array.from({ length: CLIENTS }, (_, i) => i).every(answered)), 'every client has a connection before the rotation');
  k8sVolumeWrite(tlsDir, { 'tls.crt': s2.certPem, 'tls.key': s2.keyPem });
  k8sVolumeWrite(caDir, { 'ca.crt': ca1.certPem + ca2.certPem });
  t.ok(await eventually(async () => (await handshakeSerial()) === serialOf(s2)), 'new handshakes get the new certificate');
  // The reload has taken effect: a request sent from now on is one after the rotation, however slow the machine.
  const rotatedAt = Date.now();
  // A connection keeps the verdict of its handshake: each try needs a new one.
  const freshTry = async () => {
    const fresh = tlsClient(serverCa.certPem, tppC);
    const res = await call(`https://localhost:${port}/accounts/x`, { dispatcher: fresh, headers: { authorization: 'Bearer tokC' } });
    await fresh.close();
    return res.status === 200;
  };
  t.ok(await eventually(freshTry), 'the new client CA is trusted on new connections');
  // Traffic goes on until every client has been served on its old connection after the rotation
  // and there are more than 50 answers in all (or a failure): a count of answers, not a time.
  const servedAfter = (client: number) => outcomes.some((o) => o.client === client && o.sentAt > rotatedAt && o.reused && o.serial === serialOf(s1));
  const enough = () => outcomes.some((o) => o.status !== 200) || (outcomes.length > 50 && Array.from({ length: CLIENTS }, (_, i) => i).every(servedAfter));
  t.ok(await eventually(enough, 60_000), `${outcomes.length} answers so far`);
  stop = true;
  await Promise.all(clients);

  const failed = outcomes.filter((o) => o.status !== 200);
  t.same(failed, [], 'no request failed');
  t.ok(outcomes.length > 50, `${outcomes.length} requests`);
  const afterOnOld = outcomes.filter((o) => o.sentAt > rotatedAt && o.reused && o.serial === serialOf(s1));
  t.equal(new Set(afterOnOld.map((o) => o.client)).size, CLIENTS, 'connections opened before the rotation stay open and keep serving: every client, on the old certificate');
  t.equal(outcomes.filter((o) => o.reused === false).length, CLIENTS, 'no client had to reconnect');
  t.ok((await reloads('success')) >= 1, 'certbound_config_reloads_total{result="success"} went up');
  const text = await scrape(gw.adminUrl);
  t.equal(sample(text, 'certbound_certificate_expiry_timestamp_seconds', { certificate: 'serving' }), Date.parse(new X509Certificate(s2.certPem).validTo) / 1000);
  const reloaded = gw.logs.filter((l) => l.msg === 'reloaded');
  t.ok(reloaded.length >= 1);
  t.match(reloaded.at(-1), { trigger: 'file change', serving_certificate: { serial: serialOf(s2), sha256: new X509Certificate(s2.certPem).fingerprint256 }, client_ca: { certificates: 2 } });
});

t.test('an invalid gateway.yaml is refused: failure counted, old config still serving', async (t) => {
  const failuresBefore = await reloads('failure');
  const successBefore = await reloads('success');
  k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc({ routes: [{ name: 'broken', path_prefix: '/x', upstream: 'nowhere' }] })) });
  t.ok(await eventually(async () => (await reloads('failure')) === failuresBefore + 1), 'failure counted');
  t.equal(await reloads('success'), successBefore);
  const logged = gw.logs.filter((l) => l.msg === 'reload failed; keeping the running configuration').at(-1);
  t.match(logged, { level: 'error', trigger: 'file change', problems: ['routes[0].upstream: unknown upstream "nowhere"'] });
  const asA = tlsClient(serverCa.certPem, tppA);
  t.teardown(() => asA.close());
  t.equal((await call(`https://localhost:${port}/accounts/x`, { dispatcher: asA, headers: { authorization: 'Bearer tokA' } })).status, 200, 'still serving the old routes');
  t.equal(await handshakeSerial(), serialOf(s2));
  k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc()) });
  t.ok(await eventually(async () => (await reloads('success')) === successBefore + 1), 'a fixed file reloads');
});

t.test('a certificate that does not match its key is refused; the running one stays', async (t) => {
  const failuresBefore = await reloads('failure');
  k8sVolumeWrite(tlsDir, { 'tls.crt': s3.certPem, 'tls.key': s2.keyPem });
  t.ok(await eventually(async () => (await reloads('failure')) === failuresBefore + 1), 'failure counted');
  t.match(gw.logs.filter((l) => l.msg === 'reload failed; keeping the running configuration').at(-1), { problems: [/^listen\.tls\.key_file: .*\/tls\.key is not the private key of cert_file's certificate$/] });
  t.equal(await handshakeSerial(), serialOf(s2), 'still the previous certificate');
  k8sVolumeWrite(tlsDir, { 'tls.crt': s3.certPem, 'tls.key': s3.keyPem });
  t.ok(await eventually(async () => (await handshakeSerial()) === serialOf(s3)), 'the matching pair is picked up');
});

t.test('a request in flight finishes on the configuration it started with', async (t) => {
  const streaming = await startUpstream();
  t.teardown(() => streaming.close());
  k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc({ upstreams: { bank: streaming.url } })) });
  t.ok(await eventually(() => gw.runtime.current().config.upstreams.get('bank')?.url === streaming.url));
  const asA = tlsClient(serverCa.certPem, tppA);
  t.teardown(() => asA.close());
  const { request } = await import('undici');
  const res = await request(`https://localhost:${port}/public/stream`, { dispatcher: asA });
  t.equal(res.statusCode, 200);
  const success = await reloads('success');
  t.equal(await gw.runtime.reload('test'), true);
  t.equal(await reloads('success'), success + 1);
  streaming.release();
  t.equal(await res.body.text(), 'first chunk\nlast chunk\n', 'the response completes after the swap');
});

t.test('keys that need a restart keep their running values; turning TLS off is refused', async (t) => {
  const running = buildConfig({ ...doc(), listen: { ...doc().listen, port: 8443 } });
  const moved = buildConfig({
    ...doc(),
    listen: { ...doc().listen, port: 9443, max_header_bytes: 4096 },
    admin: { port: 9999 },
    realm: 'changed',
    logging: { level: 'warn', flush_interval_ms: 0 },
  });
  const { config, ignored } = keepRestartOnly(running, moved);
  t.same(ignored, ['listen.port', 'listen.max_header_bytes', 'admin.port', 'logging.flush_interval_ms']);
  t.equal(config.listen.port, 8443);
  t.equal(config.admin.port, running.admin.port);
  t.same(config.logging, { level: 'warn', flushIntervalMs: 100 }, 'the level applies, the flush interval keeps its running value');
  t.equal(config.realm, 'changed', 'everything else applies');
  const plain = buildConfig({ ...doc(), listen: { host: '127.0.0.1', port: 8443 } });
  const refused = (() => {
    try {
      keepRestartOnly(running, plain);
      return undefined;
    } catch (error) {
      return error;
    }
  })();
  t.match(refused, { name: 'ConfigError', problems: ['listen.tls: turning TLS off needs a restart'] });

  const failures = await reloads('failure');
  k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc({ listen: { host: '127.0.0.1', port: 0 } })) });
  t.ok(await eventually(async () => (await reloads('failure')) === failures + 1), 'TLS off by reload: refused');
  const success = await reloads('success');
  k8sVolumeWrite(configDir, { 'gateway.yaml': stringify(doc({ listen: { ...doc().listen, port: 1 } })) });
  t.ok(await eventually(async () => (await reloads('success')) === success + 1), 'a port change reloads the rest');
  t.match(gw.logs.filter((l) => l.msg === 'reload: these keys need a restart; their running values stay').at(-1), { level: 'warn', keys: ['listen.port'] });
  t.equal(gw.runtime.current().config.listen.port, 0, 'the running port stays');
  t.equal((await handshakeSerial()).length > 0, true, 'still listening where it was');
});
