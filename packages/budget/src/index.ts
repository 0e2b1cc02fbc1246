// @tollgate/budget: USD budgets reserved before the provider call and settled after, with soft limits and downgrades.
export { budgetGuard, getBudgetStatus } from './budget-guard.js';
export type { BudgetGuard, BudgetGuardOptions } from './budget-guard.js';
export { budgetAdminRouter } from './admin-router.js';
export type { BudgetAdminRouterOptions } from './admin-router.js';
export type { WebhookOptions } from './webhook.js';
export type { CallerSpend, RebuildReport, RecordSpend, SpendSource } from './rebuild.js';
export type { CreditEntry, CreditJournal, CreditOperation, CreditScope, ScopeCredit } from './credit-journal.js';
export type { ModelBudgetOptions } from './model-budgets.js';
export type {
  BudgetEvent,
  BudgetExhaustedEvent,
  BudgetLimit,
  BudgetLimits,
  BudgetPeriod,
  BudgetScope,
  BudgetSelector,
  BudgetSpec,
  BudgetStatus,
  BudgetThresholdEvent,
  SoftLimitEvent,
} from './types.js';
