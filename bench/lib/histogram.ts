/**
 * A log-bucketed latency histogram (HDR-ish): values in microseconds, ~1 % precision, fixed memory
 * whatever the sample count. Percentiles are the upper edge of the bucket that holds them.
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
// 1 µs … ~60 s
const BUCKETS = Math.ceil(Math.log(60e6) / LOG_GROWTH) + 1;

export interface Summary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;
  private sum = 0;
  private max = 0;

  record(micros: number): void {
    const v = micros < 1 ? 1 : micros;
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log(v) / LOG_GROWTH));
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.total++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil((p / 100) * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.max, GROWTH ** (i + 1));
    }
    return this.max;
  }

  summary(): Summary {
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      count: this.total,
      meanMs: this.total === 0 ? 0 : ms(this.sum / this.total),
      p50Ms: ms(this.percentile(50)),
      p90Ms: ms(this.percentile(90)),
      p99Ms: ms(this.percentile(99)),
      p999Ms: ms(this.percentile(99.9)),
      maxMs: ms(this.max),
    };
  }
}
