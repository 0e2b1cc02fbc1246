// One rebuild per loss: a refusal (or a check) that saw the slots unmarked before another process's rebuild marked them,
// and took the lock only once that rebuild let it go, rebuilds nothing. A second rebuild would raise every scope to a
// ledger that already holds the calls of the blocks opened since the marks, whose settles then charge them again (seen
// as test/e2e-redis-loss-window.test.ts's budgets 78 calls above the ledger on a loaded machine).
import { describe, expect, it } from '@jest/globals';
import type { BudgetGuard, RebuildReport } from '@tollgate/budget';
import type { TollgateStores } from '@tollgate/core';
import type { RebuildGate } from '@tollgate/core/store-contracts';
import type { Queryable } from '@tollgate/metering';
import { keepSpend } from '../src/spend-rebuild.js';

/** One Redis as two processes see it: the slots' mark and the rebuild's lock. */
function sharedRedis() {
  const keys = new Map<string, string>();
  return {
    marked: true,
    async send(args: string[]): Promise<unknown> {
      const [command, key, value] = args as [string, string, string | undefined];
      if (command === 'SET') {
        if (keys.has(key)) return null;
        keys.set(key, value!);
        return 'OK';
      }
      if (command === 'GET') return keys.get(key) ?? null;
      if (command === 'DEL') return Number(keys.delete(key));
      throw new Error(`unexpected ${command}`);
    },
  };
}

/** One process's stores, guard and keeper on the shared Redis; `fireRefused` is a reserve refused for want of a rebuild. */
function proxyProcess(redis: ReturnType<typeof sharedRedis>) {
  const listeners = new Set<(slot: string | undefined) => void>();
  const gate: RebuildGate = {
    require: () => undefined,
    isRebuilt: async () => redis.marked,
    markRebuilt: async () => {
      redis.marked = true;
    },
    onRefused(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  const stores = {
    ledger: { rebuildGate: gate },
    prefix: 'tg:',
    sendCommand: (args: string[]) => redis.send(args),
    blocks: { retireAll: async () => undefined, trustLedgerUntil: () => undefined },
  } as unknown as TollgateStores;
  let rebuilds = 0;
  const report: RebuildReport = { checked: 1, restored: [], credited: [], slots: [undefined] };
  const guard = {
    rebuild: async () => {
      rebuilds++;
      return report;
    },
  } as unknown as BudgetGuard;
  const keeper = keepSpend(
    { ledgerTable: {}, blocksMaxAgeMs: 10_000 },
    stores,
    guard,
    {} as Queryable,
    async () => undefined,
    () => undefined,
  )!;
  return {
    keeper,
    rebuilds: () => rebuilds,
    fireRefused: () => {
      for (const listener of listeners) listener(undefined);
    },
  };
}

describe('keepSpend after a loss', () => {
  it('rebuilds once: a refusal from before the marks, handled after the rebuild let go of its lock, rebuilds nothing', async () => {
    const redis = sharedRedis();
    const a = proxyProcess(redis);
    const b = proxyProcess(redis);
    try {
      await Promise.all([a.keeper.ready, b.keeper.ready]);
      // Redis loses its data: the marks go; a reserve on A is refused and A rebuilds (its wait, then the read).
      redis.marked = false;
      a.fireRefused();
      await a.keeper.close();
      expect(a.rebuilds()).toBe(1);
      expect(redis.marked).toBe(true);
      // B's reserve was refused before A marked the slots; its handling takes the lock only now, A done.
      b.fireRefused();
      await b.keeper.close();
      expect(b.rebuilds()).toBe(0);
    } finally {
      await Promise.all([a.keeper.close(), b.keeper.close()]);
    }
  }, 20_000);
});
