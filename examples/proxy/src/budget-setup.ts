// Budgets from the config: per key (`keys[].budget`), per tenant (`tenants.*.budget` + `downgrade`) and global.
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetLimit } from '@tollgate/budget';
import { refusalRenderer } from '@tollgate/core';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { ProxyConfig } from './config.js';

export function createBudgetGuard(config: ProxyConfig, stores: TollgateStores, pricing: Pricing, log: (line: string) => void): BudgetGuard {
  const keys: Record<string, BudgetLimit> = {};
  for (const key of config.keys ?? []) if (key.budget) keys[key.id] = { ...key.budget };
  const tenants: Record<string, BudgetLimit> = {};
  for (const [name, tenant] of Object.entries(config.tenants ?? {})) {
    // A tenant's downgrade map applies once one of its budgets passes its soft limit.
    if (tenant.budget) tenants[name] = { ...tenant.budget, ...(tenant.downgrade ? { downgrade: tenant.downgrade } : {}) };
  }
  const global = config.global?.budget;
  return budgetGuard({
    ledger: stores.ledger,
    pricing,
    keys,
    tenants,
    ...(global ? { global: { ...global } } : {}),
    log: (event) => log(JSON.stringify(event)),
    // Its 503 (the ledger failed) names the budget, not just a store.
    renderError: refusalRenderer('budget'),
  });
}
