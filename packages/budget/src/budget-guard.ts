// budgetGuard: reserve the most a request may cost against every budget before the call, settle the real cost after.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, createMemoryStores, getContext } from '@tollgate/core';
import { answerCheck, attachPreCallCheck } from '@tollgate/core/checks';
import type { ErrorRenderer, Identity, TollgateContext } from '@tollgate/core';
import type { PreCallCheck } from '@tollgate/core/checks';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import type { ReservationNote } from '@tollgate/core/provider-call';
import type { BudgetHold, BudgetVerdict } from './budget-hold.js';
import { BudgetLedgerCalls } from './budget-ledger.js';
import { resolveBudgetOptions } from './budget-options.js';
import type { BudgetGuardOptions } from './budget-options.js';
import { BudgetReservations } from './budget-reservations.js';
import { readBudgetStatus, resetBudgets, selectBudgets, topUpBudgets } from './budget-status.js';
import type { BudgetBook } from './budget-status.js';
import { rebuildSpend } from './rebuild.js';
import type { RebuildReport, SpendSource } from './rebuild.js';
import { repriceHold } from './reprice.js';
import { BudgetEventMonitor } from './soft-limit.js';
import { heldReservations } from './held-reservations.js';
import type { HeldReservation } from './held-reservations.js';
import { SpendDrift } from './spend-drift.js';
import type { SpendDriftOptions } from './spend-drift.js';
import { SAMPLE_GAP_MS, SpendForecaster } from './spend-forecast.js';
import type { BudgetSelector, BudgetStatus } from './types.js';

export type { BudgetGuardOptions } from './budget-options.js';

/** The middleware, plus the operator calls on the budgets it guards. */
export interface BudgetGuard {
  (req: Request, res: Response, next: NextFunction): Promise<void>;
  readonly ledger: ReservationLedger;
  /** Spent, reserved, limit, remaining and reset time: of one scope, or of every budget configured with a fixed id. */
  status(selector?: BudgetSelector): Promise<BudgetStatus[]>;
  /** The budgets that apply to a caller, with their numbers. */
  statusFor(identity: Identity): Promise<BudgetStatus[]>;
  /** Credit `usd` to a scope's current period; returns its new status. */
  topUp(selector: BudgetSelector, usd: number): Promise<BudgetStatus[]>;
  /** Forget a scope's spend in the current period; returns its new status. */
  reset(selector: BudgetSelector): Promise<BudgetStatus[]>;
  /**
   * Restores the spend of every budget scope the ledger lost (Redis restarted without
   * persistence) from a durable usage ledger; scopes the ledger still holds are left alone.
   */
  rebuild(source: SpendSource): Promise<RebuildReport>;
  /**
   * The drift of the budgets' counters from the usage ledger `options.source`: read on demand, repaired, and sampled
   * every `options.intervalMs` once started (see spend-drift.ts). One watch per guard: a second call returns the first.
   */
  watchDrift(options: SpendDriftOptions): SpendDrift;
  /** The reservations held in the budget's scopes, with their age and (where the store tells) owner. */
  holds(selector: BudgetSelector): Promise<HeldReservation[]>;
  /**
   * Re-prices a running request's reservation for the model its call now runs with (a router
   * moving it to another target after `req.tollgate.switchModel`): a new reservation at the new
   * price, then the old one released, so that each is settled exactly once. Resolves false, the
   * old reservation kept, when the budgets cannot cover the new price or the ledger fails; true
   * when the reservation covers the call (or no budget applies).
   */
  reprice(req: Request, res: Response): Promise<boolean>;
  /** Waits for budget-event callbacks and webhook deliveries in flight. */
  flush(): Promise<void>;
  /** Flushes, stops webhook retries, and closes the in-memory ledger if the guard made it. */
  close(): Promise<void>;
}

/**
 * The budget's steps, for `combineLimits` (@tollgate/ratelimit): its reserve then shares one round trip with the limiters'.
 * `guardMark` marks this guard's holds on the request's context, where `reprice` finds them.
 */
function budgetCheck(
  reservations: BudgetReservations,
  guardMark: symbol,
  render: ErrorRenderer,
): PreCallCheck<BudgetHold | undefined, ApiError, Request, Response> {
  return {
    queueId: (req) => `budget:${req.tollgate?.identity?.keyId ?? ''}`,
    attempt: (req, res) => reservations.attempt(req, res),
    cancel: async (hold) => {
      if (hold) await reservations.release(hold);
    },
    commit(req, res, hold) {
      if (!hold) return;
      const ctx = getContext(req, res);
      const holds = ctx.get('budget.holds');
      if (holds === undefined) ctx.set('budget.holds', [{ guard: guardMark, hold }]);
      else holds.push({ guard: guardMark, hold });
      const note: ReservationNote = { kind: 'budget', id: hold.id, amount: hold.granted };
      if (hold.remaining !== undefined) note.remaining = hold.remaining;
      ctx.reservations.push(note);
      ctx.onSettle((record) => reservations.settle(hold, record));
      ctx.onExtendOutput((tokens, atLeast) => reservations.extend(hold, tokens, atLeast));
    },
    refuse(req, res, denial) {
      render(denial ?? new ApiError('insufficient_quota', 'Budget exhausted.'), req, res);
    },
    // A shadow let the request through: its real cost is still charged, past the limit where it goes there.
    takeOverLimit: (req, res) => reservations.holdOverLimit(req, res),
    unavailable(req, res) {
      const cause = req.tollgate.get('budget.storeError');
      render(
        new ApiError('service_unavailable', 'The budget ledger is unavailable; try again shortly.', {
          headers: { 'retry-after': 5 },
          cause,
        }),
        req,
        res,
      );
    },
  };
}

/** Answers the attempt's refusal, or lets the request on with its hold kept. */
function admit(
  check: ReturnType<typeof budgetCheck>,
  reservations: BudgetReservations,
  req: Request,
  res: Response,
  next: NextFunction,
  verdict: BudgetVerdict,
): Promise<void> | void {
  const hold = verdict.kind === 'allowed' ? verdict.value : undefined;
  if (hold && (req.tollgate.settled || res.destroyed || res.writableEnded)) {
    // The client left while we reserved: nothing ran, nothing is owed.
    return reservations.release(hold);
  }
  return answerCheck(check, req, res, next, verdict, undefined);
}

/** The operator calls on a guard's budgets; a change of spend here makes what the guard learned of it stale. */
function budgetOperations(book: BudgetBook, reservations: BudgetReservations) {
  const { known } = reservations.downgrades;
  const forgetSpend = () => {
    known.clear();
    reservations.forgetSpentModels();
  };
  let drift: SpendDrift | undefined;
  return {
    watchDrift(options: SpendDriftOptions) {
      drift ??= new SpendDrift(book, options, forgetSpend);
      return drift;
    },
    stopDrift: () => drift?.stop(),
    holds: (selector: BudgetSelector) => heldReservations(book, selector),
    async status(selector?: BudgetSelector) {
      return readBudgetStatus(book, await selectBudgets(book, selector));
    },
    async statusFor(identity: Identity) {
      return readBudgetStatus(book, await book.plan.forIdentity(identity));
    },
    async topUp(selector: BudgetSelector, usd: number) {
      if (typeof usd !== 'number' || !Number.isFinite(usd) || usd <= 0)
        throw new RangeError(`a top-up is a positive number of USD; got ${JSON.stringify(usd)}`);
      const budgets = await selectBudgets(book, selector);
      await topUpBudgets(book, budgets, usd);
      forgetSpend();
      return readBudgetStatus(book, budgets);
    },
    async reset(selector: BudgetSelector) {
      const budgets = await selectBudgets(book, selector);
      await resetBudgets(book, budgets);
      forgetSpend();
      return readBudgetStatus(book, budgets);
    },
    async rebuild(source: SpendSource) {
      const report = await rebuildSpend(book, source);
      if (report.restored.length > 0 || report.credited.length > 0) forgetSpend();
      return report;
    },
  };
}

/**
 * Reads every configured budget's status once a minute, so forecasts have samples when nobody asks for them (each
 * read is a sample, and may fire `budget.forecast`). Returns the stop. A read still running skips the next tick.
 */
function sampleSpend(book: BudgetBook): () => void {
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    selectBudgets(book)
      .then((budgets) => readBudgetStatus(book, budgets))
      .catch(() => undefined) // the ledger is down: no sample this minute; requests report store failures
      .finally(() => (reading = false));
  }, SAMPLE_GAP_MS);
  timer.unref();
  return () => clearInterval(timer);
}

export function budgetGuard(options: BudgetGuardOptions = {}): BudgetGuard {
  const config = resolveBudgetOptions(options);
  const { plan, now, storeTimeoutMs, webhook } = config;
  const ownStores = config.ledger ? undefined : createMemoryStores();
  const ledger: ReservationLedger = config.ledger ?? ownStores!.ledger;
  const monitor = new BudgetEventMonitor({
    ledger,
    storeTimeoutMs,
    onEvent: config.onEvent,
    onSoftLimit: config.onSoftLimit,
    log: config.log,
    webhook,
    now,
  });
  const book: BudgetBook = {
    plan,
    ledger,
    monitor,
    forecaster: new SpendForecaster(),
    now,
    storeTimeoutMs,
    reservationTtlMs: config.reservationTtlMs,
    ...(config.creditJournal ? { credits: config.creditJournal } : {}),
  };
  const reservations = new BudgetReservations(config, new BudgetLedgerCalls(ledger, config), monitor);
  /**
   * Each running request's hold, for `reprice`: in the request's context, not in a WeakMap (an entry per request
   * is work for every garbage collection), found by this guard's own mark (a request may pass several guards).
   */
  const guardMark = Symbol('tollgate.budgetGuard');
  const check = budgetCheck(reservations, guardMark, config.renderError);

  const guard = function budgetGuardMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    return reservations
      .attempt(req, res)
      .then((verdict) => admit(check, reservations, req, res, next, verdict))
      .catch(next);
  } as BudgetGuard;
  attachPreCallCheck(guard, check);
  const stopSampling = sampleSpend(book);

  const { stopDrift, ...operations } = budgetOperations(book, reservations);
  return Object.assign(guard, operations, {
    ledger,
    async reprice(req: Request, _res: Response) {
      const ctx = req.tollgate as TollgateContext | undefined;
      const hold = ctx?.get('budget.holds')?.find((held) => held.guard === guardMark)?.hold;
      // No budget applies to this request, or a shadow let it through with no reservation: nothing to move.
      if (!ctx || !hold || hold.overLimit) return true;
      return repriceHold(req, ctx, hold, reservations);
    },
    flush: () => monitor.flush(),
    async close() {
      stopSampling();
      await stopDrift();
      await monitor.flush();
      webhook?.close();
      await ownStores?.close();
    },
  });
}

/** Spent, reserved, limit, remaining and reset time per scope of a guard (all configured scopes without a selector). */
export function getBudgetStatus(guard: BudgetGuard, selector?: BudgetSelector): Promise<BudgetStatus[]> {
  return guard.status(selector);
}
