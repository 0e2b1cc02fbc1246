// Prometheus counters and histograms whose series are resolved once: an increment is an addition, with no label hashing per call.
import type { Metric, Registry } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

/**
 * One series of a {@link SeriesCounter}. prom-client hashes the label object on every `inc()` (a
 * string built per call); a request updates several series, so each is resolved once and kept.
 */
export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

/** One series of a {@link SeriesHistogram}: counts per bucket, sum and count. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const { bounds } = this;
    let bucket = 0;
    while (bucket < bounds.length && value > bounds[bucket]!) bucket++;
    this.counts[bucket]!++;
    this.sum += value;
    this.count++;
  }
}

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

interface MetricSnapshot {
  name: string;
  help: string;
  type: string;
  aggregator: 'sum';
  values: MetricValue[];
}

/** A metric as prom-client's Registry reads it when it renders (`get()`) or resets (`reset()`), with series resolved once. */
abstract class SeriesMetric<S extends { labels: Labels }> {
  protected readonly all = new Map<string, S>();
  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    // The Registry takes any object with this shape; its typings list only prom-client's own classes.
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series under `key`, made with `labels()` the first time: resolve it once per label set and keep it. */
  series(key: string, labels: () => Labels): S {
    let series = this.all.get(key);
    if (series === undefined) this.all.set(key, (series = this.create(labels())));
    return series;
  }

  /** For the Registry. */
  async get(): Promise<MetricSnapshot> {
    return { name: this.name, help: this.help, type: this.type, aggregator: 'sum', values: this.values() };
  }

  /** For the Registry (`resetMetrics()`): every series back to zero (callers keep their series). */
  reset(): void {
    for (const series of this.all.values()) this.zero(series);
  }

  protected abstract readonly type: string;
  protected abstract create(labels: Labels): S;
  protected abstract zero(series: S): void;
  protected abstract values(): MetricValue[];
}

/** A Prometheus counter registered in `registry`, updated through its series. */
export class SeriesCounter extends SeriesMetric<CounterSeries> {
  protected readonly type = 'counter';
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  protected zero(series: CounterSeries): void {
    series.value = 0;
  }
  protected values(): MetricValue[] {
    return [...this.all.values()].map((series) => ({ labels: series.labels, value: series.value }));
  }
}

/** A Prometheus histogram registered in `registry`, observed through its series. */
export class SeriesHistogram extends SeriesMetric<HistogramSeries> {
  protected readonly type = 'histogram';
  private readonly bounds: readonly number[];
  constructor(name: string, help: string, registry: Registry, buckets: readonly number[]) {
    super(name, help, registry);
    this.bounds = [...buckets].sort((a, b) => a - b);
  }
  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  protected zero(series: HistogramSeries): void {
    series.counts.fill(0);
    series.sum = 0;
    series.count = 0;
  }
  protected values(): MetricValue[] {
    const values: MetricValue[] = [];
    for (const series of this.all.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, bucket) => {
        cumulative += series.counts[bucket]!;
        values.push({
          labels: { le: String(bound), ...series.labels },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({ labels: { le: '+Inf', ...series.labels }, value: series.count, metricName: `${this.name}_bucket` });
      values.push({ labels: series.labels, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: series.labels, value: series.count, metricName: `${this.name}_count` });
    }
    return values;
  }
}
