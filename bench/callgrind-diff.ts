// Two callgrind dumps of phase instructions compared function by function (not part of `npm run
// bench`): `npx tsx bench/callgrind-diff.ts <dump A> <dump B> [requests A] [requests B] [rows]`.
// A dump is `cg.<pid>.1-01` (the main thread) in a directory that BENCH_INSTRUCTIONS_KEEP kept;
// JIT code is named from V8's perf map, /tmp/perf-<pid>.map, when it is there. Prints the self
// cost per request, in thousands of instructions, of the functions that grew most from A to B, then
// of those that shrank most. requests: what each dump counted (the phase's default, 4000).
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { spawnSync } from 'node:child_process';

interface JitSymbol { readonly start: number; readonly size: number; readonly name: string }

/** V8's perf map of the process that wrote `dump`, sorted by address; empty when absent. */
function perfMap(dump: string): JitSymbol[] {
  const pid = /^cg\.(\d+)/.exec(basename(dump))?.[1];
  const file = `/tmp/perf-${pid ?? ''}.map`;
  if (pid === undefined || !existsSync(file)) return [];
  const out: JitSymbol[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m) out.push({ start: parseInt(m[1] as string, 16), size: parseInt(m[2] as string, 16), name: `JIT ${m[3] as string}` });
  }
  return out.sort((a, b) => a.start - b.start);
}

function lookup(map: readonly JitSymbol[], address: number): string {
  let lo = 0;
  let hi = map.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = map[mid] as JitSymbol;
    if (address < s.start) hi = mid - 1;
    else if (address >= s.start + s.size) lo = mid + 1;
    else return s.name;
  }
  return 'JIT ?';
}

/**
 * Self instructions per request by function name, and the dump's total. Rows of half the total or
 * more are the frames at the bottom of every stack (`main`, `node::Start`, the loader's entry),
 * which callgrind charges with what it could not attribute: left out.
 */
function selfCost(dump: string, requests: number): { total: number; by: Map<string, number> } {
  const run = spawnSync('callgrind_annotate', ['--threshold=100', dump], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`callgrind_annotate ${dump}: ${run.stderr || run.error?.message || 'failed'}`);
  const map = perfMap(dump);
  const by = new Map<string, number>();
  const total = Number(/^([\d,]+).*PROGRAM TOTALS/m.exec(run.stdout)?.[1]?.replaceAll(',', '') ?? Number.NaN) / requests;
  for (const line of run.stdout.split('\n')) {
    const m = /^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$/.exec(line);
    if (!m || line.includes('PROGRAM TOTALS')) continue;
    const cost = Number((m[1] as string).replaceAll(',', '')) / requests;
    if (cost >= total / 2) continue;
    let name = (m[2] as string).replace(/\s+\[[^\]]*\]$/, '');
    const jit = /^\?\?\?:0x([0-9a-f]+)$/.exec(name);
    if (jit) name = lookup(map, parseInt(jit[1] as string, 16));
    by.set(name, (by.get(name) ?? 0) + cost);
  }
  return { total, by };
}

const [dumpA, dumpB, requestsA = '4000', requestsB = requestsA, rows = '30'] = process.argv.slice(2);
if (dumpA === undefined || dumpB === undefined) {
  console.error('usage: npx tsx bench/callgrind-diff.ts <dump A> <dump B> [requests A] [requests B] [rows]');
  process.exit(2);
}
const a = selfCost(dumpA, Number(requestsA));
const b = selfCost(dumpB, Number(requestsB));
const k = (x: number) => (x / 1000).toFixed(2).padStart(8);
const diffs = [...new Set([...a.by.keys(), ...b.by.keys()])].map((name) => ({ name, a: a.by.get(name) ?? 0, b: b.by.get(name) ?? 0 }));
diffs.sort((x, y) => y.b - y.a - (x.b - x.a));
console.log(`k instructions per request in all: A ${k(a.total).trim()}, B ${k(b.total).trim()}; by function, self cost:`);
console.log(`${'B − A'.padStart(8)} ${'A'.padStart(8)} ${'B'.padStart(8)}  function`);
const show = (d: { name: string; a: number; b: number }) => console.log(`${k(d.b - d.a)} ${k(d.a)} ${k(d.b)}  ${d.name.slice(0, 140)}`);
diffs.slice(0, Number(rows)).forEach(show);
console.log('…');
diffs.slice(-Math.ceil(Number(rows) / 2)).forEach(show);
