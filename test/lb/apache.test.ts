// Apache httpd (mod_ssl + mod_headers + mod_proxy_http) terminating mTLS in front of certbound
// (preset apache): `%{SSL_CLIENT_CERT}s`, PEM with line breaks as spaces, `(null)` without one.
// Snippet from docs/load-balancers.md, with `SSLVerifyClient optional`.
import t from 'tap';
import { call } from '../helpers/client.js';
import {
  bearer, clients, diagnose, expect401, expectBound200, expectResumptionKeepsCertificate, freePort, isRoot, MISMATCH, PROBE, probe, REQUIRED,
  requireBinary, ROUTE, startFixture, startLb, writeConfig, expectForeignCaRejected } from './helpers/lb.js';

// Starts a real load balancer: a generous limit for this file instead of tap's 30 s (no test may depend on the machine's speed).
t.setTimeout(180_000);

const APACHE = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';
const HEADER = 'ssl-client-cert';
const spaced = (pem: string): string => pem.trim().replace(/\r?\n/g, ' ');

t.test('Apache httpd (%{SSL_CLIENT_CERT}s) in front of certbound', async (t) => {
  requireBinary(APACHE, 'apache2');
  const fx = await startFixture(t, 'apache');
  const port = await freePort();
  const d = fx.dir;
  const modules = ['mpm_event', 'authz_core', 'headers', 'proxy', 'proxy_http', 'socache_shmcb', 'ssl'];
  const conf = writeConfig(fx, 'httpd.conf', `
ServerRoot ${d}
ServerName localhost
DefaultRuntimeDir ${d}
PidFile ${d}/httpd.pid
ErrorLog ${d}/error.log
LogLevel warn
${modules.map((m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`).join('\n')}
${isRoot() ? 'User nobody\nGroup nogroup' : ''}
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
Listen 127.0.0.1:${port} https
SSLSessionCache shmcb:${d}/ssl_scache(512000)

<VirtualHost 127.0.0.1:${port}>
    SSLEngine on
    SSLCertificateFile ${fx.files.cert}
    SSLCertificateKeyFile ${fx.files.key}

    # --- docs/load-balancers.md, "Apache httpd" (optional instead of require) ---
    SSLVerifyClient optional
    SSLCACertificateFile ${fx.files.ca}
    RequestHeader set ssl-client-cert "%{SSL_CLIENT_CERT}s"
    ProxyPass ${PROBE} http://127.0.0.1:${fx.upstreamPort}${PROBE}
    ProxyPass / http://127.0.0.1:${fx.gatewayPort}/
    # ---
</VirtualHost>
`);
  const lb = await startLb(t, { name: 'apache', command: APACHE, args: ['-d', d, '-f', conf, '-DFOREGROUND'], port, cwd: d, logFiles: [`${d}/error.log`] });
  const c = clients(t, fx);

  await t.test('certificate A + token bound to A → 200, identity headers, no certificate header upstream', (t) =>
    expectBound200(t, fx, lb, c.asA, [HEADER]));

  await t.test('what Apache forwards (probe, bypassing certbound)', async (t) => {
    t.equal((await probe(fx, lb, c.asA))[HEADER], spaced(fx.tppA.certPem), 'PEM, line breaks turned into spaces');
    t.equal((await probe(fx, lb, c.anonymous))[HEADER], '(null)', 'no certificate: the literal (null)');
  });

  await t.test('TLS session resumption keeps the certificate header', (t) => expectResumptionKeepsCertificate(t, fx, lb));

  await t.test('certificate B (same CA) + token bound to A → 401 invalid_token', (t) =>
    expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: bearer() }), MISMATCH));

  await t.test('no client certificate ((null)) → 401 client certificate required', async (t) => {
    const reply = await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: bearer() }), REQUIRED);
    t.equal(reply.json().error_description, 'client certificate required');
  });

  await t.test('a client-sent ssl-client-cert is replaced by RequestHeader set', async (t) => {
    const spoof = { ...bearer(), [HEADER]: spaced(fx.tppA.certPem) };
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: spoof }), MISMATCH);
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: spoof }), REQUIRED);
    t.equal((await probe(fx, lb, c.anonymous, spoof))[HEADER], '(null)', 'client copy replaced');
  });

  await t.test('certificate from another CA → Apache aborts the TLS handshake', async (t) => {
    // SSLVerifyClient optional verifies a presented certificate; only optional_no_ca would let
    // an unverifiable one through. The handshake fails with an alert.
    await expectForeignCaRejected(t, fx, lb, port, c.foreign);
  });

  await t.test('Apache stops and leaves no process behind', async (t) => {
    await lb.stop();
    t.ok(lb.gone(), 'parent and children exited');
    diagnose(t, lb, lb.gone());
  });
});
