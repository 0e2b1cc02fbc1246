// Budgets from the config: per key, per tenant (with its end users, its models and `downgrade`), per feature and global.
import type { Request, Response } from 'express';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetLimit, BudgetLimits } from '@tollgate/budget';
import { refusalRenderer } from '@tollgate/core';
import type { Pricing, TollgateStores } from '@tollgate/core';
import { postgresCreditJournal } from '@tollgate/metering';
import type { Queryable } from '@tollgate/metering';
import type { BudgetsConfig, ProxyConfig } from './config/index.js';
import type { BudgetAlertHooks } from './guard-setup.js';
import { ledgerLocation } from './outcomes-route.js';

/** The config's one budget or list, as the guard takes it; `extra` joins the entries it suits. */
function limitsOf(budgets: BudgetsConfig, extra?: (budget: BudgetLimit) => Partial<BudgetLimit>): BudgetLimits {
  const list = Array.isArray(budgets) ? budgets : [budgets];
  const limits = list.map((budget: BudgetLimit) => ({ ...budget, ...extra?.(budget) }));
  return Array.isArray(budgets) ? limits : limits[0]!;
}

export interface BudgetSetupHooks {
  /** The guard's alert stream: budget events and ledger failures become events there instead of log lines. */
  alerts?: BudgetAlertHooks;
  /** A model budget is spent and the tenant has no downgrade for it: a model group's request moves to its next target. */
  onModelBudgetSpent?: (req: Request, res: Response, model: string) => boolean;
  /** The SQL usage ledger (PostgreSQL or a data directory's): top-ups are kept in its database (`<table>_credits`). */
  ledger?: Queryable | undefined;
}

export function createBudgetGuard(
  config: ProxyConfig,
  stores: TollgateStores,
  pricing: Pricing,
  log: (line: string) => void,
  { alerts, onModelBudgetSpent, ledger }: BudgetSetupHooks = {},
): BudgetGuard {
  const keys: Record<string, BudgetLimits> = {};
  for (const key of config.keys ?? []) if (key.budget) keys[key.id] = limitsOf(key.budget);
  const tenants: Record<string, BudgetLimits> = {};
  const tenantUsers: Record<string, BudgetLimits> = {};
  const modelBudgets: Record<string, Record<string, BudgetLimits>> = {};
  const modelDowngrades: Record<string, Record<string, string>> = {};
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    const downgrade = tenant.downgrade;
    // A tenant's downgrade map applies once one of its budgets passes its soft limit, and once a model budget is spent.
    if (tenant.budget)
      tenants[name] = limitsOf(tenant.budget, (budget) =>
        downgrade && budget.softLimit !== undefined ? { downgrade } : {},
      );
    if (tenant.userBudget) tenantUsers[name] = limitsOf(tenant.userBudget);
    if (tenant.modelBudgets) {
      modelBudgets[name] = {};
      for (const [model, budgets] of Object.entries(tenant.modelBudgets)) modelBudgets[name][model] = limitsOf(budgets);
      if (downgrade) modelDowngrades[name] = { ...downgrade };
    }
  }
  const features: Record<string, BudgetLimits> = {};
  for (const [name, feature] of Object.entries(config.features ?? {}))
    if (feature.budget) features[name] = limitsOf(feature.budget);
  const global = config.global?.budget;
  // Credit outlives the store only where the store can be raised to the journal's (memory and Redis can).
  const keepsCredit = ledger !== undefined && typeof stores.ledger.restoreCredit === 'function';
  return budgetGuard({
    ledger: stores.ledger,
    ...(keepsCredit ? { creditJournal: postgresCreditJournal(ledger, ledgerLocation(config)) } : {}),
    pricing,
    keys,
    tenants,
    tenantUsers,
    features,
    modelBudgets,
    modelDowngrades,
    ...(global ? { global: limitsOf(global) } : {}),
    ...(config.timezone ? { timezone: config.timezone } : {}),
    ...(onModelBudgetSpent ? { onModelBudgetSpent } : {}),
    ...(alerts ? { onEvent: alerts.onEvent } : { log: (event) => log(JSON.stringify(event)) }),
    // Its 503 (the ledger failed) names the budget, not just a store.
    renderError: alerts?.renderError ?? refusalRenderer('budget'),
  });
}
