// Small helpers the bench phases share: medians, the median run, rounding.

/** The number in environment variable `name`, or `fallback` when it is unset or empty. */
export const env = (name: string, fallback: number): number => (process.env[name] ? Number(process.env[name]) : fallback);

/** The middle value (for an even count, the upper of the two middle ones); NaN for none. */
export const medianOf = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** The median; for an even count, the mean of the two middle values (two rounds give their mean). */
export function midpointMedian(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The run of median throughput (for an even count, the upper of the two middle ones). */
export const byRps = <T extends { readonly r: { readonly rps: number } }>(runs: readonly T[]): T =>
  [...runs].sort((a, b) => a.r.rps - b.r.rps)[Math.floor(runs.length / 2)] as T;

/** Rounded to one decimal, and to three. */
export const r1 = (x: number): number => Math.round(x * 10) / 10;
export const r3 = (x: number): number => Math.round(x * 1000) / 1000;
