// Caddy terminating mTLS in front of certbound (preset caddy):
// `{http.request.tls.client.certificate_der_base64}`, the placeholder text itself without a certificate.
// Snippet from docs/load-balancers.md, with `mode verify_if_given`.
import t from 'tap';
import { call } from '../helpers/client.js';
import {
  bearer, clients, diagnose, expect401, expectBound200, expectResumptionKeepsCertificate, freePort, MISMATCH, PROBE, probe, REQUIRED, requireBinary,
  ROUTE, startFixture, startLb, writeConfig, expectForeignCaRejected } from './helpers/lb.js';

// Starts a real load balancer: a generous limit for this file instead of tap's 30 s (no test may depend on the machine's speed).
t.setTimeout(180_000);

const CADDY = '/usr/bin/caddy';
const HEADER = 'x-client-cert-der';
const PLACEHOLDER = '{http.request.tls.client.certificate_der_base64}';

t.test('Caddy ({http.request.tls.client.certificate_der_base64}) in front of certbound', async (t) => {
  requireBinary(CADDY, 'caddy');
  const fx = await startFixture(t, 'caddy');
  const port = await freePort();
  const d = fx.dir;
  // Debian 12 ships Caddy 2.6: the CA file is `trusted_ca_cert_file` (`trust_pool file` is 2.8+).
  const conf = writeConfig(fx, 'Caddyfile', `
{
	admin off
	auto_https off
	storage file_system ${d}/caddy-storage
}

# --- docs/load-balancers.md, "Caddy" (verify_if_given instead of require_and_verify) ---
https://localhost:${port} {
	bind 127.0.0.1
	tls ${fx.files.cert} ${fx.files.key} {
		client_auth {
			mode verify_if_given
			trusted_ca_cert_file ${fx.files.ca}
		}
	}
	reverse_proxy ${PROBE}* 127.0.0.1:${fx.upstreamPort} {
		header_up x-client-cert-der {http.request.tls.client.certificate_der_base64}
	}
	reverse_proxy 127.0.0.1:${fx.gatewayPort} {
		header_up x-client-cert-der {http.request.tls.client.certificate_der_base64}
	}
}
# ---
`);
  // Caddy autosaves its config under XDG_CONFIG_HOME and keeps data under XDG_DATA_HOME / HOME.
  const env = { HOME: d, XDG_CONFIG_HOME: `${d}/xdg-config`, XDG_DATA_HOME: `${d}/xdg-data` };
  const lb = await startLb(t, { name: 'caddy', command: CADDY, args: ['run', '--config', conf, '--adapter', 'caddyfile'], port, cwd: d, env });
  const c = clients(t, fx);

  await t.test('certificate A + token bound to A → 200, identity headers, no certificate header upstream', (t) =>
    expectBound200(t, fx, lb, c.asA, [HEADER]));

  await t.test('what Caddy forwards (probe, bypassing certbound)', async (t) => {
    t.equal((await probe(fx, lb, c.asA))[HEADER], fx.tppA.der.toString('base64'), 'base64 DER of the leaf');
    t.equal((await probe(fx, lb, c.anonymous))[HEADER], PLACEHOLDER, 'no certificate: the placeholder text, unreplaced');
  });

  await t.test('TLS session resumption keeps the certificate header', (t) => expectResumptionKeepsCertificate(t, fx, lb));

  await t.test('certificate B (same CA) + token bound to A → 401 invalid_token', (t) =>
    expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: bearer() }), MISMATCH));

  await t.test('no client certificate (placeholder) → 401 client certificate required', async (t) => {
    const reply = await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: bearer() }), REQUIRED);
    t.equal(reply.json().error_description, 'client certificate required');
  });

  await t.test('a client-sent x-client-cert-der is replaced by header_up', async (t) => {
    const spoof = { ...bearer(), [HEADER]: fx.tppA.der.toString('base64') };
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: spoof }), MISMATCH);
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: spoof }), REQUIRED);
    t.equal((await probe(fx, lb, c.anonymous, spoof))[HEADER], PLACEHOLDER, 'client copy replaced');
  });

  await t.test('certificate from another CA → Caddy (Go crypto/tls) aborts the TLS handshake', async (t) => {
    // verify_if_given verifies a presented certificate against the trusted CA and sends
    // a bad_certificate alert when it does not chain.
    await expectForeignCaRejected(t, fx, lb, port, c.foreign);
  });

  await t.test('Caddy stops and leaves no process behind', async (t) => {
    await lb.stop();
    t.ok(lb.gone(), 'caddy exited');
    diagnose(t, lb, lb.gone());
  });
});
