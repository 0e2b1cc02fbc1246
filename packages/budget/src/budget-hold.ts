// What the guard holds for a request between its reserve and its settle, and the verdict that grants it.
import type { ApiError } from '@tollgate/core';
import { scopeRemaining } from '@tollgate/core/store-contracts';
import type { CheckVerdict } from '@tollgate/core/checks';
import type { LedgerScope, ReserveRequest, ReserveResult } from '@tollgate/core/store-contracts';
import type { ResolvedPrice } from '@tollgate/core/costs';
import type { BudgetWindow, ResolvedBudget } from './budget-plan.js';

/** A reservation held for one request, settled when the request settles. */
declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The holds of the budget guards the request passed, each with the guard's mark (`reprice` finds its own). */
    'budget.holds': { guard: symbol; hold: BudgetHold }[];
    /** The ledger's failure behind a 503, for its `cause`. */
    'budget.storeError': unknown;
  }
}

export interface BudgetHold {
  id: string;
  granted: number;
  scopes: LedgerScope[];
  windows: BudgetWindow[];
  /** The caller's budgets but for its model's: a re-price to another model adds that model's to them. */
  budgets: readonly ResolvedBudget[];
  tenantId: string | undefined;
  /** The priced model (family id) and the input bound reserved for it, before any learned margin. */
  model: string;
  inputBound: number;
  /** The output price it was reserved at (micro-USD per 1M tokens): more output is held at the same price. */
  outputMicro: number;
  /**
   * A request a shadow let through (`shadowMode` in core): nothing is reserved, and the settle adds its real cost to
   * every scope's spend, past the limit if it goes there. Absent: a reservation.
   */
  overLimit?: true;
  /** What the tightest of its scopes had left with this hold granted (`headroomOf`); undefined: not reported. */
  remaining: number | undefined;
  /** The reservations that extended it as its stream ran past what was held (`extendHold`): id and amount held. */
  extensions?: { id: string; amount: number }[];
  /** What those extensions hold, nano-USD. */
  extended?: number;
  /** Its settle ran: an extension granted after it is released at once. */
  settled?: boolean;
}

/**
 * The least any scope of a reserve had left with its grant held (limit - spent - reserved, credit included), from
 * the balances the reserve reported; undefined when it reported none (a ledger that does not, a repeated id).
 */
export function headroomOf(result: ReserveResult): number | undefined {
  if (!result.ok || result.scopes === undefined || result.scopes.length === 0) return undefined;
  let least = Number.POSITIVE_INFINITY;
  for (const scope of result.scopes) least = Math.min(least, scopeRemaining(scope));
  return least;
}

export type BudgetVerdict = CheckVerdict<BudgetHold | undefined, ApiError>;

/** Input tokens reserved: the estimate's provable bound, and that times the model's learned margin. */
export interface ReservedInput {
  bound: number;
  reserved: number;
}

/** A reserve about to be asked for, with what judging its answer needs. */
export interface Ask {
  request: ReserveRequest;
  windows: BudgetWindow[];
  /** The caller's budgets but for its model's (see BudgetHold). */
  budgets: readonly ResolvedBudget[];
  price: ResolvedPrice | undefined;
  /** The least grant the request can run with: what a refusal says it needs. */
  minAmount: number;
  input: ReservedInput;
}
