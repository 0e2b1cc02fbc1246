// Why a budget refused a request, in words and headers: money spent until a reset, or money held by requests in flight.
import { ApiError, formatUsd } from '@tollgate/core';
import { spentBeyondCredit, withTimeout } from '@tollgate/core/store-contracts';
import type { ReservationLedger, ReserveResult } from '@tollgate/core/store-contracts';
import type { Ask, BudgetVerdict } from './budget-hold.js';
import type { BudgetWindow } from './budget-plan.js';
import { rollingFreeAt } from './budget-status.js';
import { budgetLabel } from './budget-limits.js';

/** Beyond this, a Retry-After would only invite a client to wait for weeks: the message says when instead. */
const MAX_RETRY_AFTER_MS = 3_600_000;
/** Retry-After of a refusal by money held in flight: requests settle within their answer's time. */
const HELD_RETRY_AFTER_S = 1;

/** A top-up's share of what a scope may spend, when it has one: " + $2.00 credit". */
function creditPhrase(credit: number): string {
  return credit > 0 ? ` + ${formatUsd(credit)} credit` : '';
}

/** What explaining a refusal reads: the ledger (a refusal is rare, so it may read), and the clock. */
export interface RefusalSources {
  readonly ledger: ReservationLedger;
  readonly storeTimeoutMs: number;
  readonly now: () => number;
  /** Told when a budget refused because its money is spent (not held): `budget.exhausted`. */
  readonly onExhausted: (window: BudgetWindow, spent: number) => void;
}

type Refused = Extract<ReserveResult, { ok: false }>;

/** `7d`, `24h`, `90m`, `45s`: the largest unit that divides the window. */
function formatWindow(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms / 1000}s`;
}

function describePeriod(window: BudgetWindow): string {
  const { budget } = window;
  return budget.period === 'rolling'
    ? `in its rolling ${formatWindow(budget.windowMs)} window`
    : `this ${budget.period}`;
}

/**
 * Why the reserve was refused: money spent (final, until the period resets), or money only held
 * by requests in flight that will settle (at their real cost, usually far below what they hold):
 * then the refusal says so and is retryable.
 */
async function explainRefusal(
  { ledger, storeTimeoutMs, now, onExhausted }: RefusalSources,
  windows: BudgetWindow[],
  result: Refused,
  needed: number,
): Promise<{ error: ApiError; held: boolean }> {
  const window = windows.find((w) => w.scopes.some((s) => s.key === result.scope));
  const label = window ? budgetLabel(window.budget) : result.scope;
  const period = window ? ` ${describePeriod(window)}` : '';
  // Read only on a refusal: the reserve's answer does not split what is left into spent and held.
  const refused = window?.scopes.find((s) => s.key === result.scope) ?? result.scope;
  const [balance] = await withTimeout(ledger.usage([refused]), storeTimeoutMs, 'ledger.usage').catch(() => []);
  if (balance && balance.reserved > 0 && spentBeyondCredit(balance) + needed <= result.limit) {
    const message = `Budget for ${label} is held by requests in flight: ${formatUsd(balance.reserved)} reserved and ${formatUsd(balance.spent)} of ${formatUsd(result.limit)}${creditPhrase(balance.credit)} spent${period}; the request needs at least ${formatUsd(needed)}, which frees up as they finish. Retry shortly.`;
    return {
      error: new ApiError('insufficient_quota', message, {
        headers: { 'retry-after': HELD_RETRY_AFTER_S, 'x-should-retry': 'true' },
      }),
      held: true,
    };
  }
  if (window) onExhausted(window, balance?.spent ?? result.limit - result.remaining);
  let resetMs = result.resetAt;
  if (window?.budget.period === 'rolling') {
    // The ledger names the end of the current bucket; the money comes back when the oldest spend ages out.
    resetMs = (await rollingFreeAt(ledger, window, storeTimeoutMs).catch(() => undefined)) ?? resetMs;
  }
  const resetAt = new Date(resetMs).toISOString();
  const when =
    window?.budget.period === 'rolling'
      ? `more frees up from ${resetAt} as older spend leaves the window`
      : `it resets at ${resetAt}`;
  const message = `Budget exhausted for ${label}: ${formatUsd(result.remaining)} of ${formatUsd(result.limit)} left${period}, the request needs at least ${formatUsd(needed)}; ${when}.`;
  const waitMs = resetMs - now();
  const headers: Record<string, number> = {};
  if (waitMs > 0 && waitMs <= MAX_RETRY_AFTER_MS) headers['retry-after'] = Math.ceil(waitMs / 1000);
  return { error: new ApiError('insufficient_quota', message, { headers }), held: false };
}

/**
 * A budget refused and the request goes on another way (a model budget's downgrade): when its money
 * is spent, not merely held by requests in flight, that is `budget.exhausted` still.
 */
export async function noteExhausted(
  { ledger, storeTimeoutMs, onExhausted }: RefusalSources,
  window: BudgetWindow,
  result: Refused,
  needed: number,
): Promise<void> {
  const refused = window.scopes.find((s) => s.key === result.scope) ?? window.head;
  const [balance] = await withTimeout(ledger.usage([refused]), storeTimeoutMs, 'ledger.usage').catch(() => []);
  if (!balance || spentBeyondCredit(balance) + needed > result.limit)
    onExhausted(window, balance?.spent ?? result.limit);
}

/** The verdict on a refused reserve, explained; money held by requests in flight comes back when they settle: a wait queue may wait for it. */
export async function refusalVerdict(sources: RefusalSources, ask: Ask, result: Refused): Promise<BudgetVerdict> {
  const { error: denial, held } = await explainRefusal(sources, ask.windows, result, ask.minAmount);
  const retryAfter = denial.headers['retry-after'];
  return {
    kind: 'denied',
    value: denial,
    retryAfterMs: typeof retryAfter === 'number' ? retryAfter * 1000 : Math.max(0, result.resetAt - sources.now()),
    final: !held,
    code: denial.code,
  };
}
