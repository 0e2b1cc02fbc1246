// Prometheus sink: request, token, cost and latency metrics by tenant, model and feature, with bounded label values.
import { assertKnownOptions, nanoToUsd, TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import type { NextFunction, Request, Response } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
import type { Metric } from 'prom-client';
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
}

const KNOWN = ['registry', 'prefix', 'maxLabelValues', 'latencyBuckets'] as const satisfies readonly (keyof PrometheusSinkOptions)[];

/** The label value of series that overflowed `maxLabelValues`. */
export const OVERFLOW_LABEL = '__other__';
/** The label value for a record without tenant, model or feature. */
export const NONE_LABEL = 'none';

type LabelName = 'tenant' | 'model' | 'feature';
const LABELS: LabelName[] = ['tenant', 'model', 'feature'];
type TokenClass = 'input' | 'cached_input' | 'cache_write' | 'output' | 'reasoning';
const TOKEN_CLASSES: TokenClass[] = ['input', 'cached_input', 'cache_write', 'output', 'reasoning'];

type SeriesLabels = Record<LabelName, string>;

/**
 * The label objects of one tenant/model/feature series, made on its first record and handed to
 * prom-client as they are on every later one: no label object is built per record.
 */
class Series {
  readonly labels: SeriesLabels;
  readonly byClass: Record<TokenClass, SeriesLabels & { class: TokenClass }>;
  /** Per `status usage_source`: a handful of values per series. */
  private readonly byOutcome = new Map<string, SeriesLabels & { status: string; usage_source: string }>();

  constructor(tenant: string, model: string, feature: string) {
    this.labels = { tenant, model, feature };
    this.byClass = Object.fromEntries(TOKEN_CLASSES.map((tokenClass) => [tokenClass, { tenant, model, feature, class: tokenClass }])) as Series['byClass'];
  }

  outcome(status: number, usageSource: string): SeriesLabels & { status: string; usage_source: string } {
    const key = `${status} ${usageSource}`;
    let labels = this.byOutcome.get(key);
    if (labels === undefined) {
      labels = { ...this.labels, status: String(status), usage_source: usageSource };
      this.byOutcome.set(key, labels);
    }
    return labels;
  }
}

/** Series by tenant, then model, then feature (each level holds the bounded values: at most maxLabelValues + 1). */
class SeriesIndex {
  private readonly tenants = new Map<string, Map<string, Map<string, Series>>>();

  get(tenant: string, model: string, feature: string): Series {
    let models = this.tenants.get(tenant);
    if (models === undefined) this.tenants.set(tenant, (models = new Map()));
    let features = models.get(model);
    if (features === undefined) models.set(model, (features = new Map()));
    let series = features.get(feature);
    if (series === undefined) features.set(feature, (series = new Series(tenant, model, feature)));
    return series;
  }
}

/** Keeps the first `max` values of a label and maps any later one to `__other__`. */
class BoundedLabel {
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

function reuse<T extends Metric<string>>(registry: Registry, name: string, create: () => T): T {
  // Two meters (or a hot reload) may share a registry: register each metric once.
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
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
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'tollgate_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', `prometheusSink() prefix must be a valid metric name prefix; got ${JSON.stringify(prefix)}`);
  const maxLabelValues = options.maxLabelValues ?? 100;
  if (!Number.isSafeInteger(maxLabelValues) || maxLabelValues < 1) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'prometheusSink() maxLabelValues must be a positive integer');
  const bounded = Object.fromEntries(LABELS.map((label) => [label, new BoundedLabel(maxLabelValues)])) as Record<LabelName, BoundedLabel>;
  const index = new SeriesIndex();

  const requests = reuse(registry, `${prefix}requests_total`, () => new Counter({ name: `${prefix}requests_total`, help: 'Metered provider requests.', labelNames: [...LABELS, 'status', 'usage_source'], registers: [registry] }));
  const tokens = reuse(registry, `${prefix}tokens_total`, () => new Counter({ name: `${prefix}tokens_total`, help: 'Tokens by class: input (uncached), cached_input, cache_write, output (reasoning included), reasoning.', labelNames: [...LABELS, 'class'], registers: [registry] }));
  const cost = reuse(registry, `${prefix}cost_usd_total`, () => new Counter({ name: `${prefix}cost_usd_total`, help: 'Cost of metered requests in USD (from nano-USD).', labelNames: LABELS, registers: [registry] }));
  const latency = reuse(registry, `${prefix}request_duration_seconds`, () => new Histogram({ name: `${prefix}request_duration_seconds`, help: 'Time from request to the end of the response (or client abort).', labelNames: LABELS, buckets: options.latencyBuckets ?? [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry] }));

  return {
    registry,
    handler: metricsHandler(registry),
    write(record: UsageRecord) {
      try {
        const series = index.get(bounded.tenant.value(record.tenantId), bounded.model.value(record.model), bounded.feature.value(record.feature));
        requests.inc(series.outcome(record.status, record.usageSource));
        const uncached = Math.max(0, record.inputTokens - record.cachedInputTokens - record.cacheWriteTokens);
        if (uncached > 0) tokens.inc(series.byClass.input, uncached);
        if (record.cachedInputTokens > 0) tokens.inc(series.byClass.cached_input, record.cachedInputTokens);
        if (record.cacheWriteTokens > 0) tokens.inc(series.byClass.cache_write, record.cacheWriteTokens);
        if (record.outputTokens > 0) tokens.inc(series.byClass.output, record.outputTokens);
        if (record.reasoningTokens > 0) tokens.inc(series.byClass.reasoning, record.reasoningTokens);
        if (record.costNanoUsd > 0) cost.inc(series.labels, nanoToUsd(record.costNanoUsd));
        latency.observe(series.labels, record.latencyMs / 1000);
      } catch (error) {
        process.emitWarning(`tollgate: prometheus sink failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    },
    flush: async () => undefined,
    close: async () => undefined,
  };
}
