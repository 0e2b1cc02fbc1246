// Rebuilding budget spend from a usage ledger when the store lost it (Redis restarted without persistence, a wiped key).
import { periodWindow, TollgateError } from '@tollgate/core';
import { isCalendarPeriod, withTimeout } from '@tollgate/core/kit';
import { budgetWindow } from './budget-plan.js';
import type { ResolvedBudget } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';
import type { BudgetScope } from './types.js';

/** One question to a usage ledger: what did this scope's id spend in [since, until)? */
export interface SpendQuery {
  scope: BudgetScope;
  /** The key, user, tenant or feature id; null for `global`. */
  id: string | null;
  /** Epoch ms, inclusive. */
  since: number;
  /** Epoch ms, exclusive. */
  until: number;
}

/** Where spend is recorded durably (`postgresSpendSource` from @tollgate/metering is one). */
export interface SpendSource {
  /** Nano-USD recorded for the query. */
  spent(query: SpendQuery): Promise<number>;
  /** Ids of `scope` with spend recorded since `since`: budgets given by `'*'` or by code have no fixed id to ask for. */
  idsWithSpend(scope: Exclude<BudgetScope, 'global'>, since: number): Promise<string[]>;
}

export interface RebuildReport {
  /** Ledger scopes asked about. */
  checked: number;
  /** Scopes whose spend was below the usage ledger's, raised to it. */
  restored: { key: string; spentNanoUsd: number }[];
}

const ID_SCOPES: Exclude<BudgetScope, 'global'>[] = ['key', 'user', 'tenant', 'feature'];

/** When spend for the scope's window started counting: its calendar period's start, or its rolling window's. */
function sinceOf(budget: ResolvedBudget, expiresAt: number, now: number): number {
  if (isCalendarPeriod(budget.period)) return periodWindow(budget.period, now, budget.timezone).start;
  return expiresAt - budget.windowMs;
}

/**
 * Raises every budget scope's spend to what `source` recorded for it (its top-up credit, kept apart, is left as it
 * is): the budgets with a fixed id, and those of every id with recorded spend
 * (wildcards, budgets from code). A store that lost its data while traffic went on holds only the
 * spend since; one that lost nothing is at or above the usage ledger (which lags by its batching)
 * and is left alone. Live reservations are not in a usage ledger; they settle as usual.
 */
export async function rebuildSpend(book: BudgetBook, source: SpendSource): Promise<RebuildReport> {
  const { ledger } = book;
  if (typeof ledger.restoreSpent !== 'function') {
    throw new TollgateError(
      'ERR_TG_BUDGET_NO_RESTORE',
      'this ledger cannot restore spend (it has no restoreSpent()); use the memory or Redis ledger',
    );
  }
  const now = book.now();
  const budgets = new Map<string, ResolvedBudget>();
  // A tenant's end users and models are not among the usage ledger's questions (it answers one scope and id).
  for (const budget of book.plan.configured()) if (budget.tenantId === null) budgets.set(budget.base, budget);
  // The oldest start any budget counts from: every period is at most a quarter, a rolling window any length.
  let earliest = now;
  for (const budget of budgets.values())
    earliest = Math.min(earliest, sinceOf(budget, budgetWindow(budget, now).head.expiresAt, now));
  earliest = Math.min(earliest, periodWindow('quarter', now, book.plan.timezone).start);
  for (const scope of ID_SCOPES) {
    for (const id of await source.idsWithSpend(scope, earliest)) {
      for (const budget of await book.plan.select({ scope, id })) budgets.set(budget.base, budget);
    }
  }
  const report: RebuildReport = { checked: 0, restored: [] };
  for (const budget of budgets.values()) {
    for (const scope of budgetWindow(budget, now).scopes) {
      report.checked++;
      const spent = await source.spent({
        scope: budget.scope,
        id: budget.id,
        since: sinceOf(budget, scope.expiresAt, now),
        until: now + 1,
      });
      if (spent <= 0) continue;
      if (
        await withTimeout(
          ledger.restoreSpent(scope, spent, scope.expiresAt),
          book.storeTimeoutMs,
          'ledger.restoreSpent',
        )
      ) {
        report.restored.push({ key: scope.key, spentNanoUsd: spent });
      }
    }
  }
  return report;
}
