// A stored tenant's budgets (decided in code, by the tenant alone) rebuilt after the store lost its spend: the rebuild
// asks the usage ledger for spend by tenant only, so the ledger sums the past from its rollups, and every nano-USD of
// the tenant's month comes back, the long call that finished after the cut aside (the rebuild's cut names it).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import { createMemoryStores, createPricing } from '@tollgate/core';
import type { Identity, UsageRecord } from '@tollgate/core';
import type { SpendSource } from '@tollgate/budget';
import { migrateUsageLedger, postgresSpendSource } from '@tollgate/metering';
import { insertUsageRecords } from '../../metering/src/postgres-ledger.js';
import { sampleRecord } from '../../metering/test/sample-record.js';
import { createBudgetGuard } from '../src/budget-setup.js';

const HOUR = 3_600_000;
// The guard's clock is the machine's (the gateway passes none): the month is this one.
const now = Date.now();
const monthStart = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1);

describe('a stored tenant rebuilt after a loss', () => {
  const db = new PGlite();
  const records: UsageRecord[] = [];
  beforeAll(async () => {
    await migrateUsageLedger(db);
    // Calls every 50 minutes since the day before the month began (a quarter of them globex's), and a long call that
    // finished after the rebuild's cut (it counts as read one by one, and is taken out of the rollups' hours).
    for (let at = monthStart - 24 * HOUR + 1_234, i = 0; at < now - 5 * 60_000; at += 50 * 60_000, i++)
      records.push(
        sampleRecord({
          id: `a-${i}`,
          timestamp: new Date(at).toISOString(),
          tenantId: i % 4 === 0 ? 'globex' : 'acme',
          keyId: `k-${i % 7}`,
          session: `s-${i}`,
          costNanoUsd: 1_000_000_000 + i,
          latencyMs: 900,
        }),
      );
    records.push(
      sampleRecord({
        id: 'long',
        timestamp: new Date(now - 2 * HOUR).toISOString(),
        tenantId: 'acme',
        costNanoUsd: 7,
        latencyMs: 2 * HOUR - 30_000,
      }),
    );
    await insertUsageRecords(db, records);
  });
  afterAll(() => db.close());

  it('asks for spend by tenant and restores each tenant budget to its month', async () => {
    const stores = createMemoryStores({ sweepIntervalMs: 0 });
    const budgetSpecs = (identity: Identity) =>
      identity.tenantId === 'acme'
        ? [{ scope: 'tenant' as const, id: 'acme', usd: 1_000, period: 'month' as const }]
        : [];
    const guard = createBudgetGuard(
      { ledgerTable: {}, global: { usd: 100_000, period: 'day' } },
      stores,
      createPricing(),
      () => undefined,
      { tenantBudgets: budgetSpecs },
    );
    const source = postgresSpendSource(db);
    const asked: unknown[] = [];
    const watched: SpendSource = {
      spentByCaller: (...args) => {
        asked.push(args[5]);
        return source.spentByCaller(...args);
      },
      recordsFinishedSince: (...args) => source.recordsFinishedSince(...args),
    };
    const report = await guard.rebuild(watched);
    expect(asked.length).toBeGreaterThan(0);
    for (const fields of asked) expect(fields).toEqual(['tenantId']);
    const acmeMonth = records
      .filter((r) => r.tenantId === 'acme' && Date.parse(r.timestamp) >= monthStart)
      .reduce((sum, r) => sum + r.costNanoUsd, 0);
    const restored = report.restored.find(({ key }) => key.includes('acme'));
    // Nothing yet in the month's first minutes: nothing restored.
    expect(restored?.spentNanoUsd ?? 0).toBe(acmeMonth);
    await guard.close();
  });
});
