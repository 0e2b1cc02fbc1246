// Reservations held in a budget's scopes, with their age: what a call in flight (or a process that died) holds.
import { withTimeout } from '@tollgate/core/store-contracts';
import { budgetWindow } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';
import { selectBudgets } from './budget-status.js';
import type { BudgetSelector } from './types.js';

/** One hold of a budget scope, as the operator's view shows it. */
export interface HeldReservation {
  /** The ledger scope key it holds in. */
  key: string;
  amountNanoUsd: number;
  /** ISO 8601: when it is reaped if never settled (charged in full, as a call whose process died may have run). */
  expiresAt: string;
  /** How long it has been held: the reservation TTL less what is left of it (Redis: of its expiry bucket, a second). */
  ageMs: number;
  /** The reservation's id, where the store keeps each one (memory): the request id, then the guard that holds it. */
  id?: string;
  /** The budget guard (one per process) that reserved it, read from its id: `budget:<uuid>`. */
  owner?: string;
}

/** A guard's reservation ids: `<request id>:budget:<guard uuid>:<count>` (BudgetLedgerCalls.reservationId). */
const OWNER = /:(budget:[0-9a-f-]{36}):[0-9a-z]+$/;

/**
 * The holds of each scope of the selected budgets, soonest to be reaped first. A hold whose owner is gone (its process
 * died before it settled) is reaped when its TTL passes: the store charges it in full and drops it, so it leaves this
 * list then, its amount in spent (a drift the usage ledger shows, since no record of the call came).
 */
export async function heldReservations(book: BudgetBook, selector: BudgetSelector): Promise<HeldReservation[]> {
  const { ledger, storeTimeoutMs } = book;
  if (typeof ledger.holds !== 'function') throw new Error('this ledger cannot list its holds (it has no holds())');
  const now = book.now();
  const out: HeldReservation[] = [];
  for (const budget of await selectBudgets(book, selector))
    for (const scope of budgetWindow(budget, now).scopes)
      for (const hold of await withTimeout(ledger.holds(scope), storeTimeoutMs, 'ledger.holds')) {
        const owner = hold.id === undefined ? undefined : OWNER.exec(hold.id)?.[1];
        out.push({
          key: scope.key,
          amountNanoUsd: hold.amount,
          expiresAt: new Date(hold.expiresAt).toISOString(),
          ageMs: Math.max(0, book.reservationTtlMs - (hold.expiresAt - now)),
          ...(hold.id === undefined ? {} : { id: hold.id }),
          ...(owner === undefined ? {} : { owner }),
        });
      }
  return out;
}
