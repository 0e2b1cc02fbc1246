// The store calls of tokenRateLimit and budgetGuard as they make them: the answers at once where the stores give them.
import { counterCalls, ledgerCalls } from '@tollgate/core/store-contracts';
import type { TollgateStores } from '@tollgate/core';
import type { ReserveRequest } from '@tollgate/core/store-contracts';

export interface Caller {
  consumeThenAdjust(
    key: string,
    units: number,
    window: { limit: number; windowMs: number },
    delta: number,
  ): Promise<void> | undefined;
  reserveThenSettle(request: ReserveRequest, actual: number): Promise<void> | undefined;
}

const settled = (): undefined => undefined;

export function callerOf(stores: TollgateStores): Caller {
  const counter = counterCalls(stores.counter);
  const ledger = ledgerCalls(stores.ledger);
  const balances = { balances: true };
  const noBalances = { balances: false };
  // Written out rather than through whenReady: the figures are the stores' cost, not the callbacks'.
  return {
    consumeThenAdjust(key, units, window, delta) {
      const consumed = counter.consume(key, units, window);
      if (consumed instanceof Promise)
        return consumed.then(({ windowStart }) =>
          counter.adjust(key, delta, { windowMs: window.windowMs, windowStart }),
        );
      const adjusted = counter.adjust(key, delta, { windowMs: window.windowMs, windowStart: consumed.windowStart });
      return adjusted instanceof Promise ? adjusted : undefined;
    },
    reserveThenSettle(request, actual) {
      const reserved = ledger.reserve(request, balances);
      if (reserved instanceof Promise)
        return reserved.then(() => ledger.settle(request.id, actual, undefined, noBalances)).then(settled);
      const done = ledger.settle(request.id, actual, undefined, noBalances);
      return done instanceof Promise ? done.then(settled) : undefined;
    },
  };
}
