// Moving a running request's reservation to the price of the model it now runs with: the new one held before the old is let go.
import type { Request } from 'express';
import { withTimeout } from '@tollgate/core/store-contracts';
import { priceAtCall } from '@tollgate/core/costs';
import type { TollgateContext } from '@tollgate/core';
import type { ReserveResult } from '@tollgate/core/store-contracts';
import { headroomOf } from './budget-hold.js';
import type { BudgetHold } from './budget-hold.js';
import type { BudgetReservations } from './budget-reservations.js';
import { clampOutput, fullAnswerCost, smallestAnswerCost } from './reservation-cost.js';

/**
 * Re-prices `hold` for the model of the request's estimate. False, the old reservation kept, when
 * the budgets cannot cover the new price, the ledger fails or the request has settled meanwhile.
 */
export async function repriceHold(
  req: Request,
  ctx: TollgateContext,
  hold: BudgetHold,
  reservations: BudgetReservations,
): Promise<boolean> {
  const { config, calls, margins } = reservations;
  const estimate = ctx.estimate;
  if (!estimate || ctx.settled) return false;
  const found = config.pricing.forRequest(ctx).find(estimate.model);
  if (!found) return false;
  if (found.model === hold.model) return true;
  const input = margins.reservedInput(estimate, found.model);
  const price = priceAtCall(found, input.reserved, ctx.call);
  const amount = fullAnswerCost(estimate, input.reserved, price);
  const minAmount = Math.min(amount, smallestAnswerCost(estimate, input.reserved, price, config.minOutputTokens));
  const id = calls.reservationId(ctx);
  // Another model has other budgets within its tenant: the new reservation is charged to the new model's.
  const { windows, scopes } = reservations.windowsForModel(hold.budgets, hold.tenantId, estimate.model);
  // The new price is held before the old is let go: never a moment with the request unbudgeted.
  const reserving = calls.ledger.reserve({
    id,
    amount,
    minAmount: minAmount < amount ? minAmount : undefined,
    scopes,
    ttlMs: config.reservationTtlMs,
  });
  let result: ReserveResult;
  try {
    result = await withTimeout(reserving, calls.timeoutMs, 'ledger.reserve');
  } catch (error) {
    calls.releaseLateGrant(reserving, id);
    calls.reportFailure(error);
    return false;
  }
  if (!result.ok) return false;
  if (ctx.settled) {
    // The request settled (its old reservation with it) while this one was taken: it is owed nothing.
    await calls.release(id);
    return false;
  }
  const previous = hold.id;
  // Taken while the old hold still held: what is left once that one is let go.
  const headroom = headroomOf(result);
  hold.remaining = headroom === undefined ? undefined : headroom + hold.granted;
  hold.id = id;
  hold.granted = result.amount;
  hold.model = price.model;
  hold.scopes = scopes;
  hold.windows = windows;
  hold.inputBound = input.bound;
  hold.outputMicro = price.outputMicro;
  const note = ctx.reservations.find((reservation) => reservation.kind === 'budget' && reservation.id === previous);
  if (note) {
    note.id = id;
    note.amount = result.amount;
    if (hold.remaining === undefined) delete note.remaining;
    else note.remaining = hold.remaining;
  }
  if (result.amount < amount) clampOutput(req, estimate, input.reserved, price, result.amount);
  await calls.release(previous);
  return true;
}
