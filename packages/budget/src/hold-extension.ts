// A hold that follows its stream: more output reserved against the hold's own scopes, as reservations linked to it.
import { withTimeout } from '@tollgate/core/kit';
import type { ReserveResult } from '@tollgate/core/kit';
import type { BudgetHold } from './budget-hold.js';
import type { BudgetLedgerCalls } from './budget-ledger.js';
import type { ResolvedBudgetOptions } from './budget-options.js';

/*
 * An extension is a reserve of the ledger like any other (one engine: memory, Redis, Cluster, blocks and leases
 * answer it as they answer the request's own), against the hold's scopes, under an id of its own; the hold's settle
 * charges the real cost to its first reservation and releases the extensions in the same turn (one round trip).
 */

/** The output tokens `granted` nano-USD pays for at the hold's output price (every token when output is free). */
function tokensFor(granted: number, outputMicro: number, asked: number): number {
  return outputMicro === 0 ? asked : Math.floor((granted * 1000) / outputMicro);
}

/** Reserves room for `tokens` more output tokens (at least `atLeast`) on the hold's scopes: the tokens granted, 0 refused. */
export function extendHold(
  calls: BudgetLedgerCalls,
  config: ResolvedBudgetOptions,
  hold: BudgetHold,
  tokens: number,
  atLeast: number,
): number | Promise<number> {
  if (hold.overLimit) return tokens;
  const outputMicro = config.pricing.find(hold.model)?.outputMicro ?? 0;
  const amount = Math.ceil((tokens * outputMicro) / 1000);
  const minAmount = Math.ceil((atLeast * outputMicro) / 1000);
  const extensions = (hold.extensions ??= []);
  const request = {
    id: `${hold.id}:more:${extensions.length + 1}`,
    amount,
    minAmount: minAmount < amount ? minAmount : undefined,
    scopes: hold.scopes,
    ttlMs: config.reservationTtlMs,
  };
  const granted = (result: ReserveResult): number => {
    if (!result.ok) return 0;
    // Settled meanwhile (the client left while the ledger answered): nothing will release it but this.
    if (hold.settled) void calls.release(request.id);
    else {
      extensions.push(request.id);
      hold.extended = (hold.extended ?? 0) + result.amount;
    }
    return tokensFor(result.amount, outputMicro, tokens);
  };
  const { atOnce, ledger, timeoutMs } = calls;
  try {
    const now = atOnce?.reserveAtOnce(request, { balances: false });
    if (now) return granted(now);
  } catch (error) {
    calls.reportFailure(error);
    return 0;
  }
  const reserving = ledger.reserve(request);
  return withTimeout(reserving, timeoutMs, 'ledger.reserve').then(granted, (error: unknown) => {
    calls.reportFailure(error);
    calls.releaseLateGrant(reserving, request.id);
    return 0;
  });
}

/** Releases a hold's extensions (its settle charged the real cost to its first reservation). */
export function releaseExtensions(calls: BudgetLedgerCalls, hold: BudgetHold): void {
  hold.settled = true;
  for (const id of hold.extensions ?? []) void calls.release(id);
}
