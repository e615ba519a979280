// Renders every Kustomize overlay with `kubectl kustomize` and checks what
// matters for running certbound safely: hardening, probes, drain timing,
// secret handling, networking and the monitoring objects. Opt-in components
// (components/shared-state) are rendered on top of each overlay.
import t from 'tap';
import { run as runIn, type RunResult } from './fixtures/run.js';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse, parseAllDocuments, stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OVERLAYS = ['mtls', 'ingress-nginx'] as const;
type Overlay = (typeof OVERLAYS)[number];

const ADMIN_PORT = 9091;
const TRAFFIC_PORT = 8443;
const UID = 10001;

// ---------------------------------------------------------------------------
// Small typed accessors over parsed YAML (no `any`).
// ---------------------------------------------------------------------------
type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function obj(v: unknown, what: string): Obj {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}
function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v;
}
function objs(v: unknown, what: string): Obj[] {
  return arr(v, what).map((x, i) => obj(x, `${what}[${i}]`));
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}
function num(v: unknown, what: string): number {
  if (typeof v !== 'number') throw new Error(`${what}: expected a number, got ${JSON.stringify(v)}`);
  return v;
}
/** Follow a dotted path; missing steps yield undefined. */
function at(v: unknown, path: string): unknown {
  let cur: unknown = v;
  for (const key of path.split('.')) {
    if (!isObj(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------
const run = (cmd: string, args: string[]): Promise<RunResult> => runIn(ROOT, cmd, args);

interface Rendered {
  text: string;
  objects: Obj[];
}

const renderCache = new Map<string, Promise<Rendered>>();

/** `kubectl kustomize dir` (relative to the repository root, or absolute), parsed. */
async function kustomize(dir: string, what: string): Promise<Rendered> {
  const res = await run('kubectl', ['kustomize', dir]);
  if (res.code !== 0) {
    throw new Error(`kubectl kustomize ${what} failed (${res.spawnError ?? `exit ${String(res.code)}`}): ${res.stderr}`);
  }
  const docs = parseAllDocuments(res.stdout);
  if (!Array.isArray(docs)) throw new Error('kubectl kustomize output is empty');
  const objects: Obj[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`YAML error: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    objects.push(obj(value, 'rendered document'));
  }
  return { text: res.stdout, objects };
}

function render(overlay: Overlay): Promise<Rendered> {
  let p = renderCache.get(overlay);
  if (p === undefined) {
    p = kustomize(`deploy/kubernetes/overlays/${overlay}`, overlay);
    renderCache.set(overlay, p);
  }
  return p;
}

/**
 * An overlay with an opt-in component added, as a user's overlay would include it: a throwaway
 * kustomization (same namespace) whose resource is the overlay and whose component is this one.
 */
function renderWith(overlay: Overlay, component: string): Promise<Rendered> {
  const id = `${overlay}+${component}`;
  let p = renderCache.get(id);
  if (p === undefined) {
    p = (async (): Promise<Rendered> => {
      const overlayDir = join(ROOT, 'deploy/kubernetes/overlays', overlay);
      const namespace = str(obj(parse(await readFile(join(overlayDir, 'kustomization.yaml'), 'utf8')), 'overlay kustomization')['namespace'], 'namespace');
      const dir = await mkdtemp(join(tmpdir(), 'certbound-kustomize-'));
      try {
        // Kustomize refuses absolute paths to other kustomizations; relative ones may leave the root.
        const rel = (to: string): string => relative(dir, to).split(sep).join(posix.sep);
        await writeFile(
          join(dir, 'kustomization.yaml'),
          stringify({
            apiVersion: 'kustomize.config.k8s.io/v1beta1',
            kind: 'Kustomization',
            namespace,
            resources: [rel(overlayDir)],
            components: [rel(join(ROOT, 'deploy/kubernetes/components', component))],
          }),
        );
        return await kustomize(dir, id);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    })();
    renderCache.set(id, p);
  }
  return p;
}

function kindOf(o: Obj): string {
  return str(o['kind'], 'kind');
}
function nameOf(o: Obj): string {
  return str(at(o, 'metadata.name'), 'metadata.name');
}
function all(objects: Obj[], kind: string): Obj[] {
  return objects.filter((o) => o['kind'] === kind);
}
function one(objects: Obj[], kind: string, name?: string): Obj {
  const found = all(objects, kind).filter((o) => name === undefined || nameOf(o) === name);
  if (found.length !== 1) {
    throw new Error(`expected exactly one ${kind}${name !== undefined ? `/${name}` : ''}, found ${found.length}`);
  }
  const [first] = found;
  if (first === undefined) throw new Error('unreachable');
  return first;
}

interface PodView {
  deployment: Obj;
  podSpec: Obj;
  podLabels: Obj;
  certbound: Obj;
  bankApi: Obj;
  volumes: Obj[];
}

function podView(objects: Obj[]): PodView {
  const deployment = one(objects, 'Deployment');
  const podSpec = obj(at(deployment, 'spec.template.spec'), 'pod spec');
  const containers = objs(podSpec['containers'], 'containers');
  const byName = (n: string): Obj => {
    const c = containers.find((x) => x['name'] === n);
    if (c === undefined) throw new Error(`container ${n} not found`);
    return c;
  };
  return {
    deployment,
    podSpec,
    podLabels: obj(at(deployment, 'spec.template.metadata.labels'), 'pod labels'),
    certbound: byName('certbound'),
    bankApi: byName('bank-api'),
    volumes: objs(podSpec['volumes'] ?? [], 'volumes'),
  };
}

/** gateway.yaml as mounted into the certbound container. */
function gatewayConfig(objects: Obj[], view: PodView): Obj {
  const args = arr(view.certbound['args'], 'certbound args').map((a, i) => str(a, `args[${i}]`));
  const configPath = args[args.indexOf('--config') + 1];
  if (configPath === undefined || args.indexOf('--config') < 0) throw new Error('certbound args lack --config');
  const mounts = objs(view.certbound['volumeMounts'], 'volumeMounts');
  const mount = mounts.find((m) => configPath.startsWith(`${str(m['mountPath'], 'mountPath')}/`));
  if (mount === undefined) throw new Error(`no volumeMount covers ${configPath}`);
  const key = configPath.slice(str(mount['mountPath'], 'mountPath').length + 1);
  const volume = view.volumes.find((v) => v['name'] === mount['name']);
  const cmName = str(at(volume, 'configMap.name'), 'config volume configMap.name');
  const cm = one(objects, 'ConfigMap', cmName);
  const data = obj(cm['data'], `ConfigMap ${cmName} data`);
  return obj(parse(str(data[key], `ConfigMap ${cmName} key ${key}`)), 'gateway.yaml');
}

function preStopSeconds(container: Obj): number {
  const preStop = obj(at(container, 'lifecycle.preStop'), `${String(container['name'])} preStop`);
  const sleep = at(preStop, 'sleep.seconds');
  if (typeof sleep === 'number') return sleep;
  const cmd = arr(at(preStop, 'exec.command'), 'preStop exec.command').map((x) => String(x));
  const idx = cmd.findIndex((c) => c === 'sleep' || c.endsWith('/sleep'));
  const secs = Number(cmd[idx + 1]);
  if (idx < 0 || !Number.isFinite(secs)) throw new Error(`cannot read a sleep from preStop ${JSON.stringify(cmd)}`);
  return secs;
}

function selectorMatches(selector: Obj, labels: Obj): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

// ---------------------------------------------------------------------------
// Static checks on the repository files
// ---------------------------------------------------------------------------
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

t.test('no private keys or secret material is committed under deploy/', async (t) => {
  const files = [...(await walk(join(ROOT, 'deploy'))), join(ROOT, 'Dockerfile')];
  t.ok(files.length > 10, 'found the deploy files');
  for (const f of files) {
    const text = await readFile(f, 'utf8');
    t.notMatch(text, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, `${relative(ROOT, f)} has no private key`);
    t.notMatch(text, /^kind:\s*Secret\s*$/m, `${relative(ROOT, f)} defines no Secret object`);
  }
});

// ---------------------------------------------------------------------------
// Checks common to every overlay
// ---------------------------------------------------------------------------
for (const overlay of OVERLAYS) {
  t.test(`overlay ${overlay}`, async (t) => {
    const { text, objects } = await render(overlay);
    const view = podView(objects);
    const gw = gatewayConfig(objects, view);

    t.test('renders a complete, namespaced set of objects', async (t) => {
      const kinds = new Set(objects.map(kindOf));
      for (const k of [
        'Namespace',
        'ServiceAccount',
        'ConfigMap',
        'Deployment',
        'Service',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'ServiceMonitor',
        'PrometheusRule',
      ]) {
        t.ok(kinds.has(k), `renders a ${k}`);
      }
      t.notOk(kinds.has('Secret'), 'renders no Secret (created out of band)');
      t.notMatch(text, /PRIVATE KEY/, 'no private key material');
      const ns = nameOf(one(objects, 'Namespace'));
      t.equal(
        obj(at(one(objects, 'Namespace'), 'metadata.labels'), 'labels')['pod-security.kubernetes.io/enforce'],
        'restricted',
        'namespace enforces the restricted Pod Security Standard',
      );
      for (const o of objects.filter((x) => kindOf(x) !== 'Namespace')) {
        t.equal(at(o, 'metadata.namespace'), ns, `${kindOf(o)}/${nameOf(o)} is in namespace ${ns}`);
      }
    });

    t.test('certbound container is hardened', async (t) => {
      const sc = obj(view.certbound['securityContext'], 'certbound securityContext');
      t.equal(sc['runAsNonRoot'], true, 'runAsNonRoot');
      t.equal(sc['runAsUser'], UID, `runAsUser ${UID}`);
      t.equal(sc['allowPrivilegeEscalation'], false, 'allowPrivilegeEscalation false');
      t.equal(sc['readOnlyRootFilesystem'], true, 'readOnlyRootFilesystem');
      t.strictSame(at(sc, 'capabilities.drop'), ['ALL'], 'drops ALL capabilities');
      t.equal(at(sc, 'seccompProfile.type'), 'RuntimeDefault', 'seccomp RuntimeDefault');
      t.equal(at(view.podSpec, 'securityContext.runAsNonRoot'), true, 'pod runAsNonRoot');
      t.equal(at(view.podSpec, 'securityContext.seccompProfile.type'), 'RuntimeDefault', 'pod seccomp');

      // The only writable path is an emptyDir at /tmp.
      const mounts = objs(view.certbound['volumeMounts'], 'volumeMounts');
      const tmp = mounts.find((m) => m['mountPath'] === '/tmp');
      t.ok(tmp, '/tmp is mounted');
      const tmpVol = view.volumes.find((v) => v['name'] === tmp?.['name']);
      t.ok(tmpVol !== undefined && isObj(tmpVol['emptyDir']), '/tmp is an emptyDir');
      for (const m of mounts.filter((x) => x['mountPath'] !== '/tmp')) {
        t.equal(m['readOnly'], true, `${String(m['mountPath'])} is mounted read-only`);
      }
      // Hot reload relies on the atomic symlink swap, which subPath mounts never see.
      t.notOk(
        mounts.some((m) => m['subPath'] !== undefined),
        'no subPath mounts (ConfigMap/Secret updates must reach the container)',
      );

      for (const kind of ['requests', 'limits']) {
        t.ok(at(view.certbound, `resources.${kind}.cpu`), `resources.${kind}.cpu set`);
        t.ok(at(view.certbound, `resources.${kind}.memory`), `resources.${kind}.memory set`);
      }
    });

    t.test('probes hit the admin listener', async (t) => {
      t.equal(at(view.certbound, 'livenessProbe.httpGet.path'), '/healthz', 'liveness -> /healthz');
      t.equal(at(view.certbound, 'livenessProbe.httpGet.port'), ADMIN_PORT, `liveness on :${ADMIN_PORT}`);
      t.equal(at(view.certbound, 'readinessProbe.httpGet.path'), '/readyz', 'readiness -> /readyz');
      t.equal(at(view.certbound, 'readinessProbe.httpGet.port'), ADMIN_PORT, `readiness on :${ADMIN_PORT}`);
      t.equal(at(gw, 'admin.port'), ADMIN_PORT, 'gateway.yaml admin.port matches the probes');
      t.equal(at(gw, 'listen.port'), TRAFFIC_PORT, `gateway.yaml listen.port ${TRAFFIC_PORT}`);
      const ports = objs(view.certbound['ports'], 'certbound ports');
      t.strictSame(
        ports.map((p) => p['containerPort']).sort(),
        [TRAFFIC_PORT, ADMIN_PORT].sort(),
        'certbound exposes the traffic and admin ports',
      );
    });

    t.test('configuration and secrets are wired correctly', async (t) => {
      const env = objs(view.certbound['env'], 'certbound env');
      const secretEnv = env.find((e) => e['name'] === 'CERTBOUND_CLIENT_SECRET');
      t.ok(secretEnv, 'CERTBOUND_CLIENT_SECRET is set');
      t.equal(secretEnv?.['value'], undefined, 'client secret is not a literal value');
      t.ok(at(secretEnv, 'valueFrom.secretKeyRef.name'), 'client secret comes from a secretKeyRef');
      t.equal(at(gw, 'authorization_server.client_secret'), '${CERTBOUND_CLIENT_SECRET}', 'gateway.yaml expands it');
      const configEnv = env.find((e) => e['name'] === 'CERTBOUND_CONFIG');
      const args = arr(view.certbound['args'], 'args');
      t.equal(configEnv?.['value'], args[args.indexOf('--config') + 1], 'CERTBOUND_CONFIG agrees with --config');
      t.equal(at(gw, 'upstreams.bank-api'), 'http://127.0.0.1:8080', 'certbound forwards to the loopback bank API');
      const routes = objs(gw['routes'], 'routes');
      for (const r of routes) {
        t.ok(Object.keys(obj(gw['upstreams'], 'upstreams')).includes(str(r['upstream'], 'upstream')), `route ${String(r['name'])} has a defined upstream`);
      }
    });

    t.test('sample bank API is reachable only through certbound', async (t) => {
      const env = objs(view.bankApi['env'] ?? [], 'bank-api env');
      const bind = env.find((e) => /BIND|HOST|LISTEN/i.test(String(e['name'])));
      t.equal(bind?.['value'], '127.0.0.1', 'bank API binds to 127.0.0.1');
      t.equal(view.bankApi['ports'], undefined, 'bank API declares no container ports');
      const sc = obj(view.bankApi['securityContext'], 'bank-api securityContext');
      t.equal(sc['allowPrivilegeEscalation'], false, 'bank API: allowPrivilegeEscalation false');
      t.equal(sc['readOnlyRootFilesystem'], true, 'bank API: readOnlyRootFilesystem');
      t.strictSame(at(sc, 'capabilities.drop'), ['ALL'], 'bank API: drops ALL capabilities');
      for (const svc of all(objects, 'Service')) {
        for (const p of objs(at(svc, 'spec.ports'), 'service ports')) {
          t.not(p['targetPort'], 8080, `Service ${nameOf(svc)} does not target the bank API directly`);
        }
      }
    });

    t.test('termination grace covers preStop + drain', async (t) => {
      const preStop = preStopSeconds(view.certbound);
      const grace = num(at(gw, 'shutdown.grace_period_seconds'), 'shutdown.grace_period_seconds');
      const tgps = num(view.podSpec['terminationGracePeriodSeconds'], 'terminationGracePeriodSeconds');
      t.ok(preStop >= 1, `certbound preStop sleeps (${preStop}s)`);
      t.ok(tgps >= preStop + grace, `terminationGracePeriodSeconds ${tgps} >= preStop ${preStop} + grace ${grace}`);
      t.ok(tgps > preStop + grace, 'and leaves a margin for process exit');
      // The bank API must keep serving while certbound drains in-flight requests.
      const bankPreStop = preStopSeconds(view.bankApi);
      t.ok(bankPreStop >= preStop + grace, `bank API preStop ${bankPreStop}s outlasts certbound's drain`);
      t.ok(tgps > bankPreStop, 'bank API still gets SIGTERM before SIGKILL');
      t.equal(at(view.deployment, 'spec.strategy.rollingUpdate.maxUnavailable'), 0, 'rolling updates keep capacity');
    });

    t.test('service account, PDB and Service', async (t) => {
      const sa = one(objects, 'ServiceAccount');
      t.equal(sa['automountServiceAccountToken'], false, 'ServiceAccount does not automount a token');
      t.equal(view.podSpec['automountServiceAccountToken'], false, 'pod does not automount a token');
      t.equal(view.podSpec['serviceAccountName'], nameOf(sa), 'pod uses the ServiceAccount');

      const pdb = one(objects, 'PodDisruptionBudget');
      t.ok(
        selectorMatches(obj(at(pdb, 'spec.selector.matchLabels'), 'pdb selector'), view.podLabels),
        'PDB selects the pods',
      );
      t.ok(num(at(view.deployment, 'spec.replicas'), 'replicas') >= 2, 'at least 2 replicas so the PDB allows drains');

      const svc = one(objects, 'Service', 'bank-api');
      t.ok(selectorMatches(obj(at(svc, 'spec.selector'), 'svc selector'), view.podLabels), 'Service selects the pods');
      const ports = objs(at(svc, 'spec.ports'), 'svc ports');
      const metrics = ports.find((p) => p['name'] === 'metrics');
      t.equal(metrics?.['port'], ADMIN_PORT, 'metrics port 9091');
      t.equal(metrics?.['targetPort'], 'admin', 'metrics -> container port admin');
      const traffic = ports.find((p) => p['name'] === 'https' || p['name'] === 'http');
      t.equal(traffic?.['targetPort'], 'gateway', 'traffic port -> container port gateway (8443)');
      const named = new Map(
        objs(view.certbound['ports'], 'ports').map((p) => [str(p['name'], 'port name'), p['containerPort']]),
      );
      t.equal(named.get('gateway'), TRAFFIC_PORT, 'container port "gateway" is 8443');
      t.equal(named.get('admin'), ADMIN_PORT, 'container port "admin" is 9091');
    });

    t.test('NetworkPolicy', async (t) => {
      const np = one(objects, 'NetworkPolicy');
      t.ok(selectorMatches(obj(at(np, 'spec.podSelector.matchLabels'), 'np selector'), view.podLabels), 'selects the pods');
      t.strictSame(at(np, 'spec.policyTypes'), ['Ingress', 'Egress'], 'restricts ingress and egress');
      const rules = objs(at(np, 'spec.ingress'), 'ingress rules');
      const allowedPorts = rules.flatMap((r) => objs(r['ports'] ?? [], 'ports').map((p) => p['port']));
      t.strictSame([...new Set(allowedPorts)].sort(), [TRAFFIC_PORT, ADMIN_PORT].sort(), 'only 8443 and 9091 are open');
      const adminRules = rules.filter((r) => objs(r['ports'] ?? [], 'ports').some((p) => p['port'] === ADMIN_PORT));
      t.equal(adminRules.length, 1, 'one rule for the admin port');
      const from = objs(adminRules[0]?.['from'], 'admin from');
      t.equal(from.length, 1, 'admin port has a single source');
      t.equal(
        obj(at(from[0], 'namespaceSelector.matchLabels'), 'ns selector')['kubernetes.io/metadata.name'],
        'monitoring',
        'admin port only from the monitoring namespace',
      );
      const egressPorts = objs(at(np, 'spec.egress'), 'egress').flatMap((r) =>
        objs(r['ports'] ?? [], 'ports').map((p) => `${String(p['protocol'])}/${String(p['port'])}`),
      );
      t.ok(egressPorts.includes('UDP/53') && egressPorts.includes('TCP/53'), 'egress to DNS');
      t.ok(egressPorts.includes('TCP/443'), 'egress to the authorization server over HTTPS');
    });

    t.test('ServiceMonitor and PrometheusRule', async (t) => {
      const sm = one(objects, 'ServiceMonitor');
      const svc = one(objects, 'Service', 'bank-api');
      t.ok(
        selectorMatches(obj(at(sm, 'spec.selector.matchLabels'), 'sm selector'), obj(at(svc, 'metadata.labels'), 'svc labels')),
        'ServiceMonitor selects the bank-api Service',
      );
      const endpoints = objs(at(sm, 'spec.endpoints'), 'sm endpoints');
      t.equal(endpoints[0]?.['port'], 'metrics', 'scrapes the "metrics" port');
      t.equal(endpoints[0]?.['path'], '/metrics', 'scrapes /metrics');
      const relabel = objs(endpoints[0]?.['relabelings'], 'relabelings');
      t.ok(
        relabel.some((r) => r['targetLabel'] === 'job' && r['replacement'] === 'certbound'),
        'sets job="certbound" (used by the alert rules)',
      );
      // No other selected Service may expose a "metrics" port (double scraping).
      for (const other of all(objects, 'Service').filter((s) => nameOf(s) !== 'bank-api')) {
        const selected = selectorMatches(obj(at(sm, 'spec.selector.matchLabels'), 'sm selector'), obj(at(other, 'metadata.labels') ?? {}, 'labels'));
        const hasMetrics = objs(at(other, 'spec.ports'), 'ports').some((p) => p['name'] === 'metrics');
        t.notOk(selected && hasMetrics, `Service ${nameOf(other)} is not scraped twice`);
      }
      const pr = one(objects, 'PrometheusRule');
      const groups = objs(at(pr, 'spec.groups'), 'groups');
      const alerts = groups.flatMap((g) => objs(g['rules'], 'rules').map((r) => r['alert']));
      t.ok(alerts.length >= 7, `PrometheusRule carries the alerts (${alerts.length})`);
    });
  });
}

// ---------------------------------------------------------------------------
// Overlay-specific checks
// ---------------------------------------------------------------------------
t.test('mtls overlay: certbound terminates TLS', async (t) => {
  const { objects } = await render('mtls');
  const view = podView(objects);
  const gw = gatewayConfig(objects, view);
  t.equal(at(gw, 'client_certificate.source'), 'tls', 'client certificate from the TLS handshake');
  const mounts = objs(view.certbound['volumeMounts'], 'volumeMounts');
  const secretNames: string[] = [];
  for (const key of ['cert_file', 'key_file', 'client_ca_file']) {
    const file = str(at(gw, `listen.tls.${key}`), `listen.tls.${key}`);
    const mount = mounts.find((m) => file.startsWith(`${str(m['mountPath'], 'mountPath')}/`));
    t.ok(mount, `${key} ${file} is under a volumeMount`);
    const vol = view.volumes.find((v) => v['name'] === mount?.['name']);
    const secretName = at(vol, 'secret.secretName');
    t.type(secretName, 'string', `${key} comes from a Secret volume`);
    if (typeof secretName === 'string') secretNames.push(secretName);
  }
  t.ok(secretNames.includes('certbound-tls') && secretNames.includes('certbound-client-ca'), 'mounts the TLS and client CA Secrets');
  t.equal(at(gw, 'listen.tls.min_version'), 'TLSv1.2', 'TLS 1.2 minimum');

  const lb = all(objects, 'Service').find((s) => at(s, 'spec.type') === 'LoadBalancer');
  t.ok(lb, 'exposes certbound through an L4 LoadBalancer Service');
  if (lb !== undefined) {
    const ports = objs(at(lb, 'spec.ports'), 'lb ports');
    t.strictSame(
      ports.map((p) => [p['name'], p['port'], p['targetPort']]),
      [['https', 443, 'gateway']],
      'LoadBalancer exposes only 443 -> 8443 (never the admin port)',
    );
    t.ok(selectorMatches(obj(at(lb, 'spec.selector'), 'selector'), view.podLabels), 'LoadBalancer selects the pods');
  }
  const np = one(objects, 'NetworkPolicy');
  const trafficRule = objs(at(np, 'spec.ingress'), 'ingress').find((r) =>
    objs(r['ports'] ?? [], 'ports').some((p) => p['port'] === TRAFFIC_PORT),
  );
  t.equal(trafficRule?.['from'], undefined, '8443 is open to clients arriving via the load balancer');
  t.equal(all(objects, 'Ingress').length, 0, 'no Ingress (it would terminate TLS)');
});

t.test('ingress-nginx overlay: client certificate via header', async (t) => {
  const { objects } = await render('ingress-nginx');
  const view = podView(objects);
  const gw = gatewayConfig(objects, view);
  t.equal(at(gw, 'client_certificate.source'), 'header', 'client certificate from a header');
  t.equal(at(gw, 'client_certificate.preset'), 'ingress-nginx', 'ingress-nginx preset');
  const proxies = arr(at(gw, 'client_certificate.trusted_proxies'), 'trusted_proxies');
  t.ok(proxies.length > 0, 'trusted_proxies is not empty');
  for (const p of proxies) {
    t.match(String(p), /^[0-9a-f:.]+\/\d{1,3}$/i, `trusted proxy ${String(p)} is a CIDR`);
    t.notOk(['0.0.0.0/0', '::/0'].includes(String(p)), 'trusted_proxies does not trust everyone');
  }
  t.equal(at(gw, 'listen.tls'), undefined, 'plain HTTP listener behind the ingress');
  t.notOk(
    view.volumes.some((v) => at(v, 'secret.secretName') === 'certbound-tls'),
    'certbound mounts no serving certificate in this mode',
  );

  const ingress = one(objects, 'Ingress');
  const ann = obj(at(ingress, 'metadata.annotations'), 'annotations');
  const ns = str(at(ingress, 'metadata.namespace'), 'namespace');
  const authTlsSecret = str(ann['nginx.ingress.kubernetes.io/auth-tls-secret'], 'auth-tls-secret');
  t.match(authTlsSecret, new RegExp(`^${ns}/[a-z0-9-]+$`), 'auth-tls-secret is <namespace>/<secret> in this namespace');
  t.equal(ann['nginx.ingress.kubernetes.io/auth-tls-verify-client'], 'on', 'verifies client certificates');
  t.match(String(ann['nginx.ingress.kubernetes.io/auth-tls-verify-depth']), /^[1-9]$/, 'verify depth set');
  t.equal(ann['nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream'], 'true', 'passes the certificate upstream');
  t.match(String(ann['nginx.ingress.kubernetes.io/backend-protocol']), /^HTTPS?$/, 'backend protocol set');
  t.equal(at(ingress, 'spec.ingressClassName'), 'nginx', 'ingress class nginx');
  t.ok(objs(at(ingress, 'spec.tls'), 'ingress tls').length > 0, 'Ingress terminates TLS');

  const svc = one(objects, 'Service', 'bank-api');
  const svcPorts = objs(at(svc, 'spec.ports'), 'ports');
  for (const rule of objs(at(ingress, 'spec.rules'), 'rules')) {
    for (const path of objs(at(rule, 'http.paths'), 'paths')) {
      t.equal(at(path, 'backend.service.name'), 'bank-api', 'backend is the bank-api Service');
      const portName = at(path, 'backend.service.port.name');
      const port = svcPorts.find((p) => p['name'] === portName);
      t.ok(port, `backend port ${String(portName)} exists on the Service`);
      t.equal(port?.['targetPort'], 'gateway', 'backend reaches certbound, not the bank API');
    }
  }
  t.notOk(all(objects, 'Service').some((s) => at(s, 'spec.type') === 'LoadBalancer'), 'no LoadBalancer bypassing the ingress');

  const np = one(objects, 'NetworkPolicy');
  const trafficRule = objs(at(np, 'spec.ingress'), 'ingress').find((r) =>
    objs(r['ports'] ?? [], 'ports').some((p) => p['port'] === TRAFFIC_PORT),
  );
  const from = objs(trafficRule?.['from'], '8443 from');
  t.equal(from.length, 1, '8443 has a single source');
  t.equal(
    obj(at(from[0], 'namespaceSelector.matchLabels'), 'ns selector')['kubernetes.io/metadata.name'],
    'ingress-nginx',
    '8443 only from the ingress-nginx namespace (header cannot be forged from elsewhere)',
  );
  t.ok(isObj(at(from[0], 'podSelector.matchLabels')), 'and only from the controller pods');
});

t.test('both overlays serve the same routes and authorization server', async (t) => {
  const [a, b] = await Promise.all([render('mtls'), render('ingress-nginx')]);
  const ga = gatewayConfig(a.objects, podView(a.objects));
  const gb = gatewayConfig(b.objects, podView(b.objects));
  for (const key of ['admin', 'authorization_server', 'upstreams', 'routes', 'logging', 'shutdown']) {
    t.strictSame(gb[key], ga[key], `gateway.yaml "${key}" is identical in both overlays`);
  }
  t.equal(at(ga, 'listen.port'), at(gb, 'listen.port'), 'same listen port');
  t.strictSame(
    podView(a.objects).certbound['securityContext'],
    podView(b.objects).certbound['securityContext'],
    'same certbound securityContext',
  );
});

// ---------------------------------------------------------------------------
// components/shared-state (opt-in): Redis-backed shared state and POST /revocations
// ---------------------------------------------------------------------------
const SHARED_STATE_DIR = join(ROOT, 'deploy/kubernetes/components/shared-state');
const SHARED_STATE_SECRET = 'certbound-shared-state';

/** Deep merge of mappings (b wins), as a user merges the snippet into their gateway.yaml. */
function merge(a: Obj, b: Obj): Obj {
  const out: Obj = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isObj(prev) && isObj(v) ? merge(prev, v) : v;
  }
  return out;
}

for (const overlay of OVERLAYS) {
  t.test(`overlay ${overlay} + components/shared-state`, async (t) => {
    const [{ text, objects }, plain] = await Promise.all([renderWith(overlay, 'shared-state'), render(overlay)]);
    const view = podView(objects);
    const gw = gatewayConfig(objects, view);
    const snippet = obj(parse(await readFile(join(SHARED_STATE_DIR, 'gateway-snippet.yaml'), 'utf8')), 'gateway-snippet.yaml');
    const merged = merge(gw, snippet);
    const ns = nameOf(one(objects, 'Namespace'));

    t.test('renders no Secret and keeps every object in the namespace', async (t) => {
      t.notOk(objects.some((o) => kindOf(o) === 'Secret'), `renders no Secret (${SHARED_STATE_SECRET} is created out of band)`);
      t.notMatch(text, /PRIVATE KEY/, 'no private key material');
      for (const o of objects.filter((x) => kindOf(x) !== 'Namespace')) {
        t.equal(at(o, 'metadata.namespace'), ns, `${kindOf(o)}/${nameOf(o)} is in namespace ${ns}`);
      }
      const before = new Set(plain.objects.map((o) => `${kindOf(o)}/${nameOf(o)}`));
      const added = objects.map((o) => `${kindOf(o)}/${nameOf(o)}`).filter((k) => !before.has(k));
      t.strictSame(added, ['Service/certbound-admin'], 'adds only the certbound-admin Service');
    });

    t.test('the snippet, merged into the overlay gateway.yaml, passes the published schema', async (t) => {
      t.equal(gw['shared_state'], undefined, 'the shipped overlay has no shared_state of its own');
      t.equal(at(gw, 'admin.revocation_secret_file'), undefined, 'nor a revocation secret');
      const schema = JSON.parse(await readFile(join(ROOT, 'schema/gateway.schema.json'), 'utf8')) as Obj;
      const editor = new Ajv({ allErrors: true, strict: false }).compile(schema);
      t.ok(editor(merged), `merged gateway.yaml: ${JSON.stringify(editor.errors)}`);
      t.equal(at(merged, 'admin.port'), ADMIN_PORT, 'the admin block keeps its port (the snippet is merged into it)');
      t.ok(str(at(merged, 'shared_state.redis_url'), 'redis_url').length > 0, 'sets shared_state.redis_url');
    });

    t.test('secret files come from the Secret, mounted read-only as a directory', async (t) => {
      const mounts = objs(view.certbound['volumeMounts'], 'volumeMounts');
      t.notOk(mounts.some((m) => m['subPath'] !== undefined), 'no subPath mounts (Secret updates must reach the container)');
      for (const m of mounts.filter((x) => x['mountPath'] !== '/tmp')) {
        t.equal(m['readOnly'], true, `${String(m['mountPath'])} is mounted read-only`);
      }
      const files: [string, string][] = [
        ['shared_state.secret_file', 'shared-secret'],
        ['admin.revocation_secret_file', 'admin-secret'],
      ];
      for (const [key, secretKey] of files) {
        const file = str(at(merged, key), key);
        const mount = mounts.find((m) => dirname(file) === str(m['mountPath'], 'mountPath'));
        t.ok(mount, `${key} ${file} is directly under a volumeMount`);
        const vol = view.volumes.find((v) => v['name'] === mount?.['name']);
        t.equal(at(vol, 'secret.secretName'), SHARED_STATE_SECRET, `${key} comes from the Secret ${SHARED_STATE_SECRET}`);
        t.equal(at(vol, 'secret.optional'), undefined, 'a missing Secret keeps the pod from starting');
        const items = objs(at(vol, 'secret.items') ?? [], 'items');
        const item = items.find((i) => i['path'] === file.slice(dirname(file).length + 1));
        t.equal(item?.['key'], secretKey, `${key} is its key ${secretKey}`);
        t.notOk(items.some((i) => i['key'] === 'redis-url'), 'redis-url is not mounted as a file');
      }
    });

    t.test('redis_url arrives from the Secret through the environment', async (t) => {
      const ref = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(str(at(merged, 'shared_state.redis_url'), 'redis_url'));
      t.ok(ref, 'shared_state.redis_url is a ${VAR}');
      const env = objs(view.certbound['env'], 'certbound env').find((e) => e['name'] === ref?.[1]);
      t.equal(env?.['value'], undefined, 'not a literal value');
      t.equal(at(env, 'valueFrom.secretKeyRef.name'), SHARED_STATE_SECRET, `from the Secret ${SHARED_STATE_SECRET}`);
      t.equal(at(env, 'valueFrom.secretKeyRef.key'), 'redis-url', 'key redis-url');
    });

    t.test('NetworkPolicy: egress to Redis, admin port for the revocation callers', async (t) => {
      const np = one(objects, 'NetworkPolicy');
      const original = one(plain.objects, 'NetworkPolicy');
      const egress = objs(at(np, 'spec.egress'), 'egress');
      t.strictSame(egress.slice(0, -1), at(original, 'spec.egress'), "keeps the overlay's egress rules");
      const redis = egress.at(-1);
      t.strictSame(objs(redis?.['ports'], 'ports').map((p) => `${String(p['protocol'])}/${String(p['port'])}`), ['TCP/6379'], 'adds egress to Redis on 6379');
      t.ok(objs(redis?.['to'], 'to').length > 0, 'to a named destination, not everywhere');
      const ingress = objs(at(np, 'spec.ingress'), 'ingress');
      t.strictSame(ingress.slice(0, -1), at(original, 'spec.ingress'), "keeps the overlay's ingress rules");
      const callers = ingress.at(-1);
      t.strictSame(objs(callers?.['ports'], 'ports').map((p) => p['port']), [ADMIN_PORT], 'the added ingress rule opens only the admin port');
      const from = objs(callers?.['from'], 'from');
      t.equal(from.length, 1, 'from a single source');
      t.type(obj(at(from[0], 'namespaceSelector.matchLabels'), 'namespaceSelector')['kubernetes.io/metadata.name'], 'string', 'a named namespace');
    });

    t.test('certbound-admin Service', async (t) => {
      const svc = one(objects, 'Service', 'certbound-admin');
      t.ok(selectorMatches(obj(at(svc, 'spec.selector'), 'selector'), view.podLabels), 'selects the pods');
      t.strictSame(
        objs(at(svc, 'spec.ports'), 'ports').map((p) => [p['name'], p['port'], p['targetPort']]),
        [['admin', ADMIN_PORT, 'admin']],
        'exposes only the admin port, not named "metrics" (no second scrape)',
      );
      t.equal(at(svc, 'spec.type'), 'ClusterIP', 'inside the cluster only');
      const sm = one(objects, 'ServiceMonitor');
      t.notOk(selectorMatches(obj(at(sm, 'spec.selector.matchLabels'), 'sm selector'), obj(at(svc, 'metadata.labels'), 'labels')), 'not selected by the ServiceMonitor');
    });
  });
}
