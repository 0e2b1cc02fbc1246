// Budgets in budgetGuard: per key, per tenant (its end users, models, sessions, `downgrade`), per feature and global.
import type { Request, Response } from 'express';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetGuardOptions, BudgetSpec } from '@tollgate/budget';
import { refusalRenderer } from '@tollgate/core';
import type { Identity, Pricing, TollgateStores } from '@tollgate/core';
import { keyBudgetOf } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { postgresCreditJournal } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import type { BudgetAlertHooks } from './guard-setup.js';

/** The budgets as budgetGuard takes them, and where the ledger's table is (top-ups are kept beside it). */
export type BudgetOptions = Pick<
  BudgetGuardOptions,
  | 'tenants'
  | 'tenantUsers'
  | 'features'
  | 'modelBudgets'
  | 'modelDowngrades'
  | 'sessionBudgets'
  | 'teamBudgets'
  | 'global'
  | 'timezone'
> & { ledgerTable: LedgerLocation };

export interface BudgetSetupHooks {
  /** The guard's alert stream: budget events and ledger failures become events there instead of log lines. */
  alerts?: BudgetAlertHooks;
  /** A model budget is spent and the tenant has no downgrade for it: a model group's request moves to its next target. */
  onModelBudgetSpent?: (req: Request, res: Response, model: string) => boolean;
  /** The SQL usage ledger (PostgreSQL or a data directory's): top-ups are kept in its database (`<table>_credits`). */
  ledger?: Queryable | undefined;
  /** The record of a key by id, where the gateway keeps keys: its budget is part of it (keyBudgetOf). */
  findKey?: (id: string) => Promise<ApiKeyRecord | undefined>;
  /** The key records the gateway serves that carry a budget: listed and rebuilt with the configured budgets. */
  listBudgetedKeys?: () => Promise<ApiKeyRecord[]>;
  /** The budgets of the caller's tenant when it is a stored one (the config file's are `options.tenants`). */
  tenantBudgets?: (identity: Identity) => BudgetSpec[];
}

export function createBudgetGuard(
  options: BudgetOptions,
  stores: TollgateStores,
  pricing: Pricing,
  log: (line: string) => void,
  { alerts, onModelBudgetSpent, ledger, findKey, listBudgetedKeys, tenantBudgets }: BudgetSetupHooks = {},
): BudgetGuard {
  const { ledgerTable, ...budgets } = options;
  // Credit outlives the store only where the store can be raised to the journal's (memory and Redis can).
  const keepsCredit = ledger !== undefined && typeof stores.ledger.restoreCredit === 'function';
  return budgetGuard({
    ledger: stores.ledger,
    ...(keepsCredit ? { creditJournal: postgresCreditJournal(ledger, ledgerTable) } : {}),
    pricing,
    ...budgets,
    // A request carries its key's budget on its identity; the operator's calls and a rebuild find it by key id.
    ...(findKey ? { keyBudgets: async (id: string) => keyBudgetOf(await findKey(id)) } : {}),
    ...(listBudgetedKeys
      ? { allKeyBudgets: async () => (await listBudgetedKeys()).flatMap((record) => keyBudgetOf(record) ?? []) }
      : {}),
    // A stored tenant's budgets, read on each request: a change applies from the next one. They are decided by the
    // tenant alone: a rebuild sums the usage ledger by tenant (and what the static budgets decide by), from rollups.
    ...(tenantBudgets ? { budgets: tenantBudgets, budgetsDecideBy: ['tenantId' as const] } : {}),
    ...(onModelBudgetSpent ? { onModelBudgetSpent } : {}),
    ...(alerts ? { onEvent: alerts.onEvent } : { log: (event) => log(JSON.stringify(event)) }),
    // Its 503 (the ledger failed) names the budget, not just a store.
    renderError: alerts?.renderError ?? refusalRenderer('budget'),
  });
}
