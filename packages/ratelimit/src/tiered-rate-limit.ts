// tieredRateLimit: requests per window per tier, in layers (global, tenant, key), on express-rate-limit.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { rateLimit, type RateLimitInfo, type RateLimitRequestHandler, type Store } from 'express-rate-limit';
import { assertKnownOptions, renderApiError } from '@tollgate/core';
import { LAYER_OPTION_NAMES, resolveLayers, type LimitLayer, type LimitLayerOptions } from './limit-layers.js';
import { mostRestrictive, refuseOverLimit, reportLimit, type LimitReport } from './rate-limit-headers.js';
import { countsApartWhenCombined, createRequestStore } from './request-store.js';
import { StoreFailure, storeFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, StoresWithCommands, WaitOptions } from './types.js';
import { registerLimitCheck, runLimitCheck, type LimitCheck } from './limit-check.js';
import { resolveWaitOptions, WaitQueue } from './wait-queue.js';

export interface TieredRateLimitOptions extends CommonLimitOptions, LimitLayerOptions {
  /**
   * Shared stores. Stores with `sendCommand` (from `@tollgate/redis`) count in Redis through
   * rate-limit-redis, so every process shares the limits; otherwise each process counts in
   * express-rate-limit's MemoryStore. Inside `combineLimits`, Redis stores count the same fixed
   * windows in the same keys with their own script, so the whole check is one Redis call.
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

const OPTION_NAMES = [...LAYER_OPTION_NAMES, 'layers', 'stores', 'prefix', 'wait', 'onStoreFailure', 'timeoutMs', 'onStoreError', 'renderError'] as const;
const CODE = 'ERR_TG_RATELIMIT';
const FACTORY = 'tieredRateLimit';
/** Numbers limiter instances, so two of them on one request (or combined) never share a request property. */
let instances = 0;

interface RequestLayer extends LimitLayer {
  readonly store: Store;
  readonly limiter: RateLimitRequestHandler;
  readonly infoProperty: string;
}

type LayerOutcome =
  | { layer: RequestLayer; state: 'allowed' | 'denied'; info: RateLimitInfo }
  /** The store failed and failOpen let the layer pass uncounted. */
  | { layer: RequestLayer; state: 'skipped' }
  | { layer: RequestLayer; state: 'error'; error: unknown };

function toReport(layer: RequestLayer, info: RateLimitInfo, denied: boolean): LimitReport {
  return {
    kind: 'requests',
    layer: layer.name,
    limit: info.limit,
    remaining: info.remaining,
    resetAt: info.resetTime?.getTime() ?? Date.now() + layer.windowMs,
    windowMs: layer.windowMs,
    denied,
  };
}

/**
 * Limits requests per window, per tier, in one or several layers. All layers are counted at
 * once (one Redis round trip, pipelined; one call with the other checks inside combineLimits); a
 * request refused by one layer is given back to the layers that allowed it, so a refused caller
 * does not drain a shared (global, tenant) limit.
 */
export function tieredRateLimit(options: TieredRateLimitOptions = {}): RequestHandler {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, FACTORY);
  const failures = storeFailureHandling(options, FACTORY, CODE);
  const renderError = options.renderError ?? renderApiError;
  // Every key the stores write lives under their prefix; the request counters too.
  const storesPrefix = typeof options.stores?.prefix === 'string' ? options.stores.prefix : undefined;
  const prefix = storesPrefix === undefined ? options.prefix ?? 'tg:rl:' : storesPrefix + (options.prefix ?? 'rl:');
  const waitSettings = resolveWaitOptions(options.wait, FACTORY, CODE);
  const queue = waitSettings && new WaitQueue(waitSettings, { exactRetryAfter: true });
  const instance = ++instances;

  const resolved = resolveLayers(options, { factory: FACTORY, codePrefix: CODE, defaultLimit: 60 });
  // On Redis Cluster a counter sits on the slot of whom it counts (the key, the tenant, global).
  const slotTag = options.stores?.slotTag?.bind(options.stores);

  /** Each layer on express-rate-limit; `combined` layers count in the stores' fixed windows when they keep them. */
  function requestLayers(combined: boolean): RequestLayer[] {
    return resolved.map((layer, index) => {
      const store = createRequestStore(options.stores, `${prefix}${layer.name}:`, failures, combined);
      const infoProperty = `tollgateRateLimit${instance}_${combined ? 'c' : ''}${index}`;
      const limiter = rateLimit({
        windowMs: layer.windowMs,
        limit: (req) => layer.limitOf(req),
        keyGenerator: slotTag ? (req) => {
          const id = layer.keyOf(req);
          return slotTag(id) + id;
        } : (req) => layer.keyOf(req),
        store,
        requestPropertyName: infoProperty,
        // Headers are written once for all layers (only the most restrictive), with OpenAI's beside them.
        standardHeaders: false,
        legacyHeaders: false,
        passOnStoreError: failures.policy === 'failOpen',
        // The denial is answered after every layer has been heard; the outcome is read from next() not being called.
        handler: () => undefined,
        logger: {
          warn: (error: unknown) => process.emitWarning(`tollgate ${FACTORY}: ${String(error)}`),
          error: (error: unknown) => {
            if (error instanceof StoreFailure) failures.report(error);
            else process.emitWarning(`tollgate ${FACTORY}: ${error instanceof Error ? error.message : String(error)}`);
          },
        },
        // A waiting request is counted again when it retries; that is intended, not a double count.
        validate: { singleCount: queue === undefined },
      });
      return { ...layer, store, limiter, infoProperty };
    });
  }

  async function countLayer(layer: RequestLayer, req: Request, res: Response): Promise<LayerOutcome> {
    let passed = false;
    let failure: unknown;
    await layer.limiter(req, res, (error?: unknown) => {
      passed = true;
      failure = error;
    });
    if (failure !== undefined) return { layer, state: 'error', error: failure };
    const info = (req as unknown as Record<string, RateLimitInfo | undefined>)[layer.infoProperty];
    if (!info) return { layer, state: 'skipped' };
    return { layer, state: passed ? 'allowed' : 'denied', info };
  }

  /** Gives a hit back to the layers that allowed a request that was refused after all. */
  async function giveBack(outcomes: LayerOutcome[]): Promise<void> {
    await Promise.all(outcomes.map(async (outcome) => {
      if (outcome.state !== 'allowed') return;
      try {
        await outcome.layer.store.decrement(outcome.info.key);
      } catch (error) {
        failures.report(error);
      }
    }));
  }

  function reportsOf(outcomes: LayerOutcome[]): LimitReport[] {
    const reports: LimitReport[] = [];
    for (const outcome of outcomes) {
      if (outcome.state === 'allowed' || outcome.state === 'denied') reports.push(toReport(outcome.layer, outcome.info, outcome.state === 'denied'));
    }
    return reports;
  }

  function requestCheck(layers: RequestLayer[]): LimitCheck<LayerOutcome[], LimitReport[]> {
    return {
      queue,
      queueId: (req) => layers.map((layer) => layer.keyOf(req)).join('|'),
      async attempt(req, res) {
        // A retry after waiting must not read the last attempt's info. Only then is there anything to
        // delete: \`delete\` on a fresh request would switch it to slow (dictionary) properties.
        for (const layer of layers) if (layer.infoProperty in req) delete (req as unknown as Record<string, unknown>)[layer.infoProperty];
        // Started together: pipelined into one round trip (one script bundle, combined on Redis stores).
        const outcomes = await Promise.all(layers.map((layer) => countLayer(layer, req, res)));
        const bug = outcomes.find((o) => o.state === 'error' && !(o.error instanceof StoreFailure));
        if (bug?.state === 'error') {
          await giveBack(outcomes);
          throw bug.error;
        }
        const failed = outcomes.find((o) => o.state === 'error');
        if (failed?.state === 'error') {
          failures.report(failed.error);
          await giveBack(outcomes);
          return { kind: 'unavailable' };
        }
        const denied = reportsOf(outcomes).filter((r) => r.denied);
        if (denied.length === 0) return { kind: 'allowed', value: outcomes };
        await giveBack(outcomes);
        const retryAfterMs = Math.max(0, ...denied.map((r) => r.resetAt - Date.now()));
        return { kind: 'denied', value: denied, retryAfterMs };
      },
      cancel: giveBack,
      commit(_req, res, outcomes) {
        const winner = mostRestrictive(reportsOf(outcomes));
        if (winner) reportLimit(res, winner);
      },
      refuse(req, res, denied, waitedMs) {
        const winner = denied && mostRestrictive(denied);
        refuseOverLimit(renderError, req, res, 'requests', winner, winner ? winner.resetAt - Date.now() : 1000, waitedMs);
      },
      unavailable(req, res) {
        renderError(failures.unavailable(), req, res);
      },
    };
  }

  const check = requestCheck(requestLayers(false));
  if (countsApartWhenCombined(options.stores)) {
    let combined: LimitCheck<LayerOutcome[], LimitReport[]> | undefined;
    check.combined = () => (combined ??= requestCheck(requestLayers(true)));
  }

  return registerLimitCheck(function tieredRateLimitMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
