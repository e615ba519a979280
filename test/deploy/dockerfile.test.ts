// Static checks on the Dockerfile (no Docker engine is needed): multi-stage
// build, production-only runtime dependencies, non-root user matching the
// Kubernetes securityContext, ports, entrypoint and stop signal.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction {
  cmd: string;
  args: string;
  stage: number;
}

/** Parse Dockerfile instructions (joins continuation lines, drops comments). */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of joined.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const cmd = (m[1] ?? '').toUpperCase();
    if (cmd === 'FROM') stage++;
    out.push({ cmd, args: (m[2] ?? '').trim(), stage });
  }
  return out;
}

t.test('Dockerfile', async (t) => {
  const text = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
  const ins = instructions(text);
  const from = ins.filter((i) => i.cmd === 'FROM');
  t.equal(from.length, 2, 'two stages (build, runtime)');
  t.match(text, /ARG NODE_IMAGE=node:(2[2-9]|[3-9]\d)-bookworm-slim/, 'current Node LTS on bookworm-slim');
  const lastStage = from.length - 1;
  const build = ins.filter((i) => i.stage === 0);
  const runtime = ins.filter((i) => i.stage === lastStage);

  t.ok(build.some((i) => i.cmd === 'RUN' && /\bnpm ci\b/.test(i.args) && !/--omit=dev/.test(i.args)), 'build: npm ci');
  t.ok(build.some((i) => i.cmd === 'RUN' && /\bnpm run build\b/.test(i.args)), 'build: npm run build');
  t.ok(runtime.some((i) => i.cmd === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args)), 'runtime: npm ci --omit=dev');
  t.ok(runtime.some((i) => i.cmd === 'COPY' && /--from=build\s+\S*dist\b/.test(i.args)), 'runtime: copies dist from build');
  t.notOk(runtime.some((i) => i.cmd === 'COPY' && /\bsrc\b/.test(i.args)), 'runtime: no sources');
  t.ok(runtime.some((i) => i.cmd === 'ENV' && /NODE_ENV=production/.test(i.args)), 'NODE_ENV=production');
  t.ok(runtime.some((i) => i.cmd === 'ENV' && /NODE_OPTIONS="[^"]*--max-semi-space-size=8[^"]*"/.test(i.args)), 'young generation sized for throughput under the memory limit');

  const users = runtime.filter((i) => i.cmd === 'USER');
  t.equal(users.length, 1, 'runtime sets USER once');
  const uid = Number((users[0]?.args ?? '').split(':')[0]);
  t.equal(uid, 10001, 'runs as uid 10001');
  const userIndex = ins.findIndex((i) => i.cmd === 'USER' && i.stage === lastStage);
  t.notOk(
    ins.slice(userIndex + 1).some((i) => i.cmd === 'USER' || i.cmd === 'RUN'),
    'nothing runs as root after USER',
  );

  const expose = runtime.filter((i) => i.cmd === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
  t.strictSame(expose.sort(), ['8443', '9091'], 'EXPOSE 8443 9091');
  const entrypoint = runtime.find((i) => i.cmd === 'ENTRYPOINT');
  t.strictSame(JSON.parse(entrypoint?.args ?? 'null'), ['node', 'dist/main.js'], 'ENTRYPOINT exec form');
  const cmd = runtime.find((i) => i.cmd === 'CMD');
  t.strictSame(JSON.parse(cmd?.args ?? 'null'), ['serve', '--config', '/etc/certbound/gateway.yaml'], 'CMD serve --config');
  t.equal(runtime.find((i) => i.cmd === 'STOPSIGNAL')?.args, 'SIGTERM', 'STOPSIGNAL SIGTERM');
  t.notOk(runtime.some((i) => i.cmd === 'VOLUME'), 'no VOLUME (read-only root filesystem, /tmp is mounted)');

  // The Kubernetes securityContext pins the same uid.
  const deployment: unknown = parse(await readFile(join(ROOT, 'deploy/kubernetes/base/deployment.yaml'), 'utf8'));
  t.match(deployment, { spec: { template: { spec: { securityContext: { runAsUser: uid } } } } }, 'Deployment runAsUser matches the image USER');
});

t.test('.dockerignore', async (t) => {
  const lines = (await readFile(join(ROOT, '.dockerignore'), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  for (const p of ['node_modules', 'dist', '.git', '.tap', 'coverage', 'test-results']) {
    t.ok(lines.includes(p), `ignores ${p}`);
  }
  for (const p of ['src', 'package.json', 'package-lock.json', 'tsconfig.json']) {
    t.notOk(lines.includes(p), `keeps ${p} in the build context`);
  }
});
