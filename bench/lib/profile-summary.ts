// `node --import tsx bench/lib/profile-summary.ts FILE.cpuprofile [N]`: self time per function,
// and inclusive time per src/ function, from a `--cpu-prof` profile.
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
const profile = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as { nodes: Node[]; samples: number[] };
const top = Number(process.argv[3] ?? 40);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const total = profile.samples.length;
const label = (n: Node) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*\/certbound-bench\//, '').replace(/^.*node_modules\//, '~/').replace(/^.*\/work\/main\//, '')}:${n.callFrame.lineNumber + 1}`;
const self = new Map<string, number>();
for (const n of profile.nodes) self.set(label(n), (self.get(label(n)) ?? 0) + (n.hitCount ?? 0));
console.log(`samples ${total}\n-- self --`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);

const inclusive = new Map<string, number>();
const walk = (n: Node, stack: Set<string>): number => {
  let sum = n.hitCount ?? 0;
  for (const c of n.children ?? []) sum += walk(byId.get(c) as Node, new Set([...stack, label(n)]));
  const l = label(n);
  if (!stack.has(l)) inclusive.set(l, (inclusive.get(l) ?? 0) + sum);
  return sum;
};
walk(profile.nodes[0] as Node, new Set());
console.log('-- inclusive (src/, bench/) --');
for (const [k, v] of [...inclusive].filter(([k]) => / (src|bench)\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);

// Self time grouped by where the code lives: package, src/ file, Node internals, native.
const group = (n: Node): string => {
  const { url, functionName } = n.callFrame;
  if (!url) return functionName.startsWith('(') ? functionName : `native ${functionName}`;
  const compiled = /\/certbound-bench\/(.*)$/.exec(url);
  if (compiled) return compiled[1] as string;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.includes('/work/main/')) return url.replace(/^.*\/work\/main\//, '');
  return url.startsWith('node:') ? 'node internals (JS)' : url;
};
const groups = new Map<string, number>();
for (const n of profile.nodes) groups.set(group(n), (groups.get(group(n)) ?? 0) + (n.hitCount ?? 0));
console.log('-- self time by origin --');
for (const [k, v] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
