// tokenRateLimit: tokens per window per key, tenant or tier; reserves the estimate, settles to the real usage.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, assertKnownOptions, createMemoryStores, getContext, renderApiError, type TollgateStores, type UsageRecord, type WindowResult } from '@tollgate/core';
import { LAYER_OPTION_NAMES, resolveLayers, type LimitLayer, type LimitLayerOptions } from './limit-layers.js';
import { describeWindow, mostRestrictive, refuseOverLimit, reportLimit, type LimitReport } from './rate-limit-headers.js';
import { StoreFailure, storeFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { registerLimitCheck, runLimitCheck, type LimitCheck } from './limit-check.js';
import { resolveWaitOptions, WaitQueue } from './wait-queue.js';

export interface TokenRateLimitOptions extends CommonLimitOptions, LimitLayerOptions {
  /**
   * Stores whose weighted window counter holds the token counts (`@tollgate/redis` to share
   * them between processes).
   * @default in-memory stores of this process
   */
  stores?: TollgateStores;
  /** Several token limits checked together (see tieredRateLimit's `layers`). */
  layers?: LimitLayerOptions[];
  /**
   * Prefix of the counter keys (the layer name follows it).
   * @default 'tg:tokens:'
   */
  prefix?: string;
  /** Wait (FIFO per caller, at most `maxMs`) for tokens to free up instead of answering 429. */
  wait?: WaitOptions;
}

const OPTION_NAMES = [...LAYER_OPTION_NAMES, 'layers', 'stores', 'prefix', 'wait', 'onStoreFailure', 'timeoutMs', 'onStoreError', 'renderError'] as const;
const CODE = 'ERR_TG_RATELIMIT';
const FACTORY = 'tokenRateLimit';

interface Target {
  layer: LimitLayer;
  key: string;
  /** Whom the window counts (`key:k1`, `tenant:acme`, `global`): its slot on a sharded store. */
  slot: string;
  limit: number;
}

interface Charge extends Target {
  result: WindowResult;
}

/** An allowed reservation: what to settle, and where. */
interface Reserved {
  units: number;
  charges: Charge[];
  queueId: string;
}

/** Why a request was refused: the layers that refused, or one limit it can never fit. */
interface Refusal {
  units: number;
  charges: Charge[];
  tooLarge?: Target;
  /** The route declared no provider call: nothing to count. */
  misconfigured?: true;
}

function toReport(charge: Charge, denied: boolean): LimitReport {
  return {
    kind: 'tokens',
    layer: charge.layer.name,
    limit: charge.limit,
    remaining: charge.result.remaining,
    resetAt: charge.result.resetAt,
    windowMs: charge.layer.windowMs,
    denied,
  };
}

/** Real tokens of a settled request: the whole prompt (cached included) plus the output. */
function tokensUsed(record: UsageRecord): number {
  // A response-cache hit reached no provider: it takes no tokens (its counts are the stored answer's).
  if (record.usageSource === 'cache') return 0;
  return Math.max(0, record.inputTokens) + Math.max(0, record.outputTokens);
}

/**
 * Limits tokens per window. Before the call it reserves `req.tollgate.estimate.totalTokens`
 * (input + output cap) in every layer; when the request settles it charges or refunds the
 * difference to the real input + output tokens. A request larger than a whole limit is
 * refused at once, without touching the counters.
 */
export function tokenRateLimit(options: TokenRateLimitOptions = {}): RequestHandler {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, FACTORY);
  const failures = storeFailureHandling(options, FACTORY, CODE);
  const renderError = options.renderError ?? renderApiError;
  const prefix = options.prefix ?? 'tg:tokens:';
  const counter = (options.stores ?? createMemoryStores()).counter;
  const layers = resolveLayers(options, { factory: FACTORY, codePrefix: CODE, defaultLimit: 10_000 });
  const waitSettings = resolveWaitOptions(options.wait, FACTORY, CODE);
  const queue = waitSettings && new WaitQueue(waitSettings, { exactRetryAfter: false });

  async function adjustAll(charges: Charge[], delta: number): Promise<void> {
    if (delta === 0) return;
    await Promise.all(charges.map(async ({ key, slot, layer, result }) => {
      try {
        await failures.call('counter.adjust', counter.adjust(key, delta, { windowMs: layer.windowMs, windowStart: result.windowStart, slot }));
      } catch (error) {
        failures.report(error);
      }
    }));
  }

  function targetsOf(req: Request): Target[] {
    return layers.map((layer) => {
      const slot = layer.keyOf(req);
      return { layer, key: `${prefix}${layer.name}:${slot}`, slot, limit: layer.limitOf(req) };
    });
  }

  function unitsOf(req: Request, res: Response): number {
    return Math.max(0, Math.ceil(getContext(req, res).estimate!.totalTokens));
  }

  const check: LimitCheck<Reserved, Refusal> = {
    queue,
    queueId: (req) => targetsOf(req).map((t) => t.key).join('|'),
    async attempt(req, res) {
      // Nothing says how many tokens this request may use: refused, never let through uncounted.
      if (!getContext(req, res).estimate) return { kind: 'denied', value: { misconfigured: true, units: 0, charges: [] }, retryAfterMs: 0, final: true };
      const units = unitsOf(req, res);
      const targets = targetsOf(req);
      // Reserving it would drain the window and still fail: refuse with the numbers instead.
      const tooLarge = targets.find((t) => units > t.limit);
      if (tooLarge) return { kind: 'denied', value: { tooLarge, units, charges: [] }, retryAfterMs: Infinity, final: true };

      // Started together, so a Redis client pipelines them into one round trip.
      // A consume that times out may still land: its units are then given back, as nobody will settle them.
      const settled = await Promise.allSettled(targets.map((target) =>
        failures.callOrUndo('counter.consume', counter.consume(target.key, units, { limit: target.limit, windowMs: target.layer.windowMs, slot: target.slot }), async (late) => {
          if (late.allowed && units > 0) await counter.adjust(target.key, -units, { windowMs: target.layer.windowMs, windowStart: late.windowStart, slot: target.slot });
        })));
      const charges: Charge[] = [];
      let failure: unknown;
      settled.forEach((outcome, index) => {
        if (outcome.status === 'rejected') failure ??= outcome.reason;
        else charges.push({ ...targets[index]!, result: outcome.value });
      });
      const counted = charges.filter((c) => c.result.allowed);
      if (failure !== undefined) {
        if (!(failure instanceof StoreFailure)) {
          await adjustAll(counted, -units);
          throw failure;
        }
        failures.report(failure);
        if (failures.policy === 'failClosed') {
          await adjustAll(counted, -units);
          return { kind: 'unavailable' };
        }
      }
      // With nothing to reserve, a window already full still refuses: the request would add to it.
      const denied = charges.filter((c) => !c.result.allowed || (units === 0 && c.result.remaining <= 0));
      if (denied.length > 0) {
        await adjustAll(counted, -units);
        const retryAfterMs = Math.max(...denied.map((c) => c.result.retryAfterMs || c.result.resetAt - Date.now()));
        return { kind: 'denied', value: { units, charges: denied }, retryAfterMs: Math.max(0, retryAfterMs) };
      }
      return { kind: 'allowed', value: { units, charges: counted, queueId: queue ? targets.map((t) => t.key).join('|') : '' } };
    },
    cancel: ({ charges, units }) => adjustAll(charges, -units),
    commit(req, res, { units, charges, queueId }) {
      const winner = mostRestrictive(charges.map((c) => toReport(c, false)));
      if (winner) reportLimit(res, winner);
      if (charges.length === 0) return;
      const context = getContext(req, res);
      context.reservations.push({ kind: 'tokens', id: `${context.requestId}:tokens`, amount: units });
      context.onSettle(async (record) => {
        // Nothing metered: keep the reservation as charged, the safe upper bound.
        if (!record) return;
        const delta = tokensUsed(record) - units;
        await adjustAll(charges, delta);
        if (delta < 0) queue?.notify(queueId);
      });
    },
    refuse(req, res, refusal, waitedMs) {
      if (refusal?.misconfigured) {
        const message = 'This route limits tokens but declares no provider call to estimate: mount meter({ api }) (or providerCall() and meter()) before tokenRateLimit().';
        renderError(new ApiError('misconfigured_route', message), req, res);
        return;
      }
      if (refusal?.tooLarge) {
        const { tooLarge, units } = refusal;
        const message = `This request needs ${units} tokens but the limit is ${tooLarge.limit} tokens per ${describeWindow(tooLarge.layer.windowMs)} (${tooLarge.layer.name}). Lower max_tokens or shorten the input.`;
        renderError(new ApiError('tokens_rate_limit_exceeded', message, { headers: { 'x-should-retry': 'false' } }), req, res);
        return;
      }
      const winner = refusal && mostRestrictive(refusal.charges.map((c) => toReport(c, true)));
      const retryAfterMs = refusal ? Math.max(0, ...refusal.charges.map((c) => c.result.retryAfterMs || c.result.resetAt - Date.now())) : 1000;
      refuseOverLimit(renderError, req, res, 'tokens', winner, retryAfterMs, waitedMs);
    },
    unavailable(req, res) {
      renderError(failures.unavailable(), req, res);
    },
  };

  return registerLimitCheck(function tokenRateLimitMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
