// tokenRateLimit: tokens per window per key, tenant or tier; reserves the estimate, settles to the real usage.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  ApiError,
  createMemoryStores,
  getContext,
  MemoryWindowCounter,
  unalteredMemoryStore,
  counterAtOnce,
  type TollgateStores,
  type WindowCounterAtOnce,
  type UsageRecord,
  type WindowResult,
} from '@tollgate/core';
import type { LimitLayer, LimitLayerOptions } from './limit-layers.js';
import { LAYERED_OPTION_NAMES, resolveLimiterOptions } from './limiter-options.js';
import {
  describeWindow,
  isMoreRestrictive,
  mostRestrictive,
  refuseOverLimit,
  reportLimit,
  type LimitReport,
} from './rate-limit-headers.js';
import { StoreFailure } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import {
  asPromise,
  registerLimitCheck,
  runLimitCheck,
  settleAll,
  type LimitCheck,
  type Verdict,
} from './limit-check.js';

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

const DONE: Promise<void> = Promise.resolve();
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

type TokenVerdict = Verdict<Reserved, Refusal>;

/** With nothing to reserve, a window already full still refuses: the request would add to it. */
function refuses(charge: Charge, units: number): boolean {
  return !charge.result.allowed || (units === 0 && charge.result.remaining <= 0);
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
  const { failures, renderError, prefix, layers, queue } = resolveLimiterOptions(options, {
    factory: FACTORY,
    optionNames: LAYERED_OPTION_NAMES,
    defaultLimit: 10_000,
    defaultPrefix: 'tg:tokens:',
    memoryStoreOf: ({ counter }) => unalteredMemoryStore(counter, MemoryWindowCounter, ['consume', 'adjust']),
    exactRetryAfter: false,
  });
  const counter = (options.stores ?? createMemoryStores()).counter;
  // One call path: the counter's answer at once where it can give one (in process memory, from a block it holds), else its promise.
  const atOnce = counterAtOnce(counter);
  const keyPrefixes = layers.map((layer) => `${prefix}${layer.name}:`);

  function adjust({ key, slot, layer, result }: Charge, delta: number): Promise<void> {
    return failures
      .call(
        'counter.adjust',
        counter.adjust(key, delta, { windowMs: layer.windowMs, windowStart: result.windowStart, slot }),
      )
      .catch((error: unknown) => failures.report(error));
  }

  /** Adds `delta` to every charge's window; failures are reported, never thrown. Where the counter can, done at once. */
  function adjustAll(charges: Charge[], delta: number): Promise<void> | undefined {
    if (delta === 0 || charges.length === 0) return undefined;
    if (atOnce) {
      const left = charges.filter(({ key, slot, layer, result }) => {
        try {
          return !atOnce.adjustAtOnce(key, delta, { windowMs: layer.windowMs, windowStart: result.windowStart, slot });
        } catch (error) {
          failures.report(new StoreFailure('counter.adjust', error));
          return false;
        }
      });
      if (left.length === 0) return undefined;
      charges = left;
    }
    if (charges.length === 1) return adjust(charges[0]!, delta);
    return Promise.all(charges.map((charge) => adjust(charge, delta))).then(() => undefined);
  }

  function targetsOf(req: Request): Target[] {
    return layers.map((layer, index) => {
      const slot = layer.keyOf(req);
      return { layer, key: keyPrefixes[index]! + slot, slot, limit: layer.limitOf(req) };
    });
  }

  function consume(target: Target, units: number): Promise<WindowResult> {
    const { key, limit, layer, slot } = target;
    const consumed = counter.consume(key, units, { limit, windowMs: layer.windowMs, slot });
    return failures.callOrUndo('counter.consume', consumed, async (late) => {
      if (late.allowed && units > 0)
        await counter.adjust(key, -units, { windowMs: layer.windowMs, windowStart: late.windowStart, slot });
    });
  }

  /** Ms until every refusing charge has room: its own estimate, else its window's reset. */
  function retryAfterOf(denied: Charge[]): number {
    const now = Date.now();
    let retryAfterMs = 0;
    for (const { result } of denied) retryAfterMs = Math.max(retryAfterMs, result.retryAfterMs || result.resetAt - now);
    return retryAfterMs;
  }

  /** Reserves the estimate in every layer: at once in process memory. */
  function reserve(req: Request, res: Response): TokenVerdict | Promise<TokenVerdict> {
    const estimate = getContext(req, res).estimate;
    // Nothing says how many tokens this request may use: refused, never let through uncounted.
    if (!estimate)
      return { kind: 'denied', value: { misconfigured: true, units: 0, charges: [] }, retryAfterMs: 0, final: true };
    const units = Math.max(0, Math.ceil(estimate.totalTokens));
    const targets = targetsOf(req);
    // Reserving it would drain the window and still fail: refuse with the numbers instead.
    const tooLarge = targets.find((t) => units > t.limit);
    if (tooLarge)
      return { kind: 'denied', value: { tooLarge, units, charges: [] }, retryAfterMs: Infinity, final: true };
    if (atOnce) {
      const verdict = consumeAtOnce(atOnce, units, targets);
      if (verdict) return verdict;
    }
    // Started together, so a Redis client pipelines them into one round trip.
    // A consume that times out may still land: its units are then given back, as nobody will settle them.
    return settleAll(targets.map((target) => consume(target, units))).then((settled) => {
      const results = new Array<WindowResult | undefined>(settled.length);
      let failure: unknown;
      settled.forEach((outcome, index) => {
        if (outcome.status === 'fulfilled') results[index] = outcome.value;
        else failure ??= outcome.reason;
      });
      return verdictOf(units, targets, results, failure);
    });
  }

  /**
   * Every layer answered at once (a memory counter always answers, refusals too; blocks answer what
   * they can grant), or undefined, what was taken at once given back, for the promise path.
   */
  function consumeAtOnce(
    counter: WindowCounterAtOnce,
    units: number,
    targets: Target[],
  ): TokenVerdict | Promise<TokenVerdict> | undefined {
    const results = new Array<WindowResult | undefined>(targets.length);
    for (let index = 0; index < targets.length; index++) {
      const { key, limit, layer, slot } = targets[index]!;
      let result: WindowResult | undefined;
      try {
        result = counter.consumeAtOnce(key, units, { limit, windowMs: layer.windowMs, slot });
      } catch {
        result = undefined;
      }
      if (!result) {
        for (let taken = 0; taken < index; taken++) {
          const target = targets[taken]!;
          counter.adjustAtOnce(target.key, -units, {
            windowMs: target.layer.windowMs,
            windowStart: results[taken]!.windowStart,
            slot: target.slot,
          });
        }
        return undefined;
      }
      results[index] = result;
    }
    return verdictOf(units, targets, results, undefined);
  }

  /** Allowed at once; a failure or a refusal goes through `troubledVerdict`, which gives back what was taken. */
  function verdictOf(
    units: number,
    targets: Target[],
    results: (WindowResult | undefined)[],
    failure: unknown,
  ): TokenVerdict | Promise<TokenVerdict> {
    const charges: Charge[] = [];
    let allAllowed = true;
    let anyDenied = false;
    for (let index = 0; index < results.length; index++) {
      const result = results[index];
      if (result === undefined) continue;
      const { layer, key, slot, limit } = targets[index]!;
      const charge = { layer, key, slot, limit, result };
      charges.push(charge);
      if (!charge.result.allowed) allAllowed = false;
      if (refuses(charge, units)) anyDenied = true;
    }
    const counted = allAllowed ? charges : charges.filter((c) => c.result.allowed);
    if (failure !== undefined || anyDenied) return troubledVerdict(units, targets, charges, counted, failure);
    return allowed(units, targets, counted);
  }

  function allowed(units: number, targets: Target[], counted: Charge[]): TokenVerdict {
    return {
      kind: 'allowed',
      value: { units, charges: counted, queueId: queue ? targets.map((t) => t.key).join('|') : '' },
    };
  }

  async function troubledVerdict(
    units: number,
    targets: Target[],
    charges: Charge[],
    counted: Charge[],
    failure: unknown,
  ): Promise<TokenVerdict> {
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
    const denied = charges.filter((c) => refuses(c, units));
    if (denied.length === 0) return allowed(units, targets, counted);
    await adjustAll(counted, -units);
    return { kind: 'denied', value: { units, charges: denied }, retryAfterMs: retryAfterOf(denied) };
  }

  const check: LimitCheck<Reserved, Refusal> = {
    queue,
    queueId: (req) =>
      targetsOf(req)
        .map((t) => t.key)
        .join('|'),
    attempt(req, res) {
      try {
        return asPromise(reserve(req, res));
      } catch (error) {
        // A failing `by` or `limitScale` function: rejected like any attempt, so a combination still gives back the others.
        return Promise.reject(error);
      }
    },
    attemptNow: reserve,
    cancel: ({ charges, units }) => adjustAll(charges, -units) ?? DONE,
    commit(req, res, { units, charges, queueId }) {
      let winner: LimitReport | undefined;
      for (const charge of charges) {
        const report = toReport(charge, false);
        if (!winner || isMoreRestrictive(report, winner)) winner = report;
      }
      if (winner) reportLimit(res, winner);
      if (charges.length === 0) return;
      const context = getContext(req, res);
      context.reservations.push({ kind: 'tokens', id: `${context.requestId}:tokens`, amount: units });
      context.onSettle((record) => {
        // Nothing metered: keep the reservation as charged, the safe upper bound.
        if (!record) return;
        const delta = tokensUsed(record) - units;
        const adjusted = adjustAll(charges, delta);
        if (!queue || delta >= 0) return adjusted;
        if (!adjusted) return queue.notify(queueId);
        return adjusted.then(() => queue.notify(queueId));
      });
    },
    refuse(req, res, refusal, waitedMs) {
      if (refusal?.misconfigured) {
        const message =
          'This route limits tokens but declares no provider call to estimate: mount meter({ api }) (or providerCall() and meter()) before tokenRateLimit().';
        renderError(new ApiError('misconfigured_route', message), req, res);
        return;
      }
      if (refusal?.tooLarge) {
        const { tooLarge, units } = refusal;
        const message = `This request needs ${units} tokens but the limit is ${tooLarge.limit} tokens per ${describeWindow(tooLarge.layer.windowMs)} (${tooLarge.layer.name}). Lower max_tokens or shorten the input.`;
        renderError(
          new ApiError('tokens_rate_limit_exceeded', message, { headers: { 'x-should-retry': 'false' } }),
          req,
          res,
        );
        return;
      }
      const winner = refusal && mostRestrictive(refusal.charges.map((c) => toReport(c, true)));
      const retryAfterMs = refusal ? retryAfterOf(refusal.charges) : 1000;
      refuseOverLimit(renderError, req, res, 'tokens', winner, retryAfterMs, waitedMs);
    },
    unavailable(req, res) {
      renderError(failures.unavailable(), req, res);
    },
  };

  return registerLimitCheck(function tokenRateLimitMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
