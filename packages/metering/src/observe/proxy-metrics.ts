// The proxy's own Prometheus metrics beside the usage sink's: responses and refusals, upstream calls, store calls, budgets; every label bounded.
import type { Request, Response } from 'express';
import type { Registry } from 'prom-client';
import { MITIGATION_KINDS, promClient, registerGauges } from './proxy-gauges.js';
import type { AbuseAction, BudgetReader, DriftFigures, PriceReading } from './proxy-gauges.js';
import type { TollgateStores } from '@tollgate/core';
import type { UpstreamOutcome } from '@tollgate/core/provider-call';
import { timedStores } from './timed-stores.js';
import type { StoreTimer } from './timed-stores.js';
import { BoundedLabel, tenantLabeller } from '../prometheus-sink.js';
import { SeriesCounter, SeriesHistogram } from '../prometheus-series.js';
import type { CounterSeries, HistogramSeries } from '../prometheus-series.js';

/** Distinct values kept per label (routes, models, tenants, budget ids); later ones are counted under `__other__`. */
const MAX_LABEL_VALUES = 100;
/** Every metric name of the gateway starts so (the usage sink's default prefix): prom-client's process metrics too. */
const PREFIX = 'tollgate_';
const UPSTREAM_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface GatewayMetrics {
  /**
   * Counts a response that ended (call it on 'close'), by route and status, its refusal by layer and reason, and the
   * refusal a shadow let through by reason.
   */
  countResponse(req: Request, res: Response): void;
  /** One finished upstream call of `provider` (the upstream's name) for `model` (the model it ran with). */
  upstreamCall(provider: string, model: string, outcome: UpstreamOutcome): void;
  /** What times the calls of one store operation (`ledger.reserve`, `counter.consume`, ...): asked once per operation. */
  storeTimer(operation: string): StoreTimer;
  /** The same stores, each call of `counter`, `fixedWindow`, `ledger` and `keys` timed by its operation's `storeTimer`. */
  timeStores<S extends TollgateStores>(stores: S): S;
  /** A store failure a middleware met (timeouts at its deadline included), by the layer it failed for. */
  storeFailure(layer: string): void;
  /** Gauges of every budget `budget` guards (spent, limit, reserved, remaining), read at each scrape: no cost per request. */
  watchBudgets(budget: BudgetReader): void;
  /** The gauge of the guard's mitigations in force (suspended keys and tenants, throttles, blocks), read at each scrape. */
  watchMitigations(list: () => readonly { kind: (typeof MITIGATION_KINDS)[number]; anomalyId?: string }[]): void;
  /** The gauge of the abuse model's actions (shadow mode's included), from its latest scoring, read at each scrape. */
  watchAbuseActions(list: () => readonly AbuseAction[]): void;
  /** The gauge of the files the gateway re-reads: 1 when a file's last change was taken whole, read at each scrape. */
  watchConfigFiles(list: () => readonly { path: string; status: string }[]): void;
  /** The price gauges: the version in use, when it loaded, the source's refused reads; read at each scrape. */
  watchPrices(read: () => PriceReading): void;
  /** The gauge of a store outage served through (leases or failOpen): `read` says whether the store is out now. */
  watchStoreOutage(read: () => boolean): void;
  /** The gauge of each budget's drift from the usage ledger (its scopes' last readings), read at each scrape. */
  watchDrift(read: () => readonly DriftFigures[]): void;
  /** `count` pieces of personal data of one kind masked in a prompt (the guardrails). */
  guardrailMasked(kind: string, count: number): void;
  /** A prompt or an answer refused by a guardrail, by its rule (a bounded set: see promptGuardrails' `onRefused`). */
  guardrailRefused(rule: string): void;
}

interface GatewayMetricsOptions {
  /** Hears a budget read that failed at a scrape. */
  report: (error: unknown) => void;
  /** The config's tenants: refusals name these; any other tenant counts as `__other__` (see `tenantLabeller`). */
  tenants: readonly string[];
}

/** A label set made once per value, handed to prom-client as it is on every later call (the rare paths: refusals, errors). */
class LabelCache<L extends Record<string, string>> {
  readonly #sets = new Map<string, L>();
  get(key: string, make: () => L): L {
    let labels = this.#sets.get(key);
    if (labels === undefined) this.#sets.set(key, (labels = make()));
    return labels;
  }
}

/** The series of one upstream and model: resolved on its first call, updated directly on the next ones. */
interface UpstreamSeries {
  /** `upstream model`: the prefix of the rarer series' keys. */
  key: string;
  seconds: HistogramSeries;
  /** Made at the first stream. */
  firstToken: HistogramSeries | undefined;
  byStatus: Map<number, CounterSeries>;
}

/** The route a response answered, as a label: the app's own route paths, a mounted router's prefix, else `unmatched`. */
function routeLabel(req: Request): string {
  if (req.baseUrl) return req.baseUrl;
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === 'string' ? path : 'unmatched';
}

/**
 * prom-client's process and Node.js metrics (CPU, memory, heap, event loop lag, GC, handles), `tollgate_`-prefixed,
 * made once per process: each set keeps an event-loop monitor and a GC observer running, so every gateway of the
 * process shares the one set, registered in its own registry too. Its gauges named `_total`
 * (`nodejs_active_handles_total`, ...) are left out: `_total` names a counter, and each is the sum of the gauge by
 * type beside it (`sum(tollgate_nodejs_active_handles)`).
 */
let processMetrics: Registry | undefined;
function registerProcessMetrics(registry: Registry): void {
  const { collectDefaultMetrics, Gauge, Registry } = promClient();
  if (processMetrics === undefined) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: PREFIX });
  }
  for (const { name } of processMetrics.getMetricsAsArray()) {
    const metric = processMetrics.getSingleMetric(name)!;
    if (metric instanceof Gauge && name.endsWith('_total')) continue;
    if (registry.getSingleMetric(name) === undefined) registry.registerMetric(metric);
  }
}

/** Upstream calls by upstream, model and status, their durations, time to first token, and failures by reason. */
function upstreamCallCounter(registry: Registry, models: BoundedLabel): GatewayMetrics['upstreamCall'] {
  const { Counter } = promClient();
  const registers = [registry];
  const upstreamRequests = new SeriesCounter(
    'tollgate_upstream_requests_total',
    'Calls to upstream providers, by upstream, model and the HTTP status it answered (0: none).',
    registry,
  );
  const upstreamErrors = new Counter({
    name: 'tollgate_upstream_errors_total',
    help: 'Failed upstream calls, by upstream, model and reason: status (5xx or 3xx), credentials (the gateway key refused), timeout, unreachable, cut (mid-answer).',
    labelNames: ['provider', 'model', 'reason'],
    registers,
  });
  const upstreamSeconds = new SeriesHistogram(
    'tollgate_upstream_duration_seconds',
    'From sending an upstream call to the end of its answer (or its failure).',
    registry,
    UPSTREAM_BUCKETS,
  );
  const firstTokenSeconds = new SeriesHistogram(
    'tollgate_time_to_first_token_seconds',
    "Streamed answers: from sending an upstream call to the answer's first bytes written to the client.",
    registry,
    UPSTREAM_BUCKETS,
  );
  const upstreamErrorLabels = new LabelCache<{ provider: string; model: string; reason: string }>();
  const upstreams = new Map<string, Map<string, UpstreamSeries>>();
  return function upstreamCall(upstream: string, rawModel: string, outcome: UpstreamOutcome): void {
    const model = models.value(rawModel);
    let byModel = upstreams.get(upstream);
    if (byModel === undefined) upstreams.set(upstream, (byModel = new Map()));
    let series = byModel.get(model);
    if (series === undefined) {
      const key = `${upstream} ${model}`;
      series = {
        key,
        seconds: upstreamSeconds.series(key, () => ({ provider: upstream, model })),
        firstToken: undefined,
        byStatus: new Map(),
      };
      byModel.set(model, series);
    }
    const { key } = series;
    series.seconds.observe(outcome.seconds);
    if (outcome.firstTokenSeconds !== undefined)
      (series.firstToken ??= firstTokenSeconds.series(key, () => ({ provider: upstream, model }))).observe(
        outcome.firstTokenSeconds,
      );
    let byStatus = series.byStatus.get(outcome.status);
    if (byStatus === undefined) {
      byStatus = upstreamRequests.series(`${key} ${outcome.status}`, () => ({
        provider: upstream,
        model,
        status: String(outcome.status),
      }));
      series.byStatus.set(outcome.status, byStatus);
    }
    byStatus.inc();
    const reason = outcome.error;
    if (reason)
      upstreamErrors.inc(upstreamErrorLabels.get(`${key} ${reason}`, () => ({ provider: upstream, model, reason })));
  };
}

/** Personal data masked and prompts refused by the guardrails. */
function guardrailCounters(registers: Registry[]): Pick<GatewayMetrics, 'guardrailMasked' | 'guardrailRefused'> {
  const { Counter } = promClient();
  const guardrailMasks = new Counter({
    name: 'tollgate_guardrail_masked_total',
    help: 'Personal data masked in prompts by the guardrails before the upstream saw them, by kind (email, phone, card).',
    labelNames: ['kind'],
    registers,
  });
  const guardrailRefusals = new Counter({
    name: 'tollgate_guardrail_refusals_total',
    help: 'Prompts (and answers) refused by the guardrails, by rule: maxPromptChars, deny[<i>], pii:<kind>, check, check:failed, answer, unsupported.',
    labelNames: ['rule'],
    registers,
  });
  return {
    guardrailMasked: (kind, count) => guardrailMasks.inc({ kind }, count),
    guardrailRefused: (rule) => guardrailRefusals.inc({ rule }),
  };
}

/** Registers the proxy's metrics in `registry` (the usage sink's, so one `/metrics` serves both), and the process's. */
export function createGatewayMetrics(registry: Registry, options: GatewayMetricsOptions): GatewayMetrics {
  const { Counter } = promClient();
  const { report } = options;
  const registers = [registry];
  registerProcessMetrics(registry);
  // Counted on every request: series resolved once (prometheus-series in @tollgate/metering); the rare ones are prom-client's own.
  const responses = new SeriesCounter('tollgate_http_responses_total', 'Responses by route and HTTP status.', registry);
  const refusals = new Counter({
    name: 'tollgate_refusals_total',
    help: 'Requests refused or failed by tollgate, by the layer that refused (auth, scope, model, request, requests, tokens, concurrency, budget, upstream, route, store), the error code and the tenant (a configured tenant, __other__ for any other, none before identification).',
    labelNames: ['layer', 'reason', 'tenant'],
    registers,
  });
  const shadowRefusals = new Counter({
    name: 'tollgate_shadow_refusals_total',
    help: 'Requests served in shadow mode that a limit, a budget or the guard would have refused, by the error code they would have been sent and the tenant (as tollgate_refusals_total labels it).',
    labelNames: ['reason', 'tenant'],
    registers,
  });
  const storeSeconds = new SeriesHistogram(
    'tollgate_store_call_duration_seconds',
    'Store calls by operation and outcome (Redis stores; memory stores are not timed).',
    registry,
    STORE_BUCKETS,
  );
  const storeFailures = new Counter({
    name: 'tollgate_store_failures_total',
    help: "Store failures and timeouts the middlewares met, by layer (auth, requests, tokens, concurrency); the budget's are its 503 refusals.",
    labelNames: ['layer'],
    registers,
  });

  const guardrails = guardrailCounters(registers);

  const models = new BoundedLabel(MAX_LABEL_VALUES);
  const gauges = registerGauges(registers, report);
  const upstreamCall = upstreamCallCounter(registry, models);

  const routes = new BoundedLabel(MAX_LABEL_VALUES);
  const layers = new BoundedLabel(MAX_LABEL_VALUES);
  const tenantLabel = tenantLabeller(options.tenants, MAX_LABEL_VALUES);
  const refusalLabels = new LabelCache<{ layer: string; reason: string; tenant: string }>();
  const shadowLabels = new LabelCache<{ reason: string; tenant: string }>();
  const failureLabels = new LabelCache<{ layer: string }>();
  // Series found by nested maps on the values themselves: no key string is built per request.
  const responsesByRoute = new Map<string, Map<number, CounterSeries>>();

  return {
    countResponse(req, res) {
      const route = routes.value(routeLabel(req));
      const status = res.statusCode;
      let byStatus = responsesByRoute.get(route);
      if (byStatus === undefined) responsesByRoute.set(route, (byStatus = new Map()));
      let series = byStatus.get(status);
      if (series === undefined) {
        series = responses.series(`${route} ${status}`, () => ({ route, status: String(status) }));
        byStatus.set(status, series);
      }
      series.inc();
      const refusal = req.tollgate?.refusal;
      if (refusal) {
        const layer = layers.value(refusal.layer);
        const tenant = tenantLabel(req.tollgate.identity?.tenantId);
        refusals.inc(
          refusalLabels.get(`${layer} ${refusal.code} ${tenant}`, () => ({ layer, reason: refusal.code, tenant })),
        );
      }
      const shadowed = req.tollgate?.shadowRefusal;
      if (shadowed) {
        const tenant = tenantLabel(req.tollgate.identity?.tenantId);
        shadowRefusals.inc(shadowLabels.get(`${shadowed} ${tenant}`, () => ({ reason: shadowed, tenant })));
      }
    },
    storeTimer(operation) {
      let ok: HistogramSeries | undefined;
      let error: HistogramSeries | undefined;
      return function timeStoreCall(outcome, seconds) {
        if (outcome === 'ok')
          (ok ??= storeSeconds.series(`${operation} ok`, () => ({ operation, outcome: 'ok' }))).observe(seconds);
        else
          (error ??= storeSeconds.series(`${operation} error`, () => ({ operation, outcome: 'error' }))).observe(
            seconds,
          );
      };
    },
    timeStores(stores) {
      return timedStores(stores, (operation) => this.storeTimer(operation));
    },
    storeFailure(rawLayer) {
      const layer = layers.value(rawLayer);
      storeFailures.inc(failureLabels.get(layer, () => ({ layer })));
    },
    ...guardrails,
    ...gauges,
    upstreamCall,
  };
}
