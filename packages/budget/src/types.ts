// The public vocabulary of budgets: limits as configured, specs from code, events and the operator view.
import type { CalendarPeriod } from '@tollgate/core/options';

/**
 * `hour`, `day`, `week` (ISO, from Monday), `month` and `quarter` are calendar periods in the guard's `timezone`;
 * `rolling` is a sliding window (see `window`).
 */
export type BudgetPeriod = CalendarPeriod | 'rolling';

/**
 * What a budget is charged to. `global` has no id. A `user` budget is one user's everywhere, or, with a
 * tenant (`tenantUsers`), one end user's within that tenant; a `model` budget is one model's within a tenant; a
 * `session` budget is one agent session's within its tenant (`sessionBudgets`); a `team` budget is one team's within its
 * tenant, a `member` budget one member's (an end user, `user:<id>`, or a key, `key:<id>`) within a team (`teamBudgets`).
 */
export type BudgetScope = 'key' | 'user' | 'tenant' | 'feature' | 'model' | 'session' | 'team' | 'member' | 'global';

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
  /**
   * Fractions of the limit (each 0 < x <= 1) at which `budget.threshold` fires, once each per period;
   * one fraction or a list (`[0.5, 0.8, 0.95]`). Overrides the guard's.
   */
  softLimit?: number | readonly number[];
  /** Model downgrades applied once this scope is past its (lowest) soft limit; overrides the guard's. */
  downgrade?: Record<string, string>;
  /**
   * ISO 8601 instant the budget holds from: before it, it is neither enforced nor reserved against.
   * @default always
   */
  validFrom?: string;
  /**
   * ISO 8601 instant the budget holds until (exclusive): from it on, it is neither enforced nor reserved against.
   * @default always
   */
  validUntil?: string;
}

/** One budget, or several that all hold at once (`[{ "usd": 10, "period": "day" }, { "usd": 200, "period": "month" }]`). */
export type BudgetLimits = BudgetLimit | readonly BudgetLimit[];

/** A budget from code: a limit plus the scope and id it applies to. */
export interface BudgetSpec extends BudgetLimit {
  scope: BudgetScope;
  /** The key, user, tenant or feature id; omitted for `global`. */
  id?: string;
}

/** What every budget event says about the budget: the JSON body POSTed to the webhook carries it. */
interface BudgetEventBase {
  /** Unique per event, so a webhook receiver can drop duplicates of a retried delivery. */
  eventId: string;
  /** ISO 8601 time it was seen. */
  timestamp: string;
  scope: BudgetScope;
  id: string | null;
  /** The tenant whose end user or model budget this is; null for the other scopes. */
  tenantId: string | null;
  /** The team of a member's budget (absent for the other scopes). */
  teamId?: string;
  period: BudgetPeriod;
  /** The ledger scope key (with its period suffix): one event of a kind per key (and threshold). */
  key: string;
  limitNanoUsd: number;
  spentNanoUsd: number;
  limitUsd: number;
  spentUsd: number;
  /** ISO 8601: when the period ends (rolling: when the oldest spend starts to age out). */
  resetAt: string;
}

/** A budget passed one of its soft-limit thresholds: sent once per threshold and period, across processes. */
export interface BudgetThresholdEvent extends BudgetEventBase {
  type: 'budget.threshold';
  /** The fraction of the limit passed. */
  threshold: number;
  /** The same fraction, under its name from before thresholds came in lists. */
  softLimit: number;
}

/** A budget ran out: a request was refused because its money is spent (or a settle took it to its limit). Once per period. */
export interface BudgetExhaustedEvent extends BudgetEventBase {
  type: 'budget.exhausted';
}

/**
 * A budget is on course to pass its limit (plus top-up credit) before its period ends, at its recent rate of spend:
 * once per period, across processes. Calendar periods only (a rolling budget has no end to project to).
 */
export interface BudgetForecastEvent extends BudgetEventBase {
  type: 'budget.forecast';
  /** The spend projected at the period's end (see `BudgetStatus.forecastNanoUsd`). */
  forecastNanoUsd: number;
  forecastUsd: number;
}

/** A scope's figures as a drift reading found them (nano-USD; see spend-drift.ts). */
export interface DriftFigures {
  /** The store's counter: settled spend in the period. */
  spentNanoUsd: number;
  /** Held in the store by live reservations: the calls in flight. */
  reservedNanoUsd: number;
  /** What the usage ledger holds for the scope and period. */
  ledgerNanoUsd: number;
  /**
   * How far the counter is from the ledger beyond what holds explain: spent − ledger when the counter is above the
   * ledger; spent + reserved − ledger (below 0) when even the holds do not reach it; 0 between.
   */
  driftNanoUsd: number;
}

/** A scope's counter drifted from the usage ledger past the configured bound (either way). */
export interface BudgetDriftEvent extends BudgetEventBase, DriftFigures {
  type: 'budget.drift';
  driftUsd: number;
  /** The bound it passed (`budgetDrift.alertUsd`). */
  boundNanoUsd: number;
}

export type BudgetEvent = BudgetThresholdEvent | BudgetExhaustedEvent | BudgetForecastEvent | BudgetDriftEvent;

/** The threshold event under its name from before `budget.exhausted` came in. */
export type SoftLimitEvent = BudgetThresholdEvent;

/** One scope as operators see it. Amounts in nano-USD, with USD twins for display. */
export interface BudgetStatus {
  scope: BudgetScope;
  id: string | null;
  /** The tenant whose end user or model budget this is; null for the other scopes. */
  tenantId: string | null;
  /** The team of a member's budget (absent for the other scopes). */
  teamId?: string;
  period: BudgetPeriod;
  /** The ledger scope key for the current period (rolling: the window ending now). */
  key: string;
  limitNanoUsd: number;
  /** What the period spent: a top-up never lowers it. */
  spentNanoUsd: number;
  reservedNanoUsd: number;
  /** What top-ups added in this period: the budget may hold and spend limit + credit. */
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
  /** The lowest soft-limit threshold (the one downgrades start at), or null. */
  softLimit: number | null;
  /** Every soft-limit threshold, ascending. */
  thresholds: number[];
  softLimitReached: boolean;
  /**
   * Spend projected at the period's end: spent + reserved + the rate of the last hour (a quarter of a shorter
   * period) × the time left. Null until this process has samples 5 minutes apart, and for rolling budgets.
   */
  forecastNanoUsd: number | null;
  forecastUsd: number | null;
  /** False before its `validFrom` and from its `validUntil` on: then it is neither enforced nor reserved against. */
  inForce: boolean;
  /** ISO 8601, when the budget has a `validFrom`. */
  validFrom?: string;
  /** ISO 8601, when the budget has a `validUntil`. */
  validUntil?: string;
}

/** Picks scopes for the operator view and calls. */
export interface BudgetSelector {
  scope: BudgetScope;
  /** Required except for `global`, and for `model` with a `tenant`: then every model budget configured for it. */
  id?: string;
  /**
   * The tenant of an end user's budget (`tenantUsers`), a model budget (required for `model`) or a session's (one of
   * `tenant` and `key` required for `session`).
   */
  tenant?: string;
  /** The key of a session budget whose caller has no tenant (the session belongs to the key). */
  key?: string;
  /** The team of a member's budget (required, with `tenant`, for `member`; the id is `user:<id>` or `key:<id>`). */
  team?: string;
}
