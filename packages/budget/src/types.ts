// The public vocabulary of budgets: limits as configured, specs from code, events and the operator view.
import type { CalendarPeriod } from '@tollgate/core/kit';

/**
 * `hour`, `day`, `week` (ISO, from Monday), `month` and `quarter` are calendar periods in the guard's `timezone`;
 * `rolling` is a sliding window (see `window`).
 */
export type BudgetPeriod = CalendarPeriod | 'rolling';

/** What a budget is charged to. `global` has no id. */
export type BudgetScope = 'key' | 'user' | 'tenant' | 'feature' | 'global';

/** One budget as configured (the proxy's `{ "usd": 100, "period": "month", "softLimit": 0.8 }`). */
export interface BudgetLimit {
  /** The most this scope may spend in one period, in USD (stored as nano-USD). */
  usd: number;
  /**
   * The period the limit applies to.
   * @default 'month'
   */
  period?: BudgetPeriod;
  /**
   * Rolling budgets only: the window length, in ms or as `"24h"`, `"7d"`.
   * @default '24h'
   */
  window?: number | string;
  /**
   * Rolling budgets only: how many buckets the window is cut into. The limit holds exactly
   * over any `buckets` consecutive buckets; more buckets = finer, but one ledger scope each.
   * @default 24
   */
  buckets?: number;
  /** Fraction of the limit (0 < x <= 1) at which `budget.soft_limit` fires; overrides the guard's. */
  softLimit?: number;
  /** Model downgrades applied once this scope is past its soft limit; overrides the guard's. */
  downgrade?: Record<string, string>;
}

/** A budget from code: a limit plus the scope and id it applies to. */
export interface BudgetSpec extends BudgetLimit {
  scope: BudgetScope;
  /** The key, user, tenant or feature id; omitted for `global`. */
  id?: string;
}

/** Payload of a `budget.soft_limit` event (also the JSON body POSTed to the webhook). */
export interface SoftLimitEvent {
  type: 'budget.soft_limit';
  /** Unique per event, so a webhook receiver can drop duplicates of a retried delivery. */
  eventId: string;
  /** ISO 8601 time the crossing was seen. */
  timestamp: string;
  scope: BudgetScope;
  id: string | null;
  period: BudgetPeriod;
  /** The ledger scope key (with its period suffix). */
  key: string;
  softLimit: number;
  limitNanoUsd: number;
  spentNanoUsd: number;
  limitUsd: number;
  spentUsd: number;
  /** ISO 8601: when the period ends (rolling: when the oldest spend starts to age out). */
  resetAt: string;
}

/** One scope as operators see it. Amounts in nano-USD, with USD twins for display. */
export interface BudgetStatus {
  scope: BudgetScope;
  id: string | null;
  period: BudgetPeriod;
  /** The ledger scope key for the current period (rolling: the window ending now). */
  key: string;
  limitNanoUsd: number;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  /** Top-up credit not spent yet in this period (what took the ledger's spent below zero). */
  creditNanoUsd: number;
  /** limit + credit - spent - reserved, never negative. */
  remainingNanoUsd: number;
  limitUsd: number;
  spentUsd: number;
  reservedUsd: number;
  creditUsd: number;
  remainingUsd: number;
  /** ISO 8601: when the period ends (rolling: when the oldest bucket leaves the window). */
  resetAt: string;
  softLimit: number | null;
  softLimitReached: boolean;
}

/** Picks scopes for the operator view and calls. */
export interface BudgetSelector {
  scope: BudgetScope;
  /** Required except for `global`. */
  id?: string;
}
