import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createSelfSigned } from '../fixtures/pki.js';
import { startGateway } from '../helpers/gateway.js';
import { startIntrospection, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';

t.test('a reload that leaves token validation unchanged keeps the token cache', async (t) => {
  const tpp = await createSelfSigned({ commonName: 'TPP', kind: 'client' });
  const as = await startIntrospection(new Map([['tok', { active: true, scope: 'accounts', exp: Math.floor(Date.now() / 1000) + 300, cnf: { 'x5t#S256': tpp.thumbprint } }]]));
  const upstream = await startUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'certbound-reload-'));
  const doc = (timeout: number, extraRoute: boolean) => ({
    client_certificate: { source: 'header', trusted_proxies: ['127.0.0.1/32'] },
    authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's', timeout_ms: timeout },
    upstreams: { bank: upstream.url },
    routes: [
      { name: 'accounts', path_prefix: '/a', upstream: 'bank', scopes: ['accounts'] },
      ...(extraRoute ? [{ name: 'open', path_prefix: '/open', upstream: 'bank', auth: 'none' }] : []),
    ],
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    reload: { watch: false },
  });
  const path = join(dir, 'gateway.yaml');
  writeFileSync(path, stringify(doc(1000, false)));
  const gw = await startGateway(doc(1000, false), { configPath: path });
  t.teardown(async () => {
    await gw.close();
    await as.close();
    await upstream.close();
  });
  const get = () => call(`${gw.url}/a`, { headers: { authorization: 'Bearer tok', 'x-wso2-client-certificate': encodeURIComponent(tpp.certPem) } });

  t.equal((await get()).status, 200);
  t.equal(as.calls.length, 1);
  writeFileSync(path, stringify(doc(1000, true)));
  t.equal(await gw.runtime.reload(), true);
  t.equal((await call(`${gw.url}/open`)).status, 200, 'the new route is live');
  t.equal((await get()).status, 200);
  t.equal(as.calls.length, 1, 'cached claims survived the reload: no new introspection');

  writeFileSync(path, stringify(doc(1500, true)));
  t.equal(await gw.runtime.reload(), true);
  t.equal((await get()).status, 200);
  t.equal(as.calls.length, 2, 'a changed authorization_server section starts a new validator');
});
