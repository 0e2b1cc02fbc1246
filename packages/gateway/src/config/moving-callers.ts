// The config-taking forms of setup calls, for what runs a part from the whole config (reconcileBudgets): each
// translates the config, then calls the part.
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { Queryable } from '@tollgate/metering';
import { createBudgetGuard as budgetGuardOf } from '../budget-setup.js';
import type { BudgetSetupHooks } from '../budget-setup.js';
import { rebuildFromLedger as rebuildFromLedgerAt } from '../spend-rebuild.js';
import { budgetOptions, ledgerTableOf } from './budget-options.js';
import type { GatewayConfig } from './schema.js';

export function createBudgetGuard(
  config: GatewayConfig,
  stores: TollgateStores,
  pricing: Pricing,
  log: (line: string) => void,
  hooks: BudgetSetupHooks = {},
): BudgetGuard {
  return budgetGuardOf(budgetOptions(config), stores, pricing, log, hooks);
}

export function rebuildFromLedger(
  config: GatewayConfig,
  guard: BudgetGuard,
  ledger: Queryable,
): Promise<RebuildReport> {
  return rebuildFromLedgerAt(ledgerTableOf(config), guard, ledger);
}
