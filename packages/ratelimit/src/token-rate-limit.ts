// tokenRateLimit: tokens per window per key, tenant or tier; reserves the estimate, settles to the real usage.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, createMemoryStores, getContext, type TollgateStores, type UsageRecord } from '@tollgate/core';
import { MemoryWindowCounter, unalteredMemoryStore } from '@tollgate/core/store-contracts';
import { mediaTokens } from '@tollgate/core/costs';
import type { LimitLayerOptions } from './limit-layers.js';
import { resolveLimiterOptions, type ResolvedLimiterOptions } from './limiter-options.js';
import {
  describeWindow,
  isMoreRestrictive,
  mostRestrictive,
  refuseOverLimit,
  reportLimit,
  type LimitReport,
} from './rate-limit-headers.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { asPromise, registerLimitCheck, runLimitCheck, type LimitCheck } from './limit-check.js';
import { retryAfterOf, TokenWindows, type Charge, type Refusal, type Reserved } from './token-windows.js';

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

/** Real tokens of a settled request: the whole prompt (cached included) plus the output, and its media's tokens. */
function tokensUsed(record: UsageRecord): number {
  // A response-cache hit reached no provider: it takes no tokens (its counts are the stored answer's).
  if (record.usageSource === 'cache') return 0;
  return Math.max(0, record.inputTokens) + Math.max(0, record.outputTokens) + mediaTokens(record.media);
}

/** The limiter's steps (the check protocol): reserve, settle to the real usage at the request's settle, refuse, give back. */
function tokenCheck(
  { failures, renderError, queue }: ResolvedLimiterOptions,
  windows: TokenWindows,
): LimitCheck<Reserved, Refusal> {
  return {
    queue,
    queueId: (req) =>
      windows
        .targetsOf(req)
        .map((t) => t.key)
        .join('|'),
    attempt(req, res) {
      try {
        return asPromise(windows.reserve(req, res));
      } catch (error) {
        // A failing `by` or `limitScale` function: rejected like any attempt, so a combination still gives back the others.
        return Promise.reject(error);
      }
    },
    attemptNow: (req, res) => windows.reserve(req, res),
    cancel: ({ charges, units }) => windows.adjustAll(charges, -units) ?? DONE,
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
      /** Tokens charged to the windows: the reservation, and what a stream that ran past it took since. */
      let charged = units;
      // The windows count a stream's output as it goes (charged, never refused: the budget decides a cut).
      context.onExtendOutput((tokens) => {
        charged += tokens;
        void windows.adjustAll(charges, tokens);
        return tokens;
      });
      context.onSettle((record) => {
        // Nothing metered: keep the reservation as charged, the safe upper bound.
        if (!record) return;
        const delta = tokensUsed(record) - charged;
        const adjusted = windows.adjustAll(charges, delta);
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
    read: (req, names) => windows.read(req, names),
  };
}

/**
 * Limits tokens per window. Before the call it reserves `req.tollgate.estimate.totalTokens`
 * (input + output cap) in every layer; when the request settles it charges or refunds the
 * difference to the real input + output tokens. A request larger than a whole limit is
 * refused at once, without touching the counters.
 */
export function tokenRateLimit(options: TokenRateLimitOptions = {}): RequestHandler {
  const config = resolveLimiterOptions(options, {
    factory: FACTORY,
    defaultLimit: 10_000,
    defaultPrefix: 'tg:tokens:',
    memoryStoreOf: ({ counter }) => unalteredMemoryStore(counter, MemoryWindowCounter, ['consume', 'adjust']),
    exactRetryAfter: false,
  });
  const check = tokenCheck(config, new TokenWindows((options.stores ?? createMemoryStores()).counter, config));

  return registerLimitCheck(function tokenRateLimitMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
