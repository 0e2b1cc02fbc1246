// Prometheus sink: request, token, cost and latency metrics by tenant, model and feature, with bounded label values.
import { nanoToUsd, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { UsageRecord } from '@tollgate/core';
import type { NextFunction, Request, Response } from 'express';
import type { Registry } from 'prom-client';
import { loadOptionalPeer } from './optional-peer.js';
import { SeriesCounter, SeriesHistogram } from './prometheus-series.js';
import type { CounterSeries, HistogramSeries } from './prometheus-series.js';
import type { UsageSink } from './sink.js';

export interface PrometheusSinkOptions {
  /** Registry to register the metrics in (e.g. prom-client's global `register`). @default a new Registry */
  registry?: Registry;
  /** Prefix of every metric name. @default 'tollgate_' */
  prefix?: string;
  /**
   * Distinct values kept per label (tenant, model, feature); later ones are counted under
   * `__other__`, so a flood of tenants or model names cannot blow up the series count.
   * @default 100
   */
  maxLabelValues?: number;
  /** Latency histogram buckets, in seconds. @default [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] */
  latencyBuckets?: number[];
  /**
   * The tenants the `tenant` label names (the first `maxLabelValues` of them); any other tenant counts as `__other__`,
   * so tenants that no config lists (a JWT's claim) make no series. @default every tenant, the first maxLabelValues
   */
  tenants?: readonly string[];
}

const KNOWN = [
  'registry',
  'prefix',
  'maxLabelValues',
  'latencyBuckets',
  'tenants',
] as const satisfies readonly (keyof PrometheusSinkOptions)[];

/** The label value of series that overflowed `maxLabelValues`. */
export const OVERFLOW_LABEL = '__other__';
/** The label value for a record without tenant, model or feature. */
const NONE_LABEL = 'none';

type LabelName = 'tenant' | 'model' | 'feature';
const LABELS: Exclude<LabelName, 'tenant'>[] = ['model', 'feature'];
type TokenClass = 'input' | 'cached_input' | 'cache_write' | 'output' | 'reasoning';
const TOKEN_CLASSES: TokenClass[] = ['input', 'cached_input', 'cache_write', 'output', 'reasoning'];

/** The sink's four metrics, as their series are resolved. */
interface SinkMetrics {
  requests: SeriesCounter;
  tokens: SeriesCounter;
  cost: SeriesCounter;
  latency: SeriesHistogram;
  saved: SeriesCounter;
}

/**
 * The series of one tenant/model/feature, resolved on its first record and updated directly on
 * every later one: nothing is built or hashed per record.
 */
class Series {
  readonly tokens: Record<TokenClass, CounterSeries>;
  readonly cost: CounterSeries;
  readonly latency: HistogramSeries;
  /** What caching saved, made on the first saving: a response-cache hit's answer, or a provider call's cached input discount. */
  private readonly savedBySource = new Map<string, CounterSeries>();
  /** By status, then usage source: a handful of values each, found without building a key per record. */
  private readonly byOutcome = new Map<number, Map<string, CounterSeries>>();
  private readonly key: string;

  constructor(
    private readonly metrics: SinkMetrics,
    private readonly tenant: string,
    private readonly model: string,
    private readonly feature: string,
  ) {
    // The label values may hold any character but NUL, which no bounded label keeps: a safe separator.
    this.key = `${tenant}\u0000${model}\u0000${feature}`;
    this.tokens = Object.fromEntries(
      TOKEN_CLASSES.map((tokenClass) => [
        tokenClass,
        metrics.tokens.series(`${this.key}\u0000${tokenClass}`, () => ({ tenant, model, feature, class: tokenClass })),
      ]),
    ) as Series['tokens'];
    this.cost = metrics.cost.series(this.key, () => ({ tenant, model, feature }));
    this.latency = metrics.latency.series(this.key, () => ({ tenant, model, feature }));
  }

  saved(source: 'response_cache' | 'prompt_cache'): CounterSeries {
    let series = this.savedBySource.get(source);
    if (series === undefined) {
      const { tenant, model, feature } = this;
      series = this.metrics.saved.series(`${this.key}\u0000${source}`, () => ({ tenant, model, feature, source }));
      this.savedBySource.set(source, series);
    }
    return series;
  }

  outcome(status: number, usageSource: string): CounterSeries {
    let bySource = this.byOutcome.get(status);
    if (bySource === undefined) this.byOutcome.set(status, (bySource = new Map()));
    let series = bySource.get(usageSource);
    if (series === undefined) {
      const { tenant, model, feature } = this;
      series = this.metrics.requests.series(`${this.key}\u0000${status} ${usageSource}`, () => ({
        tenant,
        model,
        feature,
        status: String(status),
        usage_source: usageSource,
      }));
      bySource.set(usageSource, series);
    }
    return series;
  }

  /** Counts one record of this tenant, model and feature. */
  count(record: UsageRecord): void {
    this.outcome(record.status, record.usageSource).inc();
    if (record.savedNanoUsd)
      this.saved(record.usageSource === 'cache' ? 'response_cache' : 'prompt_cache').inc(
        nanoToUsd(record.savedNanoUsd),
      );
    // A cache hit reached no provider: its tokens were not spent again.
    if (record.usageSource === 'cache') {
      this.latency.observe(record.latencyMs / 1000);
      return;
    }
    const tokens = this.tokens;
    const uncached = Math.max(0, record.inputTokens - record.cachedInputTokens - record.cacheWriteTokens);
    if (uncached > 0) tokens.input.inc(uncached);
    if (record.cachedInputTokens > 0) tokens.cached_input.inc(record.cachedInputTokens);
    if (record.cacheWriteTokens > 0) tokens.cache_write.inc(record.cacheWriteTokens);
    if (record.outputTokens > 0) tokens.output.inc(record.outputTokens);
    if (record.reasoningTokens > 0) tokens.reasoning.inc(record.reasoningTokens);
    if (record.costNanoUsd > 0) this.cost.inc(nanoToUsd(record.costNanoUsd));
    this.latency.observe(record.latencyMs / 1000);
  }
}

/** Series by tenant, then model, then feature (each level holds the bounded values: at most maxLabelValues + 1). */
class SeriesIndex {
  private readonly tenants = new Map<string, Map<string, Map<string, Series>>>();
  constructor(private readonly metrics: SinkMetrics) {}

  get(tenant: string, model: string, feature: string): Series {
    let models = this.tenants.get(tenant);
    if (models === undefined) this.tenants.set(tenant, (models = new Map()));
    let features = models.get(model);
    if (features === undefined) models.set(model, (features = new Map()));
    let series = features.get(feature);
    if (series === undefined) features.set(feature, (series = new Series(this.metrics, tenant, model, feature)));
    return series;
  }
}

/** Keeps the first `max` values of a label and maps any later one to `__other__` (and null or '' to `none`). */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  value(raw: string | null): string {
    const value = raw === null || raw === '' ? NONE_LABEL : raw;
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max) return OVERFLOW_LABEL;
    this.seen.add(value);
    return value;
  }
}

/**
 * The `tenant` label of the gateway's metrics: with `tenants` (the config's), a listed tenant by its id (the first
 * `max` of them), `__other__` for any other; without, the first `max` tenants seen. `none` when there is no tenant (a
 * caller not identified, a key without one). Callers cannot make new series.
 */
export function tenantLabeller(
  tenants: readonly string[] | undefined,
  max: number,
): (tenant: string | null | undefined) => string {
  const listed = tenants && new Set(tenants);
  const bounded = new BoundedLabel(max);
  return function tenantLabel(tenant) {
    if (tenant === undefined || tenant === null || tenant === '') return NONE_LABEL;
    return listed === undefined || listed.has(tenant) ? bounded.value(tenant) : OVERFLOW_LABEL;
  };
}

function reuse<T extends SeriesCounter | SeriesHistogram>(
  registry: Registry,
  name: string,
  kind: new (...args: never[]) => T,
  create: () => T,
): T {
  // Two meters (or a hot reload) may share a registry: register each metric once.
  const existing: unknown = registry.getSingleMetric(name);
  if (existing === undefined) return create();
  if (existing instanceof kind) return existing;
  throw new TollgateError(
    'ERR_TG_METERING_INVALID_OPTION',
    `prometheusSink() registry already has a metric ${name} of its own: give the sink another prefix`,
  );
}

export interface PrometheusSink extends UsageSink {
  readonly registry: Registry;
  /** Express handler serving the registry in the Prometheus text format, for `app.get('/metrics', ...)`. */
  readonly handler: (req: Request, res: Response, next: NextFunction) => void;
}

/** Serves a prom-client registry (errors reach `next`). */
export function metricsHandler(registry: Registry) {
  return function serveMetrics(_req: Request, res: Response, next: NextFunction): void {
    registry.metrics().then((text) => {
      res.setHeader('content-type', registry.contentType);
      res.end(text);
    }, next);
  };
}

/** Counts each settled request into Prometheus metrics. */
export function prometheusSink(options: PrometheusSinkOptions = {}): PrometheusSink {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'prometheusSink');
  const registry =
    options.registry ??
    new (loadOptionalPeer<typeof import('prom-client')>('prom-client', 'prometheusSink()').Registry)();
  const prefix = options.prefix ?? 'tollgate_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix))
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `prometheusSink() prefix must be a valid metric name prefix; got ${JSON.stringify(prefix)}`,
    );
  const maxLabelValues = options.maxLabelValues ?? 100;
  if (!Number.isSafeInteger(maxLabelValues) || maxLabelValues < 1)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'prometheusSink() maxLabelValues must be a positive integer',
    );
  const bounded = Object.fromEntries(LABELS.map((label) => [label, new BoundedLabel(maxLabelValues)])) as Record<
    Exclude<LabelName, 'tenant'>,
    BoundedLabel
  >;
  const tenantLabel = tenantLabeller(options.tenants, maxLabelValues);
  const index = new SeriesIndex(
    sinkMetrics(registry, prefix, options.latencyBuckets ?? [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]),
  );

  return {
    registry,
    handler: metricsHandler(registry),
    write(record: UsageRecord) {
      try {
        index
          .get(
            tenantLabel(record.tenantId),
            // A tool call has no model: its series are the tool's (`search/web_search`).
            bounded.model.value(record.model ?? record.tool ?? null),
            bounded.feature.value(record.feature),
          )
          .count(record);
      } catch (error) {
        process.emitWarning(
          `tollgate: prometheus sink failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    },
    flush: async () => undefined,
    close: async () => undefined,
  };
}

/** The sink's metrics, named under `prefix`, each registered once in `registry` (or the one it holds already). */
function sinkMetrics(registry: Registry, prefix: string, latencyBuckets: number[]): SinkMetrics {
  const counter = (suffix: string, help: string): SeriesCounter => {
    const name = `${prefix}${suffix}`;
    return reuse(registry, name, SeriesCounter, () => new SeriesCounter(name, help, registry));
  };
  const latency = `${prefix}request_duration_seconds`;
  // In this order: the registry lists its metrics in the order they were registered.
  return {
    requests: counter('requests_total', 'Metered provider requests.'),
    tokens: counter(
      'tokens_total',
      'Tokens by class: input (uncached), cached_input, cache_write, output (reasoning included), reasoning.',
    ),
    cost: counter('cost_usd_total', 'Cost of metered requests in USD (from nano-USD).'),
    latency: reuse(
      registry,
      latency,
      SeriesHistogram,
      () =>
        new SeriesHistogram(
          latency,
          'Time from request to the end of the response (or client abort).',
          registry,
          latencyBuckets,
        ),
    ),
    saved: counter(
      'saved_usd_total',
      "USD saved by caching: response-cache hits (source response_cache) and providers' cached input (source prompt_cache).",
    ),
  };
}
