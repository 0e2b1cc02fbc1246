// The shape every limiter shares (attempt, then commit, cancel or refuse), run as middleware, with or without waiting.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { attachPreCallCheck, preCallCheckOf, type CheckVerdict, type PreCallCheck } from '@tollgate/core';
import { QUEUE_HEADER, type WaitQueue } from './wait-queue.js';

/** What one attempt found. `final` refusals (a request larger than the limit) never wait. */
export type Verdict<A = unknown, D = unknown> = CheckVerdict<A, D>;

/**
 * A limiter split in steps (core's `PreCallCheck`), so a combined limiter can run several
 * attempts together (one Redis round trip) and undo the allowed ones when another refuses.
 */
export interface LimitCheck<A = unknown, D = unknown> extends PreCallCheck<A, D, Request, Response> {
  readonly queue: WaitQueue | undefined;
  /**
   * The check as `combineLimits` runs it, when that differs: tieredRateLimit on Redis stores then
   * counts in the stores' own fixed windows, so its store call joins the others' in one Redis call.
   */
  combined?(): LimitCheck<A, D>;
}

const CHECKS = new WeakMap<RequestHandler, LimitCheck>();

/** Runs a check for one request: wait if configured, then answer or call next(). */
export async function runLimitCheck<A, D>(check: LimitCheck<A, D>, req: Request, res: Response, next: NextFunction): Promise<void> {
  try {
    let verdict: Verdict<A, D> | undefined;
    let waitedMs: number | undefined;
    if (check.queue) {
      const outcome = await check.queue.run<Verdict<A, D>>(check.queueId(req), res, async () => {
        const attempt = await check.attempt(req, res);
        return attempt.kind === 'denied' && !attempt.final ? { ok: false, value: attempt, retryAfterMs: attempt.retryAfterMs } : { ok: true, value: attempt };
      });
      if (outcome.status === 'aborted') return;
      waitedMs = outcome.waitedMs;
      if (!res.headersSent) res.setHeader(QUEUE_HEADER, String(waitedMs));
      verdict = outcome.value;
    } else {
      verdict = await check.attempt(req, res);
    }
    if (verdict === undefined) check.refuse(req, res, undefined, waitedMs);
    else if (verdict.kind === 'unavailable') check.unavailable(req, res, verdict.by);
    else if (verdict.kind === 'denied') check.refuse(req, res, verdict.value, waitedMs);
    else {
      check.commit(req, res, verdict.value);
      next();
    }
  } catch (error) {
    next(error);
  }
}

/** Remembers the check behind a limiter middleware, for `combineLimits` (and, through core, for other combinators). */
export function registerLimitCheck<T extends RequestHandler, A, D>(middleware: T, check: LimitCheck<A, D>): T {
  CHECKS.set(middleware, check as unknown as LimitCheck);
  return attachPreCallCheck(middleware, check);
}

/** A limiter's own check, or the core `PreCallCheck` another package attached (budgetGuard's); those never wait. */
export function limitCheckOf(middleware: RequestHandler): LimitCheck | undefined {
  const own = CHECKS.get(middleware);
  if (own) return own;
  const foreign = preCallCheckOf(middleware) as PreCallCheck<unknown, unknown, Request, Response> | undefined;
  return foreign && Object.assign(Object.create(foreign) as LimitCheck, { queue: undefined });
}
