// HAProxy terminating mTLS in front of certbound (preset haproxy): `%[ssl_c_der,base64]`.
// Snippet from docs/load-balancers.md, with `verify optional` so a client may come without a certificate.
import t from 'tap';
import { call } from '../helpers/client.js';
import {
  bearer, clients, diagnose, expect401, expectBound200, expectResumptionKeepsCertificate, freePort, MISMATCH, PROBE, probe, REQUIRED, requireBinary,
  ROUTE, startFixture, startLb, writeConfig, expectForeignCaRejected } from './helpers/lb.js';

// Starts a real load balancer: a generous limit for this file instead of tap's 30 s (no test may depend on the machine's speed).
t.setTimeout(180_000);

const HAPROXY = '/usr/sbin/haproxy';
const HEADER = 'x-ssl-client-der';

t.test('HAProxy (%[ssl_c_der,base64]) in front of certbound', async (t) => {
  requireBinary(HAPROXY, 'haproxy');
  const fx = await startFixture(t, 'haproxy');
  const port = await freePort();
  const conf = writeConfig(fx, 'haproxy.cfg', `
global
    log stderr format raw local0 notice

defaults
    mode http
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s

# --- docs/load-balancers.md, "HAProxy" (verify optional instead of required) ---
frontend https
    bind 127.0.0.1:${port} ssl crt ${fx.files.certAndKey} ca-file ${fx.files.ca} verify optional
    http-request set-header x-ssl-client-der %[ssl_c_der,base64]
    use_backend probe if { path_beg ${PROBE} }
    default_backend certbound
# ---

backend certbound
    server certbound 127.0.0.1:${fx.gatewayPort}

backend probe
    server upstream 127.0.0.1:${fx.upstreamPort}
`);
  const lb = await startLb(t, { name: 'haproxy', command: HAPROXY, args: ['-db', '-f', conf], port, cwd: fx.dir });
  const c = clients(t, fx);

  await t.test('certificate A + token bound to A → 200, identity headers, no certificate header upstream', (t) =>
    expectBound200(t, fx, lb, c.asA, [HEADER]));

  await t.test('what HAProxy forwards (probe, bypassing certbound)', async (t) => {
    t.equal((await probe(fx, lb, c.asA))[HEADER], fx.tppA.der.toString('base64'), 'base64 DER of the leaf');
    t.equal((await probe(fx, lb, c.anonymous))[HEADER], '', 'no certificate: present but empty');
  });

  await t.test('TLS session resumption keeps the certificate header', (t) => expectResumptionKeepsCertificate(t, fx, lb));

  await t.test('certificate B (same CA) + token bound to A → 401 invalid_token', (t) =>
    expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: bearer() }), MISMATCH));

  await t.test('no client certificate (empty header) → 401 client certificate required', async (t) => {
    const reply = await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: bearer() }), REQUIRED);
    t.equal(reply.json().error_description, 'client certificate required');
  });

  await t.test('a client-sent x-ssl-client-der is replaced by set-header', async (t) => {
    const spoof = { ...bearer(), [HEADER]: fx.tppA.der.toString('base64') };
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: spoof }), MISMATCH);
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: spoof }), REQUIRED);
    t.equal((await probe(fx, lb, c.anonymous, spoof))[HEADER], '', 'client copy replaced by the empty value');
  });

  await t.test('certificate from another CA → HAProxy aborts the TLS handshake', async (t) => {
    // `verify optional` still verifies a certificate that is presented; without crt-ignore-err /
    // ca-ignore-err a failure ends the handshake with an alert (under TLS 1.3 the client notices
    // on its first read, so the request fails rather than the connect).
    await expectForeignCaRejected(t, fx, lb, port, c.foreign);
  });

  await t.test('HAProxy stops and leaves no process behind', async (t) => {
    await lb.stop();
    t.ok(lb.gone(), 'haproxy exited');
    diagnose(t, lb, lb.gone());
  });
});
