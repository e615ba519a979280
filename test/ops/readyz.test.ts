import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { serve, startUpstream } from '../helpers/servers.js';
import { call } from '../helpers/client.js';
import { startGateway } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, signingKey } from '../token/fixtures/fake-as.js';
import { eventually, sample, scrape, startFromFile } from './fixtures/ops.js';

const key = await signingKey('k1');
const upstream = await startUpstream();
t.teardown(() => upstream.close());

const jwtDoc = (jwksUri: string, extra: Record<string, unknown> = {}) => ({
  token_validation: 'jwt',
  authorization_server: { issuer: ISSUER, jwks_uri: jwksUri, audience: AUDIENCE, timeout_ms: 200, ...extra },
  upstreams: { bank: upstream.url },
  routes: [{ name: 'accounts', path_prefix: '/accounts', upstream: 'bank', auth: 'certificate_bound_token' }],
});

t.test('/readyz is 503 while the JWKS cannot be loaded, 200 once it is', async (t) => {
  let reachable = false;
  let refused = 0;
  const jwks = await serve((_req, res) => {
    if (!reachable) return void (refused++, res.socket?.destroy());
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  t.teardown(() => jwks.close());
  const gw = await startGateway(jwtDoc(`${jwks.url}/jwks`, { jwks_cooldown_seconds: 1 }));
  t.teardown(() => gw.close());

  t.ok(await eventually(() => refused > 0), 'the prefetch was turned away');
  t.equal((await call(`${gw.adminUrl}/healthz`)).status, 200, 'alive regardless');
  const before = await call(`${gw.adminUrl}/readyz`);
  t.equal(before.status, 503);
  t.equal(before.text, 'not ready: token validation keys (JWKS) not loaded\n');
  t.equal(gw.runtime.ready(), false);

  reachable = true;
  // The retry runs in the background once per cooldown (1 s here): no probe or request needed.
  t.ok(await eventually(() => gw.runtime.ready()), 'the keys loaded by themselves');
  t.equal((await call(`${gw.adminUrl}/readyz`)).status, 200, '200 once the keys are loaded');
  t.equal((await call(`${gw.adminUrl}/readyz`)).text, 'ready\n');
});

t.test('/readyz stays 503 with a jwks_uri nobody listens on', async (t) => {
  const dead = await serve(() => undefined);
  await dead.close();
  const gw = await startGateway(jwtDoc(`${dead.url}/jwks`));
  t.teardown(() => gw.close());
  t.equal((await call(`${gw.adminUrl}/readyz`)).status, 503);
  t.equal((await call(`${gw.adminUrl}/healthz`)).status, 200);
});

t.test('/readyz is 200 without JWT validation, 503 once draining', async (t) => {
  const gw = await startGateway({ upstreams: { bank: upstream.url }, routes: [{ name: 'api', path_prefix: '/', upstream: 'bank', auth: 'none' }] });
  t.equal((await call(`${gw.adminUrl}/readyz`)).status, 200);
  const hanging = call(`${gw.url}/x/stream`).catch(() => undefined);
  await eventually(() => upstream.seen.some((s) => s.url === '/x/stream'));
  const stopping = gw.close();
  const draining = await call(`${gw.adminUrl}/readyz`);
  t.equal(draining.status, 503);
  t.equal(draining.text, 'not ready: draining\n');
  upstream.release();
  await Promise.all([stopping, hanging]);
});

t.test('a reload whose JWKS cannot load is refused while the running one has its keys', async (t) => {
  const jwks = await serve((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] })));
  const dead = await serve(() => undefined);
  await dead.close();
  t.teardown(() => jwks.close());
  const dir = mkdtempSync(join(tmpdir(), 'certbound-readyz-'));
  const configPath = join(dir, 'gateway.yaml');
  const file = (jwksUri: string) => stringify({ ...jwtDoc(jwksUri), listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, reload: { watch: false } });
  writeFileSync(configPath, file(`${jwks.url}/jwks`));
  const gw = await startFromFile(configPath);
  t.teardown(() => gw.close());
  t.ok(await eventually(() => gw.runtime.ready()), 'ready once the JWKS loaded');
  writeFileSync(configPath, file(`${dead.url}/jwks`));
  t.equal(await gw.runtime.reload(), false, 'refused');
  t.match(gw.logs.at(-1), { msg: 'reload failed; keeping the running configuration', problems: [/could not load the token validation keys/] });
  t.equal(gw.runtime.ready(), true, 'still ready on the running configuration');
  t.equal(sample(await scrape(gw.adminUrl), 'certbound_config_reloads_total', { result: 'failure' }), 1);
});
