// A hold that follows its stream: more output reserved against the hold's own scopes, as reservations linked to it.
import { whenReady, withTimeout } from '@tollgate/core/store-contracts';
import type { ReserveResult, SettledRecord } from '@tollgate/core/store-contracts';
import type { BudgetHold } from './budget-hold.js';
import type { BudgetLedgerCalls } from './budget-ledger.js';
import type { ResolvedBudgetOptions } from './budget-options.js';

/** An extension's reserve reads no balances. */
const WITHOUT_BALANCES = { balances: false };

/*
 * An extension is a reserve of the ledger like any other (one engine: memory, Redis, Cluster, blocks and leases
 * answer it as they answer the request's own), against the hold's scopes, under an id of its own. The hold's settle
 * charges the real cost across its reservations, each at most what it holds, in the same turn (one round trip): a
 * reservation may sit in a block of this process and its extension in the store (or the other way round), and
 * charging one for what the other held would spend room that a block or the store handed to someone else.
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
  const { outputMicro } = hold;
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
      extensions.push({ id: request.id, amount: result.amount });
      hold.extended = (hold.extended ?? 0) + result.amount;
    }
    return tokensFor(result.amount, outputMicro, tokens);
  };
  const reserving = calls.answers.reserve(request, WITHOUT_BALANCES);
  return whenReady(withTimeout(reserving, calls.timeoutMs, 'ledger.reserve'), granted, (error: unknown) => {
    calls.reportFailure(error);
    calls.releaseLateGrant(reserving, request.id);
    return 0;
  });
}

/**
 * Settles a hold's extensions with their parts of `actual`: what the hold's own reservation does not cover, in the order
 * they were granted, each at most what it holds. Returns what is left for the hold's own reservation: at most its grant,
 * plus what passed every reservation (an overshoot, which no part held).
 */
export function settleExtensions(
  calls: BudgetLedgerCalls,
  hold: BudgetHold,
  actual: number,
  recordsOf?: (amount: number) => readonly SettledRecord[],
): number {
  hold.settled = true;
  const own = Math.min(actual, hold.granted);
  let rest = actual - own;
  for (const { id, amount } of hold.extensions ?? []) {
    const part = Math.min(rest, amount);
    rest -= part;
    // Each part names the call's record for its share: after a store lost its data, a rebuild that read the record
    // has counted every part already (SettledRecord).
    void calls.settleAside(id, part, part > 0 ? recordsOf?.(part) : undefined);
  }
  return own + rest;
}
