// The operator's side of budgets: what each scope spent, holds and has left, plus top-up and reset.
import { nanoToUsd, periodWindow, usdToNano } from '@tollgate/core';
import { scopeRemaining, spentBeyondCredit, withTimeout } from '@tollgate/core/store-contracts';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import { inForceAt } from './budget-limits.js';
import { budgetNames, budgetWindow, softLimitThreshold } from './budget-plan.js';
import type { BudgetPlan, BudgetWindow, EventMarker, ResolvedBudget } from './budget-plan.js';
import { giveJournaledCredit, journalReset } from './credit-journal.js';
import type { CreditJournal } from './credit-journal.js';
import type { BudgetEventMonitor } from './soft-limit.js';
import type { SpendForecaster } from './spend-forecast.js';
import type { BudgetSelector, BudgetStatus } from './types.js';

/** What the operator calls need from a guard. */
export interface BudgetBook {
  plan: BudgetPlan;
  ledger: ReservationLedger;
  monitor: BudgetEventMonitor;
  /** Every status read is a spend sample for the forecasts. */
  forecaster: SpendForecaster;
  now: () => number;
  storeTimeoutMs: number;
  /** How long an unsettled reservation holds (the age of a hold is this less what is left of it). */
  reservationTtlMs: number;
  /** Where top-ups are kept durably (see CreditJournal); without one, the store is their only record. */
  credits?: CreditJournal;
}

/**
 * When a rolling budget next gets money back: the end of the window for its oldest bucket that
 * holds spend. Window s holds buckets s.., window s+1 the same minus bucket s, so the spend of
 * bucket s is the difference of their totals. Undefined when nothing is spent or held.
 */
export async function rollingFreeAt(
  ledger: ReservationLedger,
  window: BudgetWindow,
  timeoutMs: number,
): Promise<number | undefined> {
  const usage = await withTimeout(ledger.usage(window.scopes), timeoutMs, 'ledger.usage');
  const used = usage.map((u) => u.spent + u.reserved);
  for (let i = 0; i < used.length; i++) {
    if (used[i]! - (used[i + 1] ?? 0) > 0) return window.scopes[i]!.expiresAt;
  }
  return undefined;
}

export async function readBudgetStatus(book: BudgetBook, budgets: readonly ResolvedBudget[]): Promise<BudgetStatus[]> {
  if (budgets.length === 0) return [];
  const now = book.now();
  const windows = budgets.map((budget) => budgetWindow(budget, now));
  const usage = await withTimeout(book.ledger.usage(windows.map((w) => w.head)), book.storeTimeoutMs, 'ledger.usage');
  const resets = await Promise.all(
    windows.map(
      async (w) =>
        (w.budget.period === 'rolling' ? await rollingFreeAt(book.ledger, w, book.storeTimeoutMs) : undefined) ??
        w.head.expiresAt,
    ),
  );
  return windows.map(({ budget, head }, i) => {
    // Spent is what was spent and credit what top-ups added: neither is netted against the other.
    const { spent = 0, reserved = 0, credit = 0 } = usage[i] ?? {};
    const remaining = scopeRemaining({ limit: budget.limitNano, spent, reserved, credit });
    const beyondCredit = spentBeyondCredit({ spent, credit });
    const threshold = softLimitThreshold(budget);
    const forecast = forecastSpend(book, windows[i]!, { spent, reserved, credit }, now);
    return {
      ...budgetNames(budget, head),
      limitNanoUsd: budget.limitNano,
      spentNanoUsd: spent,
      reservedNanoUsd: reserved,
      creditNanoUsd: credit,
      remainingNanoUsd: remaining,
      limitUsd: nanoToUsd(budget.limitNano),
      spentUsd: nanoToUsd(spent),
      reservedUsd: nanoToUsd(reserved),
      creditUsd: nanoToUsd(credit),
      remainingUsd: nanoToUsd(remaining),
      resetAt: new Date(resets[i]!).toISOString(),
      softLimit: budget.softLimit ?? null,
      thresholds: [...budget.thresholds],
      softLimitReached: threshold !== undefined && beyondCredit > 0 && beyondCredit >= threshold,
      forecastNanoUsd: forecast,
      forecastUsd: forecast === null ? null : nanoToUsd(forecast),
      inForce: inForceAt(budget, now),
      ...(Number.isFinite(budget.validFrom) ? { validFrom: new Date(budget.validFrom).toISOString() } : {}),
      ...(Number.isFinite(budget.validUntil) ? { validUntil: new Date(budget.validUntil).toISOString() } : {}),
    };
  });
}

/**
 * A calendar budget's projected spend at its period's end (null for a rolling one, or before a rate is known), and
 * `budget.forecast` when it passes the limit plus credit.
 */
function forecastSpend(
  book: BudgetBook,
  window: BudgetWindow,
  usage: { spent: number; reserved: number; credit: number },
  now: number,
): number | null {
  const { budget, head } = window;
  if (budget.period === 'rolling' || budget.limitNano <= 0) return null;
  const { start } = periodWindow(budget.period, now, budget.timezone);
  const forecast = book.forecaster.forecast({ key: head.key, ...usage, now, start, end: head.expiresAt });
  if (forecast !== null && forecast > budget.limitNano + usage.credit)
    book.monitor.forecastOver(window, usage.spent, forecast, now);
  return forecast;
}

export async function selectBudgets(book: BudgetBook, selector?: BudgetSelector): Promise<ResolvedBudget[]> {
  return selector ? book.plan.select(selector) : book.plan.configuredWithKeys();
}

/**
 * Credits `usd` to the budget's current period: its credit grows by the whole amount and its spent stays what was
 * spent, so it may hold and spend limit + credit until the period ends (credit does not carry into the next period).
 * A rolling budget is credited in every window that holds the current bucket, so the credit lasts as long as the
 * spend it offsets. With a credit journal, the top-up is journaled first and the store raised to the journal's figure.
 */
export async function topUpBudgets(book: BudgetBook, budgets: ResolvedBudget[], usd: number): Promise<void> {
  const credit = usdToNano(usd);
  const now = book.now();
  const windows = budgets.map((budget) => budgetWindow(budget, now));
  const scopes = windows.flatMap((window) => window.scopes);
  if (book.credits) await giveJournaledCredit(book, book.credits, scopes, credit);
  else
    await withTimeout(
      Promise.all(scopes.map((s) => book.ledger.addCredit(s, credit, s.expiresAt))),
      book.storeTimeoutMs,
      'ledger.addCredit',
    );
  await Promise.all(
    windows.map(async (window) => {
      const [head] = await withTimeout(book.ledger.usage([window.head]), book.storeTimeoutMs, 'ledger.usage');
      // Back under a threshold (or the limit) with the credit: the next crossing in this period is news again.
      const spent = head ? spentBeyondCredit(head) : 0;
      const markers = [...window.thresholdMarkers, window.exhaustedMarker].filter((marker) => spent < marker.at);
      // The credit lifts the line the forecast is held to: still over it after the top-up is news again.
      await forgetMarkers(book, [...markers, window.forecastMarker]);
    }),
  );
}

/** Forgets the budget's spend in the current period (live reservations stay) and re-arms its soft limit. */
export async function resetBudgets(book: BudgetBook, budgets: ResolvedBudget[]): Promise<void> {
  const now = book.now();
  if (book.credits)
    await journalReset(
      book,
      book.credits,
      budgets.flatMap((budget) => budgetWindow(budget, now).scopes),
    );
  await Promise.all(
    budgets.map(async (budget) => {
      const window = budgetWindow(budget, now);
      await withTimeout(
        Promise.all(window.scopes.map((s) => book.ledger.resetScope(s))),
        book.storeTimeoutMs,
        'ledger.resetScope',
      );
      book.forecaster.forget(window.head.key);
      await forgetMarkers(book, [...window.thresholdMarkers, window.exhaustedMarker, window.forecastMarker]);
    }),
  );
}

async function forgetMarkers(book: BudgetBook, markers: readonly EventMarker[]): Promise<void> {
  await Promise.all(
    markers.map(async ({ scope }) => {
      await withTimeout(book.ledger.resetScope(scope), book.storeTimeoutMs, 'ledger.resetScope');
      book.monitor.forget(scope.key);
    }),
  );
}
