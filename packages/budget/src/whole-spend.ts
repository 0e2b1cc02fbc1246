// Work that outlives its request (a Batch job): admitted whole against every budget and charged as spent at once,
// then corrected down to its real cost when it ends, from any process (docs/batch.md).
import { ApiError, formatUsd } from '@tollgate/core';
import type { Identity } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { LedgerScope } from '@tollgate/core/store-contracts';
import { budgetWindowsAt } from './budget-plan.js';
import type { BudgetBook } from './budget-status.js';

/** A correction that lost the race to a settle landing meanwhile is read and tried again this many times. */
const CORRECTION_TRIES = 8;
/** How long a correction waits for the charge it corrects to land, between tries. */
const LANDING_WAIT_MS = 250;

/** What an admission charged: the scopes, for the correction at the end. */
export type WholeSpend = { ok: true; scopes: LedgerScope[] } | { ok: false; error: ApiError };

/** The ledger scopes a caller's calls to `models` are charged to, each once. */
async function scopesFor(book: BudgetBook, identity: Identity, models: readonly string[]): Promise<LedgerScope[]> {
  const budgets = (await Promise.all(models.map((model) => book.plan.forCall(identity, model)))).flat();
  const scopes = new Map<string, LedgerScope>();
  for (const scope of budgetWindowsAt(budgets, book.now()).scopes) scopes.set(scope.key, scope);
  return [...scopes.values()];
}

/**
 * Charges `amount` to every budget of `identity`'s calls to `models`, all or nothing: a reserve (refused with the
 * scope that cannot hold it), then settled whole at once, so no reservation has to outlive a TTL or its process.
 * Refused: `insufficient_quota`, nothing charged.
 */
export async function spendWhole(
  book: BudgetBook,
  identity: Identity,
  models: readonly string[],
  id: string,
  amount: number,
): Promise<WholeSpend> {
  const scopes = await scopesFor(book, identity, models);
  if (scopes.length === 0) return { ok: true, scopes };
  const request = { id, amount, scopes, ttlMs: book.reservationTtlMs };
  const result = await withTimeout(book.ledger.reserve(request), book.storeTimeoutMs, 'ledger.reserve');
  if (!result.ok) {
    const message =
      `Budget ${result.scope} cannot hold this batch at its worst case: it needs ${formatUsd(amount)} and ` +
      `${formatUsd(result.remaining)} is left until ${new Date(result.resetAt).toISOString()}.`;
    return {
      ok: false,
      error: new ApiError('insufficient_quota', message, { headers: { 'x-should-retry': 'false' } }),
    };
  }
  await withTimeout(book.ledger.settle(id, amount), book.storeTimeoutMs, 'ledger.settle');
  return { ok: true, scopes };
}

/**
 * Gives back `refund` (what the work was charged beyond its real cost) to each of `scopes`' spend, by compare and set
 * so that a settle landing meanwhile is never lost. Resolves false when the ledger cannot lower a spend (no
 * `correctSpent`) or the race was lost every time: the charge then stays, never below the real cost. A negative
 * refund (the work cost more than its worst case) is charged on top.
 */
export async function refundSpend(book: BudgetBook, scopes: readonly LedgerScope[], refund: number): Promise<boolean> {
  const { ledger } = book;
  if (refund < 0) {
    for (const scope of scopes)
      await withTimeout(ledger.adjustSpent(scope, -refund, scope.expiresAt), book.storeTimeoutMs, 'ledger.adjustSpent');
    return true;
  }
  if (refund === 0 || scopes.length === 0) return true;
  if (!ledger.correctSpent) return false;
  let all = true;
  for (const scope of scopes) {
    let done = false;
    for (let tries = 0; tries < CORRECTION_TRIES && !done; tries++) {
      const [usage] = await withTimeout(ledger.usage([scope]), book.storeTimeoutMs, 'ledger.usage');
      const from = usage?.spent ?? 0;
      // Less spent than the charge being corrected: the charge has not landed yet (a block of another process
      // sends it later), so the correction waits for it rather than lose what it gives back below zero.
      if (from < refund && tries < CORRECTION_TRIES - 1) {
        await new Promise((resolve) => setTimeout(resolve, LANDING_WAIT_MS));
        continue;
      }
      const to = Math.max(0, from - refund);
      const corrected = await withTimeout(
        ledger.correctSpent(scope, from, to, scope.expiresAt),
        book.storeTimeoutMs,
        'ledger.correctSpent',
      );
      done = corrected.before === from;
    }
    all &&= done;
  }
  return all;
}
