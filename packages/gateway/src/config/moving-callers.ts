// The config-taking forms of setup calls, for what runs a part from the whole config (reconcileBudgets, the MCP
// gateway's setup): each translates the config, then calls the part.
import type { RequestHandler } from 'express';
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { Queryable } from '@tollgate/metering';
import { createBudgetGuard as budgetGuardOf } from '../budget-setup.js';
import type { BudgetSetupHooks } from '../budget-setup.js';
import { toolCallLimitMiddleware as toolCallLimitsOf } from '../limits-setup.js';
import type { LimitScale, StoreFailureHandlers } from '../limits-setup.js';
import { rebuildFromLedger as rebuildFromLedgerAt } from '../spend-rebuild.js';
import { budgetOptions, ledgerTableOf } from './budget-options.js';
import { limitOptions } from './limit-options.js';
import type { ProxyConfig } from './schema.js';

export function createBudgetGuard(
  config: ProxyConfig,
  stores: TollgateStores,
  pricing: Pricing,
  log: (line: string) => void,
  hooks: BudgetSetupHooks = {},
): BudgetGuard {
  return budgetGuardOf(budgetOptions(config), stores, pricing, log, hooks);
}

export function rebuildFromLedger(config: ProxyConfig, guard: BudgetGuard, ledger: Queryable): Promise<RebuildReport> {
  return rebuildFromLedgerAt(ledgerTableOf(config), guard, ledger);
}

export function toolCallLimitMiddleware(
  config: ProxyConfig,
  stores: TollgateStores,
  storeFailures?: StoreFailureHandlers,
  limitScale?: LimitScale,
): RequestHandler[] {
  return toolCallLimitsOf(limitOptions(config), stores, storeFailures, limitScale);
}
