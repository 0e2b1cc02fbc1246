// combineLimits: several limiters (and budgetGuard) checked together, so their store calls share one Redis call.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { TollgateError } from '@tollgate/core';
import { batchLimitHeaders } from './rate-limit-headers.js';
import { limitCheckOf, registerLimitCheck, runLimitCheck, type LimitCheck, type Verdict } from './limit-check.js';

const CODE = 'ERR_TG_RATELIMIT';

/**
 * Runs `tieredRateLimit`, `tokenRateLimit`, `concurrencyLimit` and `budgetGuard` middleware (any
 * middleware carrying a core `PreCallCheck`) as one: their store calls start together (on Redis
 * stores one Redis call, the script bundle of the turn, instead of one per piece), all must allow
 * the request, and when one refuses the others give back what they took (hits, tokens, the slot,
 * the budget reservation; that costs one more call, on the refusal path only).
 * Mount it where the last of them belongs: after the estimate when `tokenRateLimit` or
 * `budgetGuard` is in. Limiters with `wait` cannot be combined (each would wait for something else).
 */
export function combineLimits(...limiters: RequestHandler[]): RequestHandler {
  if (limiters.length === 0) throw new TollgateError(`${CODE}_NOTHING_TO_COMBINE`, 'combineLimits() needs at least one limiter');
  const checks = limiters.map((limiter, index) => {
    const check = limitCheckOf(limiter);
    if (!check) {
      throw new TollgateError(`${CODE}_NOT_A_LIMITER`, `combineLimits() argument ${index + 1} is not a tieredRateLimit, tokenRateLimit, concurrencyLimit, budgetGuard or combineLimits middleware`);
    }
    if (check.queue) throw new TollgateError(`${CODE}_COMBINED_WAIT`, `combineLimits() argument ${index + 1} has a wait queue; combine limiters without wait`);
    return check.combined?.() ?? check;
  });

  async function cancelAll(verdicts: Verdict[]): Promise<void> {
    await Promise.all(verdicts.map((verdict, index) => (verdict.kind === 'allowed' ? checks[index]!.cancel(verdict.value) : undefined)));
  }

  const combined: LimitCheck<unknown[], { by: number; value: unknown }> = {
    queue: undefined,
    queueId: (req) => checks.map((check) => check.queueId(req)).join('|'),
    async attempt(req, res) {
      const settled = await Promise.allSettled(checks.map((check) => check.attempt(req, res)));
      const verdicts = settled.map((outcome): Verdict => (outcome.status === 'fulfilled' ? outcome.value : { kind: 'unavailable' }));
      const bug = settled.find((outcome) => outcome.status === 'rejected');
      if (bug?.status === 'rejected') {
        await cancelAll(verdicts);
        throw bug.reason;
      }
      const unavailable = verdicts.findIndex((verdict) => verdict.kind === 'unavailable');
      if (unavailable >= 0) {
        await cancelAll(verdicts);
        return { kind: 'unavailable', by: unavailable };
      }
      // The refusal with the longest wait is the one to report.
      let refusal: { by: number; verdict: Extract<Verdict, { kind: 'denied' }> } | undefined;
      verdicts.forEach((verdict, by) => {
        if (verdict.kind !== 'denied') return;
        if (!refusal || verdict.final || (!refusal.verdict.final && verdict.retryAfterMs > refusal.verdict.retryAfterMs)) refusal = { by, verdict };
      });
      if (refusal) {
        await cancelAll(verdicts);
        const { by, verdict } = refusal;
        return { kind: 'denied', value: { by, value: verdict.value }, retryAfterMs: verdict.retryAfterMs, ...(verdict.final ? { final: true } : {}) };
      }
      return { kind: 'allowed', value: verdicts.map((verdict) => (verdict as Extract<Verdict, { kind: 'allowed' }>).value) };
    },
    async cancel(values) {
      await Promise.all(values.map((value, index) => checks[index]!.cancel(value)));
    },
    commit(req, res, values) {
      batchLimitHeaders(res, () => values.forEach((value, index) => checks[index]!.commit(req, res, value)));
    },
    refuse(req, res, refusal, waitedMs) {
      if (refusal) checks[refusal.by]!.refuse(req, res, refusal.value, waitedMs);
      else checks[0]!.refuse(req, res, undefined, waitedMs);
    },
    unavailable(req, res, by) {
      checks[by ?? 0]!.unavailable(req, res, undefined);
    },
  };

  return registerLimitCheck(function combinedLimitsMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    return runLimitCheck(combined, req, res, next);
  }, combined);
}
