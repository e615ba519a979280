import t from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { compileGateway } from '../../src/gateway.js';
import { createGenerations } from '../../src/server/generations.js';
import { startIntrospection } from '../helpers/servers.js';

// Gateway lifetimes across reloads: a request holds the gateway it started on; the token
// validator a reload kept moves with it, and is closed with the last gateway that uses it.
const exp = Math.floor(Date.now() / 1000) + 300;
const as = await startIntrospection(new Map([['tok', { active: true, scope: 'accounts', exp, cnf: { 'x5t#S256': 'x' } }]]));
t.teardown(() => as.close());
const config = (timeoutMs: number) =>
  buildConfig({
    authorization_server: { issuer: 'https://as.example', introspection_endpoint: as.endpoint, client_id: 'c', client_secret: 's', timeout_ms: timeoutMs, cache: { max_entries: 0 } },
    upstreams: { u: 'http://127.0.0.1:1' },
    routes: [{ name: 'r', path_prefix: '/', upstream: 'u' }],
  }, { env: {} });
const outcome = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: unknown) => (e as { code?: string }).code ?? String(e));

t.test('a retiring gateway keeps its validator through two reloads; the last user closes it', async (t) => {
  const a = compileGateway(config(2000));
  const generations = createGenerations(a);
  const held = generations.hold(); // a request on A, still under way
  t.equal(held, a);
  const b = compileGateway(config(2000), { previous: a });
  t.equal(b.tokens, a.tokens, 'same validation: the validator (and its cache) is kept');
  generations.swap(b);
  const c = compileGateway(config(1500), { previous: b });
  t.not(c.tokens, b.tokens, 'other validation: a new validator');
  generations.swap(c); // B, held by nobody, closes now; A still needs the validator
  t.equal(await outcome(a.tokens!.validate('tok')), 'ok', 'the request on A can still validate its token');
  generations.release(a); // the last user of the first validator
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await outcome(a.tokens!.validate('tok')), 'as_unavailable', 'closed with the last gateway that used it');
  t.equal(await outcome(c.tokens!.validate('tok')), 'ok', 'the current one is untouched');
  await generations.closeAll();
  t.equal(await outcome(c.tokens!.validate('tok')), 'as_unavailable', 'closeAll closes the current gateway too');
});

t.test('a gateway closes once, however often it is asked', async (t) => {
  const g = compileGateway(config(2000));
  const first = g.close();
  t.equal(g.close(), first, 'the same promise');
  await first;
});
