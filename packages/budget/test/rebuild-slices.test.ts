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

describe('a rebuild whose scopes span many of its blocks of 4,096', () => {
  it('sums each scope over every caller charged to it: one of all 10,000 callers, each tenant of its own', async () => {
    const stores = createMemoryStores();
    const guard = budgetGuard({
      ledger: stores.ledger,
      global: { usd: 1_000, period: 'month' },
      tenants: { '*': { usd: 10, period: 'month' } },
      log: false,
    });
    const callers = Array.from({ length: 10_000 }, (_, i) => ({
      keyId: `k${i}`,
      tenantId: `t${i % 9_000}`,
      userId: null,
      feature: null,
      model: null,
      spentNanoUsd: 1_000 + i,
    }));
    const report = await guard.rebuild({ spentByCaller: async () => callers });
    await guard.close();

    const restored = new Map(report.restored.map(({ key, spentNanoUsd }) => [key, spentNanoUsd]));
    // 9,000 tenants (the first 1,000 with two keys) and the global budget.
    expect(report.checked).toBe(9_001);
    const all = callers.reduce((sum, caller) => sum + caller.spentNanoUsd, 0);
    const global = [...restored].filter(([key]) => key.startsWith('budget:global:'));
    expect(global).toEqual([[expect.any(String), all]]);
    for (const tenant of [0, 999, 1_000, 4_095, 4_096, 8_191, 8_192, 8_999]) {
      const found = [...restored].filter(([key]) => key.startsWith(`budget:tenant:t${tenant}:`));
      expect(found).toHaveLength(1);
      expect(found[0]![1]).toBe(1_000 + tenant + (tenant < 1_000 ? 1_000 + tenant + 9_000 : 0));
    }
  }, 60_000);
});
