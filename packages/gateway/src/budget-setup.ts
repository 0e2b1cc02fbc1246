// Budgets from the config: per key (`keys[].budget`), per tenant (`tenants.*.budget` + `downgrade`) and global.
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetLimit } from '@tollgate/budget';
import { refusalRenderer } from '@tollgate/core';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { ProxyConfig } from './config.js';
import type { BudgetAlertHooks } from './guard-setup.js';

/** With `alerts` (the guard's stream), soft limits, spent budgets and ledger failures become events there instead of log lines. */
export function createBudgetGuard(
  config: ProxyConfig,
  stores: TollgateStores,
  pricing: Pricing,
  log: (line: string) => void,
  alerts?: BudgetAlertHooks,
): BudgetGuard {
  const keys: Record<string, BudgetLimit> = {};
  for (const key of config.keys ?? []) if (key.budget) keys[key.id] = { ...key.budget };
  const tenants: Record<string, BudgetLimit> = {};
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    // A tenant's downgrade map applies once one of its budgets passes its soft limit.
    if (tenant.budget)
      tenants[name] = { ...tenant.budget, ...(tenant.downgrade ? { downgrade: tenant.downgrade } : {}) };
  }
  const global = config.global?.budget;
  return budgetGuard({
    ledger: stores.ledger,
    pricing,
    keys,
    tenants,
    ...(global ? { global: { ...global } } : {}),
    ...(config.timezone ? { timezone: config.timezone } : {}),
    ...(alerts ? { onSoftLimit: alerts.onSoftLimit } : { log: (event) => log(JSON.stringify(event)) }),
    // Its 503 (the ledger failed) names the budget, not just a store.
    renderError: alerts?.renderError ?? refusalRenderer('budget'),
  });
}
