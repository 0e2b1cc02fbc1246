// tieredRateLimit: requests per window per tier, in layers (global, tenant, key), each counted in its fixed-window store (the stores' own, rate-limit-redis's or process memory).
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { IncrementResponse, Options as RateLimitOptions } from 'express-rate-limit';
import type { LimitLayer, LimitLayerOptions } from './limit-layers.js';
import { resolveLimiterOptions, type ResolvedLimiterOptions } from './limiter-options.js';
import {
  isMoreRestrictive,
  mostRestrictive,
  refuseOverLimit,
  reportLimit,
  type LimitReport,
} from './rate-limit-headers.js';
import { createRequestStore, type RequestStore } from './request-store.js';
import { StoreFailure, type StoreFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, StoresWithCommands, WaitOptions } from './types.js';
import { asPromise, registerLimitCheck, runLimitCheck, type LimitCheck, type Verdict } from './limit-check.js';
import type { LimitReading } from './limit-check.js';
import { readable } from './limit-readings.js';

export interface TieredRateLimitOptions extends CommonLimitOptions, LimitLayerOptions {
  /**
   * Shared stores. Stores from `@tollgate/redis` count fixed windows (express-rate-limit's model,
   * in rate-limit-redis's keys) with their own script, so every process shares the limits and,
   * inside `combineLimits`, the whole check is one Redis call; other stores with `sendCommand`
   * count through rate-limit-redis; otherwise each process counts in its own memory (fixed
   * windows, as express-rate-limit's MemoryStore keeps them).
   * @default process memory
   */
  stores?: StoresWithCommands;
  /**
   * Several limits checked together, e.g. `[{ by: 'global', limit: 10000 }, { by: 'tenant' }, { by: 'key' }]`:
   * all must allow the request, the most restrictive is reported. A layer without its own
   * `limit`/`tiers`, `by` or `window` takes the limiter's.
   */
  layers?: LimitLayerOptions[];
  /**
   * Prefix of the Redis keys (the layer name follows it). Stores from `@tollgate/redis` put their
   * own `prefix` in front of it, so deployments with different store prefixes never share a counter.
   * @default 'rl:' after the stores' prefix (e.g. 'tollgate:rl:'); 'tg:rl:' for stores without one
   */
  prefix?: string;
  /** Wait (FIFO per caller, at most `maxMs`) for the window to reset instead of answering 429. */
  wait?: WaitOptions;
}

const FACTORY = 'tieredRateLimit';
interface RequestLayer extends LimitLayer {
  /** The counter id in the store: the layer's id, behind its slot's hash tag on Redis Cluster. */
  readonly storeKeyOf: (req: Request) => string;
  readonly store: RequestStore;
}

/** Where a layer stands after counting this request. */
interface LayerCount {
  /** The key the hit was counted under, to give it back. */
  key: string;
  limit: number;
  remaining: number;
  /** Epoch ms; undefined from a store that does not say. */
  resetAt: number | undefined;
}

type RequestVerdict = Verdict<LayerOutcome[], LimitReport[]>;

type LayerOutcome =
  | { layer: RequestLayer; state: 'allowed' | 'denied'; count: LayerCount }
  /** The store failed and failOpen let the layer pass uncounted. */
  | { layer: RequestLayer; state: 'skipped' }
  | { layer: RequestLayer; state: 'error'; error: unknown };

function toReport(layer: RequestLayer, count: LayerCount, denied: boolean): LimitReport {
  return {
    kind: 'requests',
    layer: layer.name,
    limit: count.limit,
    remaining: count.remaining,
    resetAt: count.resetAt ?? Date.now() + layer.windowMs,
    windowMs: layer.windowMs,
    denied,
  };
}

/** A store error the policy let through (failOpen): reported, and the layer passes uncounted. */
function reportPassedStoreError(failures: StoreFailureHandling, error: unknown): void {
  if (error instanceof StoreFailure) failures.report(error);
  else process.emitWarning(`tollgate ${FACTORY}: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * Counts a layer in its store directly, as express-rate-limit would: the limit, then the hit
 * (the store is told the limit); more hits than the limit refuse; a store error passes under failOpen.
 * A store that answers at once (process memory) is counted without a promise.
 */
function countDirectly(
  failures: StoreFailureHandling,
  layer: RequestLayer,
  req: Request,
): LayerOutcome | Promise<LayerOutcome> {
  let key: string;
  let limit: number;
  let counted: IncrementResponse | Promise<IncrementResponse>;
  try {
    key = layer.storeKeyOf(req);
    limit = layer.limitOf(req);
  } catch (error) {
    return { layer, state: 'error', error };
  }
  try {
    counted = layer.store.increment(key, limit);
  } catch (error) {
    return storeErrorOutcome(failures, layer, error);
  }
  if (counted instanceof Promise)
    return counted.then(
      (answer) => outcomeOf(layer, key, limit, answer),
      (error: unknown) => storeErrorOutcome(failures, layer, error),
    );
  return outcomeOf(layer, key, limit, counted);
}

function storeErrorOutcome(failures: StoreFailureHandling, layer: RequestLayer, error: unknown): LayerOutcome {
  if (failures.policy !== 'failOpen') return { layer, state: 'error', error };
  reportPassedStoreError(failures, error);
  return { layer, state: 'skipped' };
}

function outcomeOf(layer: RequestLayer, key: string, limit: number, counted: IncrementResponse): LayerOutcome {
  const hits = counted.totalHits;
  const resetAt = counted.resetTime?.getTime();
  return {
    layer,
    state: hits > limit ? 'denied' : 'allowed',
    count: { key, limit, remaining: Math.max(limit - hits, 0), resetAt },
  };
}

/** Gives a hit back to the layers that allowed a request that was refused after all. */
async function giveBack(failures: StoreFailureHandling, outcomes: LayerOutcome[]): Promise<void> {
  await Promise.all(
    outcomes.map(async (outcome) => {
      if (outcome.state !== 'allowed') return;
      try {
        await outcome.layer.store.decrement(outcome.count.key);
      } catch (error) {
        failures.report(error);
      }
    }),
  );
}

function reportOf(outcome: LayerOutcome): LimitReport | undefined {
  return outcome.state === 'allowed' || outcome.state === 'denied'
    ? toReport(outcome.layer, outcome.count, outcome.state === 'denied')
    : undefined;
}

function reportsOf(outcomes: LayerOutcome[]): LimitReport[] {
  const reports: LimitReport[] = [];
  for (const outcome of outcomes) {
    const report = reportOf(outcome);
    if (report) reports.push(report);
  }
  return reports;
}

/** The verdict on the counted layers. Allowed is answered at once; the rest first give back what was counted. */
function verdictOf(failures: StoreFailureHandling, outcomes: LayerOutcome[]): RequestVerdict | Promise<RequestVerdict> {
  for (const outcome of outcomes)
    if (outcome.state === 'error' || outcome.state === 'denied') return refusalOf(failures, outcomes);
  return { kind: 'allowed', value: outcomes };
}

async function refusalOf(failures: StoreFailureHandling, outcomes: LayerOutcome[]): Promise<RequestVerdict> {
  const bug = outcomes.find((o) => o.state === 'error' && !(o.error instanceof StoreFailure));
  if (bug?.state === 'error') {
    await giveBack(failures, outcomes);
    throw bug.error;
  }
  const failed = outcomes.find((o) => o.state === 'error');
  if (failed?.state === 'error') {
    failures.report(failed.error);
    await giveBack(failures, outcomes);
    return { kind: 'unavailable' };
  }
  const denied = reportsOf(outcomes).filter((r) => r.denied);
  await giveBack(failures, outcomes);
  const retryAfterMs = Math.max(0, ...denied.map((r) => r.resetAt - Date.now()));
  return { kind: 'denied', value: denied, retryAfterMs, code: 'rate_limit_exceeded' };
}

/** Where a layer stands for the caller of `req`, read from its store (its window, or none running: nothing used). */
async function readLayer(layer: RequestLayer, req: Request): Promise<LimitReading> {
  const limit = layer.limitOf(req);
  const window = await layer.store.get?.(layer.storeKeyOf(req));
  // A refused request's hit stays in the window past the limit (as express-rate-limit counts): none of it was served.
  const used = Math.min(window?.totalHits ?? 0, limit);
  return {
    kind: 'requests',
    layer: layer.name,
    subject: layer.keyOf(req),
    limit,
    used,
    remaining: Math.max(0, limit - used),
    resetAt: window?.resetTime?.getTime(),
    windowMs: layer.windowMs,
  };
}

function requestCheck(
  { failures, renderError, queue }: ResolvedLimiterOptions,
  layers: RequestLayer[],
): LimitCheck<LayerOutcome[], LimitReport[]> {
  const judge = (outcomes: LayerOutcome[]) => verdictOf(failures, outcomes);
  function attemptNow(req: Request): RequestVerdict | Promise<RequestVerdict> {
    // Started together: pipelined into one round trip (one script bundle, combined on Redis stores).
    const counts = layers.map((layer) => countDirectly(failures, layer, req));
    // Windows in process memory answer at once: nothing to wait for.
    return counts.some((count) => count instanceof Promise)
      ? Promise.all(counts).then(judge)
      : judge(counts as LayerOutcome[]);
  }
  return {
    queue,
    queueId: (req) => layers.map((layer) => layer.keyOf(req)).join('|'),
    attempt: (req) => asPromise(attemptNow(req)),
    attemptNow,
    cancel: (outcomes) => giveBack(failures, outcomes),
    commit(_req, res, outcomes) {
      let winner: LimitReport | undefined;
      for (const outcome of outcomes) {
        const report = reportOf(outcome);
        if (report && (!winner || isMoreRestrictive(report, winner))) winner = report;
      }
      if (winner) reportLimit(res, winner);
    },
    refuse(req, res, denied, waitedMs) {
      const winner = denied && mostRestrictive(denied);
      refuseOverLimit(renderError, req, res, 'requests', winner, winner ? winner.resetAt - Date.now() : 1000, waitedMs);
    },
    unavailable(req, res) {
      renderError(failures.unavailable(), req, res);
    },
    read: (req, names) => Promise.all(layers.filter((layer) => readable(layer, names)).map((l) => readLayer(l, req))),
  };
}

/**
 * Each layer with its store. A layer is counted in its store directly, mounted alone or inside
 * combineLimits alike: the limit, then the hit (express-rate-limit's Store contract, the store
 * told the limit); more hits than the limit refuse. Headers are written once for all layers.
 */
function requestLayers(
  { layers, prefix, failures }: ResolvedLimiterOptions,
  stores: StoresWithCommands | undefined,
): RequestLayer[] {
  // On Redis Cluster a counter sits on the slot of whom it counts (the key, the tenant, global).
  const slotTag = stores?.slotTag?.bind(stores);
  return layers.map((layer) => {
    const store = createRequestStore(stores, `${prefix}${layer.name}:`, failures, layer.windowMs);
    // A store of express-rate-limit's learns its window at init (rate-limit-redis's does, and loads its script then:
    // a load that fails, Redis being down, is loaded again by the first count once it answers).
    try {
      void Promise.resolve(store.init?.({ windowMs: layer.windowMs } as RateLimitOptions)).catch(() => undefined);
    } catch {
      // As a failed load: counted as a store failure by the first count.
    }
    const storeKeyOf = slotTag
      ? (req: Request) => {
          const id = layer.keyOf(req);
          return slotTag(id) + id;
        }
      : layer.keyOf;
    return { ...layer, storeKeyOf, store };
  });
}

/**
 * Limits requests per window, per tier, in one or several layers. All layers are counted at
 * once (one Redis round trip, pipelined; one call with the other checks inside combineLimits); a
 * request refused by one layer is given back to the layers that allowed it, so a refused caller
 * does not drain a shared (global, tenant) limit.
 */
export function tieredRateLimit(options: TieredRateLimitOptions = {}): RequestHandler {
  const config = resolveLimiterOptions(options, {
    factory: FACTORY,
    defaultLimit: 60,
    defaultPrefix: 'tg:rl:',
    prefixUnderStores: 'rl:',
    exactRetryAfter: true,
  });
  const check = requestCheck(config, requestLayers(config, options.stores));
  // Combined, the layers count in the same stores, the same way: their calls join the other checks' in one turn.
  check.combined = () => check;

  return registerLimitCheck(function tieredRateLimitMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
