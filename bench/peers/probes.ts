// Requests outside the load, one connection each (statuses and the negotiated TLS): what is
// installed, mod_auth_openidc's binding and scope checks (fail-open cases included), and the
// binding probe before every measured run.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { DemoPki, Issued } from '../../test/fixtures/pki.js';
import { APACHE, APACHE_MODULES, NGINX, OPENIDC_MODULE, type Kind, type Servers } from './servers.js';

const PROBE_TIMEOUT_MS = 5_000;

export interface Probe {
  readonly status: string;
  readonly protocol?: string;
  readonly cipher?: string;
}

interface Answer extends Probe {
  readonly body: string;
}

/** One GET on its own connection; rejects on a connection error or after PROBE_TIMEOUT_MS. */
function get(port: number, path: string, ca: string, client?: Issued, token?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1', port, path, method: 'GET', agent: false, ca, timeout: PROBE_TIMEOUT_MS,
        ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
        headers: token ? { authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const protocol = socket.getProtocol() ?? undefined;
        const cipher = socket.getCipher()?.name;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.once('end', () => resolve({ status: String(res.statusCode), body, ...(protocol ? { protocol } : {}), ...(cipher ? { cipher } : {}) }));
      },
    );
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}

/** A request's status, or `error CODE` when the connection failed. */
const probe = (port: number, path: string, client: Issued | undefined, ca: string, token?: string): Promise<Probe> =>
  get(port, path, ca, client, token).then(
    ({ body: _, ...answer }) => answer,
    (error: NodeJS.ErrnoException) => ({ status: `error ${error.code ?? error.message}` }),
  );

/** Refused: a failed handshake, or a 4xx answer (nginx answers 400, certbound 401). */
const refused = (p: Probe) => p.status.startsWith('error') || p.status.startsWith('4');

/** GET /stats of the HTTPS fake AS (servers/as.ts). */
export async function introspectionStats(port: number, ca: string): Promise<{ calls: number; rejected: number }> {
  const s = JSON.parse((await get(port, '/stats', ca)).body) as { calls?: number; rejected?: number };
  return { calls: s.calls ?? 0, rejected: s.rejected ?? 0 };
}

// ---------------------------------------------------------------------------------------------

const apt = (pkg: string) => `apt-get update && apt-get install -y --no-install-recommends ${pkg}`;
const APACHE_MODULE_FILES = ['mod_mpm_event.so', 'mod_ssl.so', 'mod_proxy.so', 'mod_proxy_http.so', 'mod_authn_core.so', 'mod_authz_core.so', 'mod_socache_shmcb.so', 'mod_rewrite.so'];

/** The servers that are not installed, each with the command that installs it. */
export function missingSoftware(): Partial<Record<Kind, string>> {
  const missing: Partial<Record<Kind, string>> = {};
  if (!existsSync(NGINX)) missing.nginx = `${NGINX} not found: ${apt('nginx')}`;
  const absentModules = APACHE_MODULE_FILES.filter((m) => !existsSync(join(APACHE_MODULES, m)));
  if (!existsSync(APACHE) || absentModules.length > 0) {
    missing.apache = `${existsSync(APACHE) ? `${absentModules.join(', ')} not in ${APACHE_MODULES}` : `${APACHE} not found`}: ${apt('apache2')}`;
    missing.openidc = missing.apache;
  } else if (!existsSync(OPENIDC_MODULE)) missing.openidc = `${OPENIDC_MODULE} not found: ${apt('libapache2-mod-auth-openidc')}`;
  return missing;
}

function version(command: string, args: readonly string[], pattern: RegExp): string | undefined {
  const out = spawnSync(command, args, { encoding: 'utf8' });
  return pattern.exec(`${out.stdout ?? ''}${out.stderr ?? ''}`)?.[1];
}

export function softwareVersions(missing: Partial<Record<Kind, string>>) {
  return {
    nginx: missing.nginx ? undefined : version(NGINX, ['-v'], /nginx\/(\S+)/),
    apache: missing.apache ? undefined : version(APACHE, ['-v'], /Apache\/(\S+)/),
    apacheMpm: missing.apache ? undefined : 'event: StartServers 2, ServerLimit 2, ThreadLimit 64, ThreadsPerChild 64, MaxRequestWorkers 128, MinSpareThreads 25, MaxSpareThreads 128, MaxConnectionsPerChild 0',
    openidc: missing.openidc ? undefined : version('dpkg-query', ['-W', '-f', '${Version}', 'libapache2-mod-auth-openidc'], /^(\S+)/),
    node: process.version,
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * A second fake AS, in this process, for the mod_auth_openidc configuration probes only: HTTPS,
 * every token active and bound to tppA, and a token starting `noscope-` granted `payments
 * accounts-read account` (no `accounts`: prefix and substring cases of the scope match).
 */
async function startProbeAs(pki: DemoPki): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpsServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token') ?? '';
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        active: true, client_id: 'tpp-bench', sub: 'user-1', iss: 'https://as.bench', exp: Math.floor(Date.now() / 1000) + 3600,
        scope: token.startsWith('noscope-') ? 'payments accounts-read account' : 'accounts payments',
        cnf: { 'x5t#S256': pki.tppA.thumbprint },
      }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** `findings`: `stock`, `moduleCheck`, `measuredConfiguration`, each variant's answers, as far as the probes got. */
export type OpenidcFindings =
  | { readonly findings: Readonly<Record<string, string>>; readonly measured: string; readonly ok: boolean }
  | { readonly findings: Readonly<Record<string, string>>; readonly failure: string };

type Step = readonly [what: string, client: Issued | undefined, token: string | undefined];

/**
 * mod_auth_openidc, before anything is measured: what its binding check does by default, what
 * the fingerprint variable adds, and the configuration measured. Fresh tokens, fresh processes.
 */
export async function probeOpenidc(start: Servers['start'], pki: DemoPki, path: string, moduleVersion: string | undefined): Promise<OpenidcFindings> {
  const ca = pki.ca.certPem;
  const findings: Record<string, string> = {};
  const probeAs = await startProbeAs(pki);
  const fresh = (what: string) => `${what}-${randomBytes(6).toString('hex')}`;
  const show = (xs: ReadonlyArray<[string, Probe]>) => xs.map(([what, x]) => `${what} → ${x.status}`).join('; ');
  const variant = async (tag: string, defines: readonly string[], steps: readonly Step[]): Promise<Array<[string, Probe]>> => {
    const s = await start('openidc', tag, { introspectionUrl: probeAs.url, defines });
    const out: Array<[string, Probe]> = [];
    try {
      for (const [what, client, token] of steps) out.push([what, await probe(s.server.port, path, client, ca, token)]);
    } finally {
      await s.server.stop();
      s.cleanup();
    }
    return out;
  };
  try {
    // (a) Stock: TB_SSL_CLIENT_CERT_FINGERPRINT unset. The token is bound to tppA; tppB presents it first.
    const ta = fresh('demo-stock');
    const a = await variant('stock', [], [['tppB, tppA-bound token, first use', pki.tppB, ta], ['tppA, same token', pki.tppA, ta]]);
    findings.stock = show(a);
    console.log(`info  peers: mod_auth_openidc ${moduleVersion}, OIDCOAuthAccessTokenBindingPolicy required, no TB_SSL_CLIENT_CERT_FINGERPRINT (stock Apache): ${findings.stock}${a[0]?.[1].status === '200' ? ' — fail-open: a token bound to tppA accepted from tppB' : ''}`);
    // (b) The fingerprint variable set from the RewriteMap, the module's own check only.
    const tb = fresh('demo-module');
    const b = await variant('module-check', ['CERTBOUND_FINGERPRINT'], [
      ['tppB, tppA-bound token, first use', pki.tppB, tb], ['tppA, same token', pki.tppA, tb], ['tppB, same token, now cached', pki.tppB, tb],
    ]);
    findings.moduleCheck = show(b);
    console.log(`info  peers: + TB_SSL_CLIENT_CERT_FINGERPRINT from the RewriteMap (the module's check only): ${findings.moduleCheck}${b[2]?.[1].status === '200' ? ' — fail-open on a cache hit: the module compares cnf only when it introspects' : ''}`);
    // (c) The configuration measured: + Require expr on every request.
    const tc = fresh('demo-full');
    const c = await variant('full', ['CERTBOUND_FINGERPRINT', 'CERTBOUND_BINDING'], [
      ['tppB, tppA-bound token, first use', pki.tppB, tc], ['tppA, same token', pki.tppA, tc], ['tppB, same token, cached', pki.tppB, tc], ['tppC, same token, cached', pki.tppC, tc],
      ['tppA, token without scope accounts (granted "payments accounts-read account")', pki.tppA, fresh('noscope')], ['tppA, no token', pki.tppA, undefined], ['no client certificate', undefined, tc],
    ]);
    const measured = show(c);
    findings.measuredConfiguration = measured;
    const st = c.map(([, x]) => x.status);
    const ok = st[0] === '401' && st[1] === '200' && st[2] === '401' && st[3] === '401' && (st[4] === '401' || st[4] === '403') && st[5] === '401' && refused(c[6]?.[1] ?? { status: '' });
    return { findings, measured, ok };
  } catch (error) {
    return { findings, failure: (error as Error).message };
  } finally {
    await probeAs.close();
  }
}

/**
 * Before measuring: mTLS enforced (no certificate refused); the token passes with tppA; a token
 * checker refuses it from tppB. `tls` is what the generator's client (tppA) negotiated.
 */
export async function probeBinding(port: number, path: string, token: string, pki: DemoPki, checksToken: boolean): Promise<{ ok: boolean; figure: string; tls: string }> {
  const ca = pki.ca.certPem;
  const none = await probe(port, path, undefined, ca, token);
  const good = await probe(port, path, pki.tppA, ca, token);
  const other = checksToken ? await probe(port, path, pki.tppB, ca, token) : undefined;
  return {
    ok: refused(none) && good.status === '200' && (other === undefined || other.status === '401'),
    figure: `no certificate → ${none.status}; tppA → ${good.status}${other ? `; tppB, same (tppA-bound) token → ${other.status}` : ''}`,
    tls: `${good.protocol ?? '?'} ${good.cipher ?? '?'}`,
  };
}
