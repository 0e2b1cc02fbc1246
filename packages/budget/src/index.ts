// @tollgate/budget: USD budgets reserved before the provider call and settled after, with soft limits and downgrades.
export { budgetGuard, getBudgetStatus } from './budget-guard.js';
export type { BudgetGuard, BudgetGuardOptions } from './budget-guard.js';
export { budgetAdminRouter, budgetAuditTarget } from './admin-router.js';
export type { WebhookOptions } from './webhook.js';
export type { CallerFilter, RebuildReport, SpendSource } from './rebuild.js';
export type { CallerField } from './budget-plan.js';
export type { HeldReservation } from './held-reservations.js';
export type { DriftReading, DriftRepair, SpendDrift, SpendDriftOptions } from './spend-drift.js';
export type { WholeSpend } from './whole-spend.js';
export type { CreditJournal } from './credit-journal.js';
export type { SessionBudgetMaps } from './session-budgets.js';
export type { TeamBudgetOptions, TeamConfig, TeamMemberConfig } from './team-budgets.js';
export type {
  BudgetDriftEvent,
  BudgetEvent,
  BudgetForecastEvent,
  BudgetLimit,
  BudgetLimits,
  BudgetPeriod,
  BudgetScope,
  BudgetSelector,
  BudgetSpec,
  BudgetStatus,
  SoftLimitEvent,
} from './types.js';
