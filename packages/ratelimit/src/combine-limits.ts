// combineLimits: several limiters (and budgetGuard) checked together, so their store calls share one Redis call.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { TollgateError } from '@tollgate/core';
import { batchLimitHeaders } from './rate-limit-headers.js';
import {
  asPromise,
  attemptOf,
  isPending,
  limitCheckOf,
  registerLimitCheck,
  runLimitCheck,
  type LimitCheck,
  type LimitReading,
  type Verdict,
} from './limit-check.js';

const CODE = 'ERR_TG_RATELIMIT';

/** An attempt that rejected (or threw): a bug, given back to the caller once the others are undone. */
class Rejected {
  constructor(readonly reason: unknown) {}
}

type Outcome = Verdict | Rejected;

/** A check that took nothing for a request a shadow let through: nothing to commit. */
const NOTHING_TAKEN = Symbol('nothing taken');

/** Which check refused, and its own refusal. */
type Refusal = { by: number; value: unknown };
type Denial = Extract<Verdict, { kind: 'denied' }>;
type CombinedVerdict = Verdict<unknown[], Refusal>;

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
  if (limiters.length === 0)
    throw new TollgateError(`${CODE}_NOTHING_TO_COMBINE`, 'combineLimits() needs at least one limiter');
  const combined = new CombinedCheck(limiters.map(combinableCheck));
  return registerLimitCheck(function combinedLimitsMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(combined, req, res, next);
  }, combined);
}

/** The check of `combineLimits()`'s argument at `index`, as combined checks run; a middleware that has none, or waits, is refused. */
function combinableCheck(limiter: RequestHandler, index: number): LimitCheck {
  const check = limitCheckOf(limiter);
  if (!check) {
    throw new TollgateError(
      `${CODE}_NOT_A_LIMITER`,
      `combineLimits() argument ${index + 1} is not a tieredRateLimit, tokenRateLimit, concurrencyLimit, budgetGuard or combineLimits middleware`,
    );
  }
  if (check.queue)
    throw new TollgateError(
      `${CODE}_COMBINED_WAIT`,
      `combineLimits() argument ${index + 1} has a wait queue; combine limiters without wait`,
    );
  return check.combined?.() ?? check;
}

/** Several checks as one: every attempt starts together, all must allow, and a refusal gives back what the others took. */
class CombinedCheck implements LimitCheck<unknown[], Refusal> {
  readonly queue = undefined;

  constructor(private readonly checks: LimitCheck[]) {}

  queueId(req: Request): string {
    return this.checks.map((check) => check.queueId(req)).join('|');
  }

  attempt(req: Request, res: Response): Promise<CombinedVerdict> {
    return asPromise(this.attemptNow(req, res));
  }

  /**
   * Every check's attempt, started together; the verdict at once when each answered at once (limits
   * in process memory), else once the pending ones settled.
   */
  attemptNow(req: Request, res: Response): CombinedVerdict | Promise<CombinedVerdict> {
    const checks = this.checks;
    const answers = new Array<Outcome | PromiseLike<Verdict>>(checks.length);
    let pending = -1;
    let pendingCount = 0;
    for (let index = 0; index < checks.length; index++) {
      let answer: Outcome | PromiseLike<Verdict>;
      try {
        answer = attemptOf(checks[index]!, req, res);
      } catch (error) {
        // An attempt that threw instead of rejecting: still a rejection, as every attempt's failure is.
        answer = new Rejected(error);
      }
      if (isPending(answer)) {
        pending = index;
        pendingCount++;
      }
      answers[index] = answer;
    }
    if (pendingCount === 0) return this.verdictOf(answers as Outcome[]);
    if (pendingCount === 1) {
      const settle = (outcome: Outcome) => {
        answers[pending] = outcome;
        return this.verdictOf(answers as Outcome[]);
      };
      return Promise.resolve(answers[pending] as PromiseLike<Verdict>).then(settle, (error: unknown) =>
        settle(new Rejected(error)),
      );
    }
    return Promise.allSettled(answers).then((settled) =>
      this.verdictOf(
        settled.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value : new Rejected(outcome.reason))),
      ),
    );
  }

  async cancel(values: unknown[]): Promise<void> {
    await Promise.all(values.map((value, index) => this.checks[index]!.cancel(value)));
  }

  commit(req: Request, res: Response, values: unknown[]): void {
    batchLimitHeaders(res, () =>
      values.forEach((value, index) => {
        if (value !== NOTHING_TAKEN) this.checks[index]!.commit(req, res, value);
      }),
    );
  }

  refuse(req: Request, res: Response, refusal: Refusal | undefined, waitedMs: number | undefined): void {
    if (refusal) this.checks[refusal.by]!.refuse(req, res, refusal.value, waitedMs);
    else this.checks[0]!.refuse(req, res, undefined, waitedMs);
  }

  unavailable(req: Request, res: Response, by: number | undefined): void {
    this.checks[by ?? 0]!.unavailable(req, res, undefined);
  }

  // A shadow let the request through: each check takes what it must with no limit (the budget its money), the rest nothing.
  async takeOverLimit(req: Request, res: Response): Promise<unknown[] | undefined> {
    const taken = await Promise.all(
      this.checks.map(async (check) =>
        check.takeOverLimit ? ((await check.takeOverLimit(req, res)) ?? NOTHING_TAKEN) : NOTHING_TAKEN,
      ),
    );
    return taken.some((value) => value !== NOTHING_TAKEN) ? taken : undefined;
  }

  async read(req: Request, names: ReadonlySet<string> | undefined): Promise<LimitReading[]> {
    const readings = await Promise.all(this.checks.map((check) => check.read?.(req, names) ?? []));
    return readings.flat();
  }

  /** All allowed: answered at once. Otherwise `refusalOf` gives back what the allowing checks took. */
  private verdictOf(outcomes: Outcome[]): CombinedVerdict | Promise<CombinedVerdict> {
    const values = new Array<unknown>(outcomes.length);
    for (let index = 0; index < outcomes.length; index++) {
      const outcome = outcomes[index]!;
      if (outcome instanceof Rejected || outcome.kind !== 'allowed') return this.refusalOf(outcomes);
      values[index] = outcome.value;
    }
    return { kind: 'allowed', value: values };
  }

  private async refusalOf(outcomes: Outcome[]): Promise<CombinedVerdict> {
    const verdicts = outcomes.map((outcome): Verdict =>
      outcome instanceof Rejected ? { kind: 'unavailable' } : outcome,
    );
    const bug = outcomes.find((outcome) => outcome instanceof Rejected);
    if (bug instanceof Rejected) {
      await this.cancelAll(verdicts);
      throw bug.reason;
    }
    const unavailable = verdicts.findIndex((verdict) => verdict.kind === 'unavailable');
    if (unavailable >= 0) {
      await this.cancelAll(verdicts);
      return { kind: 'unavailable', by: unavailable };
    }
    // The refusal with the longest wait is the one to report.
    let refusal: { by: number; verdict: Denial } | undefined;
    verdicts.forEach((verdict, by) => {
      if (verdict.kind !== 'denied') return;
      if (!refusal || verdict.final || (!refusal.verdict.final && verdict.retryAfterMs > refusal.verdict.retryAfterMs))
        refusal = { by, verdict };
    });
    await this.cancelAll(verdicts);
    const { by, verdict } = refusal!;
    return {
      kind: 'denied',
      value: { by, value: verdict.value },
      retryAfterMs: verdict.retryAfterMs,
      ...(verdict.final ? { final: true } : {}),
      ...(verdict.code ? { code: verdict.code } : {}),
    };
  }

  /** Gives back what each allowing check took. */
  private async cancelAll(verdicts: Verdict[]): Promise<void> {
    await Promise.all(
      verdicts.map((verdict, index) =>
        verdict.kind === 'allowed' ? this.checks[index]!.cancel(verdict.value) : undefined,
      ),
    );
  }
}
