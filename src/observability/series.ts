import type { Metric, Registry } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

/** One labelled series of a HotCounter. */
export interface CounterSeries {
  inc(): void;
}
/** One labelled series of a HotHistogram. */
export interface HistogramSeries {
  observe(value: number): void;
}

interface MetricValue {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}

/**
 * The per-request metrics. A labelled series is resolved once (`labels(...)`, kept by the
 * caller) and updated with plain arithmetic; prom-client's registry reads it at scrape time, as it
 * does any object with name, help, type and get(). prom-client's own labelled inc/observe hash a
 * label object on every call (~0.2 µs and a few hundred bytes of garbage each): on a path that
 * costs microseconds in all, that is worth avoiding. Exposition is prom-client's.
 */
abstract class HotMetric<S> {
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, { readonly labels: Labels; readonly state: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly labelNames: readonly string[],
    registers: readonly Registry[],
  ) {
    // The registry only reads name, help, type, get() and reset(): the shape checked by tests/promtool.
    for (const registry of registers) registry.registerMetric(this as unknown as Metric);
  }

  protected stateOf(values: readonly string[], fresh: () => S): S {
    const key = values.join('\u0000');
    let entry = this.series.get(key);
    if (entry === undefined) {
      const labels = Object.fromEntries(this.labelNames.map((name, i) => [name, values[i] ?? '']));
      entry = { labels, state: fresh() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  /** Zeroes one series' state in place: handles callers kept keep counting into it. */
  protected abstract zero(state: S): void;

  /**
   * `registry.resetMetrics()`: every series back to zero, still exported. Clearing the map, as
   * prom-client does, would cut off the series callers resolved once and kept (route series
   * live as long as their gateway), so they would count on, unseen, until the process restarts.
   */
  reset(): void {
    for (const { state } of this.series.values()) this.zero(state);
  }
}

export class HotCounter extends HotMetric<{ value: number }> {
  readonly type = 'counter';

  protected zero(state: { value: number }): void {
    state.value = 0;
  }

  labels(...values: string[]): CounterSeries {
    const state = this.stateOf(values, () => ({ value: 0 }));
    return { inc: () => void state.value++ };
  }

  get() {
    const values: MetricValue[] = [];
    for (const { labels, state } of this.series.values()) values.push({ labels, value: state.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative); above the last bound only in `count`. */
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

export class HotHistogram extends HotMetric<HistogramState> {
  readonly type = 'histogram';

  constructor(name: string, help: string, labelNames: readonly string[], private readonly upperBounds: readonly number[], registers: readonly Registry[]) {
    super(name, help, labelNames, registers);
  }

  protected zero(state: HistogramState): void {
    state.buckets.fill(0);
    state.sum = 0;
    state.count = 0;
  }

  labels(...values: string[]): HistogramSeries {
    const bounds = this.upperBounds;
    const state = this.stateOf(values, () => ({ buckets: new Float64Array(bounds.length), sum: 0, count: 0 }));
    return {
      observe: (value) => {
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i++;
        if (i < bounds.length) state.buckets[i] = (state.buckets[i] as number) + 1;
        state.sum += value;
        state.count++;
      },
    };
  }

  get() {
    const values: MetricValue[] = [];
    for (const { labels, state } of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += state.buckets[i] as number;
        values.push({ labels: { le: String(le), ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...labels }, value: state.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: state.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: state.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
