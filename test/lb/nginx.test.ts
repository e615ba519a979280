// nginx terminating mTLS in front of certbound (preset nginx; ingress-nginx uses the same
// variables and headers). Snippet from docs/load-balancers.md, with `ssl_verify_client optional`.
import t from 'tap';
import { call } from '../helpers/client.js';
import {
  attempt, bearer, clients, expect401, expectBound200, expectResumptionKeepsCertificate, freePorts, isRoot, MISMATCH, PROBE, probe, REQUIRED, requireBinary,
  ROUTE, startFixture, startLb, diagnose, writeConfig,
} from './helpers/lb.js';

// Starts a real load balancer: a generous limit for this file instead of tap's 30 s (no test may depend on the machine's speed).
t.setTimeout(180_000);

const NGINX = '/usr/sbin/nginx';
const CONSUMED = ['ssl-client-cert', 'ssl-client-verify'];

t.test('nginx ($ssl_client_escaped_cert + $ssl_client_verify) in front of certbound', async (t) => {
  requireBinary(NGINX, 'nginx-light');
  const fx = await startFixture(t, 'nginx');
  const [port = 0, noCaPort = 0] = await freePorts(2);
  const gw = `127.0.0.1:${fx.gatewayPort}`;
  const d = fx.dir;
  const conf = writeConfig(fx, 'nginx.conf', `
daemon off;
worker_processes 1;
pid ${d}/nginx.pid;
error_log stderr notice;
${isRoot() ? 'user root;' : ''}
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path ${d}/client_body;
    proxy_temp_path ${d}/proxy;
    fastcgi_temp_path ${d}/fastcgi;
    uwsgi_temp_path ${d}/uwsgi;
    scgi_temp_path ${d}/scgi;

    server {
        listen 127.0.0.1:${port} ssl;
        server_name localhost;
        ssl_certificate     ${fx.files.cert};
        ssl_certificate_key ${fx.files.key};

        # --- docs/load-balancers.md, "nginx" ---
        ssl_client_certificate ${fx.files.ca};
        ssl_verify_client      optional;
        location / {
            proxy_pass http://${gw};
            proxy_set_header ssl-client-cert   $ssl_client_escaped_cert;
            proxy_set_header ssl-client-verify $ssl_client_verify;
        }
        # ---

        location ${PROBE} {
            proxy_pass http://127.0.0.1:${fx.upstreamPort};
            proxy_set_header ssl-client-cert   $ssl_client_escaped_cert;
            proxy_set_header ssl-client-verify $ssl_client_verify;
        }
    }

    # The mode the docs warn about: forwards unverified certificates with FAILED:reason.
    server {
        listen 127.0.0.1:${noCaPort} ssl;
        server_name localhost;
        ssl_certificate     ${fx.files.cert};
        ssl_certificate_key ${fx.files.key};
        ssl_client_certificate ${fx.files.ca};
        ssl_verify_client      optional_no_ca;
        location / {
            proxy_pass http://${gw};
            proxy_set_header ssl-client-cert   $ssl_client_escaped_cert;
            proxy_set_header ssl-client-verify $ssl_client_verify;
        }
    }
}
`);
  const lb = await startLb(t, { name: 'nginx', command: NGINX, args: ['-p', `${d}/`, '-c', conf, '-e', 'stderr'], port, cwd: d });
  const c = clients(t, fx);

  await t.test('certificate A + token bound to A → 200, identity headers, no certificate headers upstream', (t) =>
    expectBound200(t, fx, lb, c.asA, CONSUMED));

  await t.test('what nginx forwards (probe, bypassing certbound)', async (t) => {
    const withCert = await probe(fx, lb, c.asA);
    t.equal(withCert['ssl-client-verify'], 'SUCCESS');
    t.equal(decodeURIComponent(String(withCert['ssl-client-cert'])), fx.tppA.certPem, 'URL-encoded PEM of the leaf');
    const none = await probe(fx, lb, c.anonymous);
    t.equal(none['ssl-client-cert'], undefined, 'no certificate: header absent (empty proxy_set_header values are not sent)');
    t.equal(none['ssl-client-verify'], 'NONE');
  });

  await t.test('TLS session resumption keeps the certificate header', (t) => expectResumptionKeepsCertificate(t, fx, lb));

  await t.test('certificate B (same CA) + token bound to A → 401 invalid_token', (t) =>
    expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: bearer() }), MISMATCH));

  await t.test('no client certificate → 401 client certificate required (verify NONE)', async (t) => {
    const reply = await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: bearer() }), REQUIRED);
    t.equal(reply.json().error_description, 'client certificate required: load balancer did not verify the client certificate (NONE)');
  });

  await t.test('client-sent ssl-client-cert / ssl-client-verify are overwritten by nginx', async (t) => {
    const spoof = { ...bearer(), 'ssl-client-cert': encodeURIComponent(fx.tppA.certPem), 'ssl-client-verify': 'SUCCESS' };
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.asB, headers: spoof }), MISMATCH);
    await expect401(t, fx, lb, call(`${lb.url}${ROUTE}`, { dispatcher: c.anonymous, headers: spoof }), REQUIRED);
    const seen = await probe(fx, lb, c.anonymous, spoof);
    t.equal(seen['ssl-client-cert'], undefined, 'client copy dropped even though nginx has no value to send');
    t.equal(seen['ssl-client-verify'], 'NONE');
  });

  await t.test('certificate from another CA, ssl_verify_client optional → nginx answers 400 itself', async (t) => {
    const calls = fx.introspection.calls.length;
    const before = fx.upstream.seen.length;
    const r = await attempt(`${lb.url}${ROUTE}`, c.foreign);
    // nginx accepts the handshake (optional verification), then refuses the request with
    // 400 "The SSL certificate error" (internal 495): it never reaches certbound.
    t.ok('reply' in r, `an HTTP answer from nginx (${'error' in r ? r.error.message : ''})`);
    diagnose(t, lb, 'reply' in r);
    if ('reply' in r) {
      t.equal(r.reply.status, 400);
      t.match(r.reply.text, /The SSL certificate error/);
    }
    t.equal(fx.introspection.calls.length, calls, 'certbound never asked');
    t.equal(fx.upstream.seen.length, before);
  });

  await t.test('optional_no_ca forwards the foreign certificate with FAILED: certbound refuses it', async (t) => {
    const reply = await expect401(t, fx, lb, call(`https://localhost:${noCaPort}${ROUTE}`, { dispatcher: c.foreign, headers: bearer() }), REQUIRED);
    t.match(reply.json().error_description, /^client certificate required: load balancer did not verify the client certificate \(FAILED:/);
    const ok = await call(`https://localhost:${noCaPort}${ROUTE}`, { dispatcher: c.asA, headers: bearer() });
    t.equal(ok.status, 200, 'a CA-issued certificate still passes there');
  });

  await t.test('nginx stops and leaves no process behind', async (t) => {
    await lb.stop();
    t.ok(lb.gone(), 'master and workers exited');
    diagnose(t, lb, lb.gone());
  });
});
