// A session budget's spend outlives the store: a rebuild reads the usage ledger per session and raises each session's
// scope to what its calls spent, apart from the owner's other sessions and from its calls without a session.
import { describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';

describe('rebuilding session budgets', () => {
  it("restores each session's spend, under its tenant or its key, and the tenant's as the sum of all", async () => {
    const stores = createMemoryStores();
    const guard = budgetGuard({
      ledger: stores.ledger,
      tenants: { acme: { usd: 10, period: 'day' } },
      sessionBudgets: { tenants: { '*': { usd: 1, period: 'day' } } },
      log: false,
    });
    const nobodyElse = { userId: null, feature: null, model: null, tags: null };
    const callers = [
      { ...nobodyElse, keyId: 'k1', tenantId: 'acme', session: 's-1', spentNanoUsd: 300_000_001 },
      { ...nobodyElse, keyId: 'k2', tenantId: 'acme', session: 's-1', spentNanoUsd: 200_000_000 },
      { ...nobodyElse, keyId: 'k1', tenantId: 'acme', session: 's-2', spentNanoUsd: 7 },
      { ...nobodyElse, keyId: 'k1', tenantId: 'acme', session: null, spentNanoUsd: 1_000 },
      { ...nobodyElse, keyId: 'solo', tenantId: null, session: 's-1', spentNanoUsd: 42 },
    ];
    const report = await guard.rebuild({ spentByCaller: async () => callers });
    const spentOf = async (selector: Parameters<typeof guard.status>[0]) => (await guard.status(selector))[0];
    expect(await spentOf({ scope: 'session', id: 's-1', tenant: 'acme' })).toMatchObject({
      spentNanoUsd: 500_000_001,
      remainingNanoUsd: 499_999_999,
    });
    expect(await spentOf({ scope: 'session', id: 's-2', tenant: 'acme' })).toMatchObject({ spentNanoUsd: 7 });
    expect(await spentOf({ scope: 'tenant', id: 'acme' })).toMatchObject({ spentNanoUsd: 500_001_008 });
    // The key without a tenant owns its session: restored under the key, not mixed with acme's s-1.
    const solo = report.restored.find(({ key }) => key.startsWith('budget:key:solo:session:s-1:'));
    expect(solo?.spentNanoUsd).toBe(42);
    // Every slot of a session's scope is one the rebuild marks (its owner's): the gate opens for it.
    expect(report.slots).toEqual(expect.arrayContaining(['tenant:acme', 'key:solo']));
    await guard.close();
  });

  it('refuses nothing at the first rebuild of a budgets function that decides by sessionId', async () => {
    const stores = createMemoryStores();
    const guard = budgetGuard({
      ledger: stores.ledger,
      budgets: (identity) =>
        identity.sessionId === undefined ? [] : [{ scope: 'tenant', id: `${identity.tenantId}`, usd: 1 }],
      log: false,
    });
    await expect(guard.rebuild({ spentByCaller: async () => [] })).resolves.toMatchObject({ restored: [] });
    await guard.close();
  });
});
