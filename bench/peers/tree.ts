// Process trees read from /proc, so master/worker servers are measured and stopped whole.
import { readdirSync, readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat after `comm` (field 3, state, first); undefined once it exited. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** `pid` and its descendants, parents first. */
export function processTree(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry)); // undefined: gone meanwhile
    if (fields) {
      const parent = Number(fields[1]);
      byParent.set(parent, [...(byParent.get(parent) ?? []), Number(entry)]);
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of byParent.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** SIGKILL to the tree, children first. */
export function killTree(pid: number): void {
  for (const p of processTree(pid).reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** utime + stime (+ reaped children's) over the tree, in seconds. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    // An exited process's time went to its parent's reaped-children fields.
    const f = statFields(p);
    if (f) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / 100;
}

/** Sum of VmHWM over the tree (shared pages counted once per process). */
export function treePeakRss(pid: number): { mb: number; processes: number } {
  let kb = 0;
  let processes = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) {
        kb += Number(m[1]);
        processes++;
      }
    } catch {
      // exited
    }
  }
  return { mb: kb / 1024, processes };
}
