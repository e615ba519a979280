// `npm run bench` phase `revocation`: the hot path with client_certificate.revocation.mode:
// hard_fail (a real `openssl ocsp` responder, the status cached) against the same gateway with
// revocation off, alternated in fresh processes; the ratio of the medians is the target.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createOpensslCa } from '../test/fixtures/openssl-ca.js';
import { thumbprintOf } from '../src/certificate/thumbprint.js';
import { startChild, type Child } from './lib/proc.js';
import type { WrkResult } from './lib/wrk.js';

export const TARGET_REVOCATION_RATIO = 0.97;

export interface RevocationPhase {
  readonly dir: string;
  readonly upstreamUrl: string;
  readonly rounds: number;
  readonly path: string;
  readonly token: string;
  startGateway(doc: Record<string, unknown>): Promise<Child<{ port: number }>>;
  wrkRun(name: string, server: Child<unknown>, url: string, headers: Record<string, string>): Promise<{ r: WrkResult; rss: number }>;
  median<T extends { r: WrkResult }>(runs: T[]): T;
  row(name: string, x: { r: WrkResult; rss: number }): void;
  check(name: string, pass: boolean, figure: string): void;
  log(message: string): void;
}

export async function revocationPhase(p: RevocationPhase): Promise<{ ratio: number; rounds: { off: number[]; hardFail: number[] } }> {
  const ca = createOpensslCa('Bench QTSP CA');
  const responder = await ca.startResponder({ nextUpdateMinutes: 60 });
  const tpp = ca.issue('bench-tpp', { ocspUrl: responder.url });
  const revoked = ca.issue('bench-revoked', { ocspUrl: responder.url });
  ca.revoke(revoked);
  const caFile = join(p.dir, 'bench-qtsp-ca.crt');
  writeFileSync(caFile, ca.pem);
  const as = await startChild<{ port: number }>('servers/as.ts', { thumbprint: thumbprintOf(tpp.x509.raw), delayMs: 5 });
  const doc = (revocation: Record<string, unknown>) => ({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    logging: { level: 'info' },
    shutdown: { grace_period_seconds: 1 },
    client_certificate: { source: 'header', header: 'x-wso2-client-certificate', trusted_proxies: ['127.0.0.1/32'], verify: { ca_file: caFile }, revocation },
    authorization_server: {
      issuer: 'https://as.bench', introspection_endpoint: `http://127.0.0.1:${as.ready.port}/introspect`, client_id: 'certbound', client_secret: 'bench', cache: { max_ttl_seconds: 3600 },
    },
    upstreams: { bank: p.upstreamUrl },
    routes: [{ name: 'accounts', path_prefix: '/ob/aisp', methods: ['GET', 'POST'], upstream: 'bank', auth: 'certificate_bound_token', scopes: ['accounts'] }],
  });
  const headersFor = (pem: string) => ({ authorization: `Bearer ${p.token}`, 'x-wso2-client-certificate': encodeURIComponent(pem) });
  const hardFail = { mode: 'hard_fail', ocsp: { max_cache_seconds: 3600 }, crl: { enabled: false } };

  // The scenario checks what it claims to: a revoked certificate is refused, the good one passes.
  const probe = await p.startGateway(doc(hardFail));
  const answer = async (pem: string) => {
    const res = await fetch(`http://127.0.0.1:${probe.ready.port}${p.path}`, { headers: headersFor(pem) });
    const text = await res.text();
    const description = res.status === 200 ? undefined : (JSON.parse(text) as { error_description?: string }).error_description;
    return `${res.status}${description ? ` ${description}` : ''}`;
  };
  const [good, bad] = [await answer(tpp.pem), await answer(revoked.pem)];
  await probe.stop();
  // The revoked certificate is refused by the revocation stage, before its token's binding is looked at.
  p.check('revocation scenario: the good certificate → 200, the revoked one → 401 (hard_fail, real OCSP responder)', good === '200' && bad === '401 client certificate revoked', `${good} / ${bad}`);

  const off: Array<{ r: WrkResult; rss: number }> = [];
  const on: Array<{ r: WrkResult; rss: number }> = [];
  for (let round = 0; round < p.rounds; round++) {
    const plain = await p.startGateway(doc({ mode: 'off' }));
    off.push(await p.wrkRun(`(R0) revocation off, round ${round + 1}`, plain, `http://127.0.0.1:${plain.ready.port}${p.path}`, headersFor(tpp.pem)));
    await plain.stop();
    const checked = await p.startGateway(doc(hardFail));
    on.push(await p.wrkRun(`(R1) revocation hard_fail, round ${round + 1}`, checked, `http://127.0.0.1:${checked.ready.port}${p.path}`, headersFor(tpp.pem)));
    await checked.stop();
  }
  await as.stop();
  await responder.close();
  ca.remove();
  const m0 = p.median(off);
  const m1 = p.median(on);
  const rps = (runs: Array<{ r: WrkResult }>) => runs.map((x) => Math.round(x.r.rps));
  p.row(`(R0) certbound header mode, revocation off (median of ${p.rounds}: ${rps(off).join(', ')})`, m0);
  p.row(`(R1) certbound header mode, revocation hard_fail, status cached (median of ${p.rounds}: ${rps(on).join(', ')})`, m1);
  const ratio = m1.r.rps / m0.r.rps;
  p.check(`(R1)/(R0) throughput with revocation hard_fail ≥ ${TARGET_REVOCATION_RATIO} (medians)`, ratio >= TARGET_REVOCATION_RATIO, `${Math.round(ratio * 1000) / 1000} (${Math.round(m1.r.rps)} / ${Math.round(m0.r.rps)} req/s)`);
  return { ratio, rounds: { off: rps(off), hardFail: rps(on) } };
}
