import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { createCa } from '../fixtures/pki.js';
import { startUpstream } from '../helpers/servers.js';
import { call, tlsClient } from '../helpers/client.js';
import { startGateway } from '../helpers/gateway.js';
import { fakeServer, json } from '../token/fixtures/fake-as.js';
import { startFromFile } from './fixtures/ops.js';

const ca = await createCa({ commonName: 'Logs CA' });
const server = await ca.issue({ commonName: 'localhost', kind: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
const tppA = await ca.issue({ commonName: 'TPP A', kind: 'client' });
const tppB = await ca.issue({ commonName: 'TPP B', kind: 'client' });
const dir = mkdtempSync(join(tmpdir(), 'certbound-logs-'));
writeFileSync(join(dir, 'server.crt'), server.certPem);
writeFileSync(join(dir, 'server.key'), server.keyPem);
writeFileSync(join(dir, 'ca.crt'), ca.certPem);

// Tokens and secrets that must never reach a log line.
const secret = `secret-${randomBytes(12).toString('hex')}`;
const good = `tok-${randomBytes(16).toString('hex')}`;
const failing = `tok-${randomBytes(16).toString('hex')}`;
const inactive = `tok-${randomBytes(16).toString('hex')}`;
const now = Math.floor(Date.now() / 1000);
const as = await fakeServer((req, res) => {
  const token = new URLSearchParams(req.body).get('token');
  if (token === failing) return json(res, { error: `no ${token}` }, 500);
  if (token === good) return json(res, { active: true, client_id: 'tpp-a', scope: 'accounts', exp: now + 300, cnf: { 'x5t#S256': tppA.thumbprint } });
  return json(res, { active: false });
});
const upstream = await startUpstream();
t.teardown(async () => {
  await Promise.all([as.close(), upstream.close()]);
});

const doc = {
  listen: { tls: { cert_file: 'server.crt', key_file: 'server.key', client_ca_file: 'ca.crt' } },
  authorization_server: { issuer: 'https://as.example', introspection_endpoint: `${as.url}/introspect`, client_id: 'certbound', client_secret: secret },
  upstreams: { bank: upstream.url },
  routes: [
    { name: 'accounts', path_prefix: '/accounts', upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] },
    { name: 'token', path_prefix: '/token', upstream: 'bank', auth: 'mtls' },
  ],
  logging: { level: 'trace' },
};

t.test('one access line per request, with the fields operators need', async (t) => {
  const gw = await startGateway(doc, { baseDir: dir });
  t.teardown(() => gw.close());
  const asA = tlsClient(ca.certPem, tppA);
  t.teardown(() => asA.close());
  const id = '0b6b2e31-1c2e-4e4b-9b8a-4f1e2d3c4b5a';
  const res = await call(`${gw.url}/accounts/1?q=${good}`, { dispatcher: asA, headers: { authorization: `Bearer ${good}`, 'x-fapi-interaction-id': id } });
  t.equal(res.status, 200);
  const lines = gw.logs.filter((l) => l.msg === 'request');
  t.equal(lines.length, 1);
  const line = lines[0]!;
  t.match(line, {
    level: 'info', interaction_id: id, route: 'accounts', upstream: 'bank', method: 'GET', path: '/accounts/1', status: 200, outcome: 'forwarded',
    latency_ms: Number, upstream_latency_ms: Number, client_id: 'tpp-a', certificate_thumbprint: tppA.thumbprint,
  });
  t.equal(line.response_bytes, Buffer.byteLength(res.text), 'the body bytes the client got');
  t.match(line.time, /^\d{4}-\d\d-\d\dT/, 'ISO time');
  t.notOk(JSON.stringify(line).includes(good), 'the query string (here holding the token) is never logged');
  t.notOk('url' in line || 'query' in line);
  const odd = await call(`${gw.url}/accounts/./x/../%31%20"?q=1`, { dispatcher: asA, headers: { authorization: `Bearer ${good}` } });
  t.equal(odd.status, 200);
  t.equal(gw.logs.filter((l) => l.msg === 'request').at(-1)?.path, '/accounts/1%20%22', 'the normalized path, as sent upstream');

  const refused = await call(`${gw.url}/accounts/1`, { dispatcher: asA, headers: { authorization: `Bearer ${inactive}` } });
  t.equal(refused.status, 401);
  t.match(gw.logs.filter((l) => l.msg === 'request').at(-1), { status: 401, outcome: 'rejected', reason: 'inactive' });
  t.match(gw.logs.find((l) => l.msg === 'started'), { level: 'info', routes: 2, serving_certificate: { serial: String, sha256: String }, client_ca: { certificates: 1 } });
});

t.test('no token, secret or whole certificate in any log line, at trace level', async (t) => {
  const configPath = join(dir, 'gateway.yaml');
  writeFileSync(configPath, stringify({ ...doc, listen: { host: '127.0.0.1', port: 0, ...doc.listen }, admin: { host: '127.0.0.1', port: 0 } }));
  const gw = await startFromFile(configPath);
  t.teardown(() => gw.close());
  const asA = tlsClient(ca.certPem, tppA);
  const asB = tlsClient(ca.certPem, tppB);
  t.teardown(() => Promise.all([asA.close(), asB.close()]));
  const statuses = [];
  for (const [dispatcher, token] of [[asA, good], [asA, failing], [asA, inactive], [asB, good]] as const) {
    // Tokens in the header and the query string: neither is logged (the path is, so none there).
    statuses.push((await call(`${gw.url}/accounts/1?access=${token}`, { dispatcher, headers: { authorization: `Bearer ${token}` } })).status);
  }
  statuses.push((await call(`${gw.url}/accounts/1?access_token=${good}`, { dispatcher: asA })).status);
  statuses.push((await call(`${gw.url}/token`, { dispatcher: asA, method: 'POST', headers: { authorization: `Basic ${secret}`, 'x-client-cert': encodeURIComponent(tppB.certPem) } })).status);
  t.same(statuses, [200, 503, 401, 401, 400, 200]);
  await gw.runtime.reload();
  writeFileSync(configPath, stringify({ ...doc, authorization_server: { ...doc.authorization_server, client_secret: 42, extra: secret } }));
  t.equal(await gw.runtime.reload(), false);

  const text = gw.rawLogs.join('\n');
  t.ok(gw.logs.some((l) => l.msg === 'token introspection failed'), 'the introspection failure is logged');
  t.ok(gw.logs.some((l) => l.msg === 'reload failed; keeping the running configuration'), 'the failed reload is logged');
  for (const [name, value] of Object.entries({ good, failing, inactive, secret })) t.notOk(text.includes(value), `${name} never logged`);
  t.notOk(text.includes('BEGIN CERTIFICATE'), 'no PEM');
  for (const cert of [tppA, tppB, server]) {
    t.notOk(text.includes(cert.der.toString('base64').slice(40, 100)), 'no base64 DER');
    t.notOk(text.includes(encodeURIComponent(cert.certPem).slice(60, 120)), 'no URL-encoded PEM');
  }
  t.notOk(text.includes('PRIVATE KEY'));
});

t.test('a certificate header from an untrusted peer is a warning, without the certificate', async (t) => {
  const gw = await startGateway({
    client_certificate: { source: 'header', preset: 'ingress-nginx', trusted_proxies: ['10.0.0.0/8'] },
    authorization_server: doc.authorization_server,
    upstreams: doc.upstreams,
    routes: doc.routes,
  });
  t.teardown(() => gw.close());
  const res = await call(`${gw.url}/accounts/1`, { headers: { authorization: `Bearer ${good}`, 'ssl-client-cert': encodeURIComponent(tppA.certPem), 'ssl-client-verify': 'SUCCESS' } });
  t.equal(res.status, 401);
  t.match(gw.logs.find((l) => l.msg === 'certificate header from an untrusted peer ignored'), { level: 'warn', peer: '127.0.0.1', header: 'ssl-client-cert' });
  t.notOk(gw.rawLogs.join('\n').includes(encodeURIComponent(tppA.certPem).slice(60, 120)));
});

t.test('logging.level filters, and a reload changes it', async (t) => {
  const configPath = join(dir, 'level.yaml');
  const plain = (level: string) => stringify({
    listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 },
    upstreams: doc.upstreams, routes: [{ name: 'api', path_prefix: '/', upstream: 'bank', auth: 'none' }], logging: { level }, reload: { watch: false },
  });
  writeFileSync(configPath, plain('warn'));
  const gw = await startFromFile(configPath);
  t.teardown(() => gw.close());
  await call(`${gw.url}/a`);
  t.equal(gw.logs.filter((l) => l.msg === 'request').length, 0, 'no access line at warn');
  t.equal(gw.logs.filter((l) => l.msg === 'started').length, 0, 'no info line at warn');
  writeFileSync(configPath, plain('info'));
  t.equal(await gw.runtime.reload(), true);
  await call(`${gw.url}/b`);
  t.equal(gw.logs.filter((l) => l.msg === 'request').length, 1, 'access lines at info after the reload');
});
