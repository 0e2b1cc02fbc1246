// Budget guards of several processes sharing one Redis ledger, each with stores of its own, for tests across processes.
import { createRedisStores } from '@tollgate/redis';
import type { RedisStores } from '@tollgate/redis';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetGuardOptions } from '@tollgate/budget';

/** `count` processes' stores (under `prefix`) and guards made with `options`, added to the lists given. */
export function addRedisGuards(
  url: string,
  prefix: string,
  count: number,
  options: Omit<BudgetGuardOptions, 'ledger'>,
  made: { stores: RedisStores[]; guards: BudgetGuard[] },
): void {
  for (let i = 0; i < count; i++) {
    const store = createRedisStores({ url, prefix });
    made.stores.push(store);
    made.guards.push(budgetGuard({ ...options, ledger: store.ledger }));
  }
}
