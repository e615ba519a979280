// `npx tsx bench/lib/perf-summary.ts A.perf:REQUESTS B.perf:REQUESTS [TOP]`: CPU time per request
// by kind of code and by symbol, from `perf record -e cpu-clock` files (BENCH_PERF in the dpop
// phase; gateways run with --perf-basic-prof so JIT frames have names). Each file's event count
// (CPU nanoseconds sampled) is divided by its request count; the last columns are B − A.
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const top = /^\d+$/.test(args.at(-1) ?? '') ? Number(args.pop()) : 30;
const inputs = args.map((a) => {
  const at = a.lastIndexOf(':');
  return { file: a.slice(0, at), requests: Number(a.slice(at + 1)) };
});
if (inputs.length === 0 || inputs.some((i) => !(i.requests > 0))) {
  console.error('usage: perf-summary.ts FILE.perf:REQUESTS [FILE.perf:REQUESTS …] [TOP]');
  process.exit(2);
}

function kindOf(symbol: string, kernel: boolean): string {
  if (kernel) return 'kernel';
  if (/ecp_nistz|EVP_|ossl_|OPENSSL_|BN_|bn_|sha256_block|do_name|evp_|ecdsa|EC_|CRYPTO_|ERR_|OBJ_|lh_|strcasecmp/.test(symbol)) return 'OpenSSL';
  if (/JsonParser|JsonParse/.test(symbol)) return 'JSON.parse';
  if (/compiler::|Compiler|Turbofan|wasm::|Maglev|baseline::|BytecodeGenerator|interpreter::/.test(symbol)) return 'V8 compilers';
  if (/Scaveng|MarkCompact|Heap::|Sweep|Marking|GCTracer|MemoryAllocator|PagedSpace|Evacuat|RememberedSet|SlotSet|heap::/.test(symbol)) return 'V8 GC';
  if (symbol.startsWith('JS:')) {
    if (symbol.includes('/src/dpop/')) return 'JS src/dpop';
    if (symbol.includes('lru-cache')) return 'JS lru-cache';
    if (symbol.includes('certbound-bench/src/')) return 'JS src (rest)';
    return 'JS node, undici, other packages';
  }
  if (symbol.startsWith('Builtins_') || symbol.startsWith('RegExp:')) return 'V8 builtins, regexps';
  if (/malloc|free|memmove|memcpy|memset|memcmp|strlen/.test(symbol)) return 'libc memory';
  return 'other native (V8 runtime, node, libc)';
}

interface Profile {
  readonly totalUs: number;
  readonly bySymbol: Map<string, { kind: string; us: number }>;
}

function load(file: string, requests: number): Profile {
  const r = spawnSync('perf', ['report', '-i', file, '--no-children', '-g', 'none', '--sort', 'sym', '--percent-limit', '0'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`perf report failed on ${file}: ${r.stderr}`);
  const events = Number(/Event count \(approx\.\): (\d+)/.exec(r.stdout)?.[1]);
  const bySymbol = new Map<string, { kind: string; us: number }>();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d.]+)%\s+\[(.)\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const symbol = (m[3] as string).trim().replace(/^JS:[*^~+]\s*/, 'JS:').replace(/tid \d+/, '');
    const us = ((Number(m[1]) / 100) * events) / requests / 1000;
    const entry = bySymbol.get(symbol) ?? { kind: kindOf(symbol, m[2] === 'k'), us: 0 };
    entry.us += us;
    bySymbol.set(symbol, entry);
  }
  return { totalUs: events / requests / 1000, bySymbol };
}

const profiles = inputs.map((i) => load(i.file, i.requests));
const f = (x: number) => x.toFixed(1).padStart(7);
const diffOf = (values: number[]) => (values.length > 1 ? f((values.at(-1) as number) - (values[0] as number)) : '');
console.log(`CPU µs per request (perf cpu-clock samples); columns: ${inputs.map((i) => i.file).join(' | ')}${inputs.length > 1 ? ' | last − first' : ''}`);
console.log(`${'total'.padEnd(40)} ${profiles.map((p) => f(p.totalUs)).join(' ')} ${diffOf(profiles.map((p) => p.totalUs))}`);
const kinds = new Set(profiles.flatMap((p) => [...p.bySymbol.values()].map((e) => e.kind)));
const kindRows = [...kinds].map((kind) => ({ kind, values: profiles.map((p) => [...p.bySymbol.values()].filter((e) => e.kind === kind).reduce((a, e) => a + e.us, 0)) }));
kindRows.sort((a, b) => ((b.values.at(-1) ?? 0) - (b.values[0] ?? 0)) - ((a.values.at(-1) ?? 0) - (a.values[0] ?? 0)));
console.log('-- by kind --');
for (const r of kindRows) console.log(`${r.kind.padEnd(40)} ${r.values.map(f).join(' ')} ${diffOf(r.values)}`);
const symbols = new Set(profiles.flatMap((p) => [...p.bySymbol.keys()]));
const symbolRows = [...symbols].map((symbol) => ({ symbol, values: profiles.map((p) => p.bySymbol.get(symbol)?.us ?? 0) }));
symbolRows.sort((a, b) => ((b.values.at(-1) ?? 0) - (b.values[0] ?? 0)) - ((a.values.at(-1) ?? 0) - (a.values[0] ?? 0)));
console.log(`-- by symbol, top ${top}${inputs.length > 1 ? ' by last − first' : ''} --`);
for (const r of symbolRows.slice(0, top)) console.log(`${r.values.map(f).join(' ')} ${diffOf(r.values)}  ${r.symbol.replace(/file:\/\/\/.*certbound-bench\//, '').replace(/\/work\/main\/node_modules\//, '~/').slice(0, 110)}`);
