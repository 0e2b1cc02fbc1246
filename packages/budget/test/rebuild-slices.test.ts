// A rebuild of many scopes is background work: it lets the event loop turn between slices, and still restores each one.
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';

describe('a rebuild of 20,000 scopes', () => {
  it('gives the event loop turns while it runs, and raises every scope to what the ledger recorded', async () => {
    const stores = createMemoryStores();
    const guard = budgetGuard({ ledger: stores.ledger, tenants: { '*': { usd: 10, period: 'month' } }, log: false });
    const scopes = 20_000;
    const nobodyElse = { userId: null, feature: null, model: null };
    const callers = Array.from({ length: scopes }, (_, i) => ({ ...nobodyElse, keyId: `k${i}`, tenantId: `t${i}` }))
      // One caller per tenant, each with spend of its own.
      .map((caller, i) => ({ ...caller, spentNanoUsd: 1_000 + i }));
    let turns = 0;
    let done = false;
    const turn = () => {
      turns++;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    const report = await guard.rebuild({ spentByCaller: async () => callers });
    done = true;
    const turnsWhileRunning = turns;
    await guard.close();

    // A source and a ledger in memory answer in microtasks: before, the whole rebuild ran without one turn.
    expect(turnsWhileRunning).toBeGreaterThan(1);
    expect(report.restored).toHaveLength(scopes);
    const restored = new Map(report.restored.map(({ key, spentNanoUsd }) => [key, spentNanoUsd]));
    for (let i = 0; i < scopes; i += 997) {
      const key = [...restored.keys()].find((name) => name.startsWith(`budget:tenant:t${i}:`));
      expect(restored.get(key!)).toBe(1_000 + i);
    }
  }, 60_000);
});
