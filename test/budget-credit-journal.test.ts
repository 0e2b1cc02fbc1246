// Top-ups outlive their store: journaled in the SQL ledger's database before the store is credited, given back once by
// the rebuild after a loss (raised to, never added), never given when the journal or the store refuses, forgotten by a
// reset; on memory stores (a new one is a lost one) with a PostgreSQL ledger.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ApiError, createMemoryStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetSelector, CreditJournal, SpendSource } from '@tollgate/budget';
import { postgresCreditJournal } from '@tollgate/metering';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const db = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
const table = `tg_credit_${randomBytes(6).toString('hex')}`;
const journal = postgresCreditJournal(db, { table });
const opened: TollgateStores[] = [];

afterAll(async () => {
  await Promise.all(opened.map((stores) => stores.close()));
  await db.query(
    `DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily", "${table}_credits"`,
  );
  await db.end();
});

const SPENT = 250_000_000;
const DOLLAR = 1_000_000_000;

/** What the usage ledger recorded: $0.25 by bob of each tenant, on gpt-4o. */
function spendOf(tenant: string): SpendSource {
  const caller = { keyId: `${tenant}-key`, userId: 'bob', tenantId: tenant, feature: null, model: 'gpt-4o' };
  return { spentByCaller: async () => [{ ...caller, spentNanoUsd: SPENT }] };
}

/** A guard over new memory stores (a process started again, or Redis after a loss: the store holds nothing). */
function guardOn(
  tenant: string,
  creditJournal: CreditJournal = journal,
  stores: TollgateStores = createMemoryStores(),
): BudgetGuard {
  opened.push(stores);
  return budgetGuard({
    ledger: stores.ledger,
    creditJournal,
    log: false,
    tenants: { [tenant]: { usd: 1, period: 'day' } },
    tenantUsers: { [tenant]: { usd: 0.5, period: 'day' } },
  });
}

async function figures(guard: BudgetGuard, selector: BudgetSelector) {
  const [status] = await guard.status(selector);
  const { spentNanoUsd, creditNanoUsd, reservedNanoUsd, remainingNanoUsd } = status!;
  return { spentNanoUsd, creditNanoUsd, reservedNanoUsd, remainingNanoUsd };
}

const tenantOf = (id: string): BudgetSelector => ({ scope: 'tenant', id });
const bobOf = (tenant: string): BudgetSelector => ({ scope: 'user', id: 'bob', tenant });

describe('top-up credit kept in a credit journal', () => {
  it('gives every credit back once after the store lost it: spent the ledger’s, credit what was added', async () => {
    const first = guardOn('acme');
    await first.rebuild(spendOf('acme'));
    await first.topUp(tenantOf('acme'), 2);
    await first.topUp(bobOf('acme'), 0.5);
    // The store is lost: a new process on memory stores, or Redis flushed.
    const second = guardOn('acme');
    const report = await second.rebuild(spendOf('acme'));
    const acme = report.credited.filter((credit) => credit.key.includes('acme'));
    expect(acme.map((credit) => credit.creditNanoUsd).sort((a, b) => a - b)).toEqual([500_000_000, 2 * DOLLAR]);
    expect(await figures(second, tenantOf('acme'))).toEqual({
      spentNanoUsd: SPENT,
      creditNanoUsd: 2 * DOLLAR,
      reservedNanoUsd: 0,
      remainingNanoUsd: DOLLAR + 2 * DOLLAR - SPENT,
    });
    // The end user's budget (not configured by id: found through the journal) too.
    expect(await figures(second, bobOf('acme'))).toMatchObject({ spentNanoUsd: SPENT, creditNanoUsd: 500_000_000 });
    // Rebuilt again while the store still holds it: raised to, never added.
    await second.rebuild(spendOf('acme'));
    expect(await figures(second, tenantOf('acme'))).toMatchObject({ creditNanoUsd: 2 * DOLLAR });
    // A top-up after the rebuild adds its amount once.
    await second.topUp(tenantOf('acme'), 1);
    expect(await figures(second, tenantOf('acme'))).toMatchObject({ spentNanoUsd: SPENT, creditNanoUsd: 3 * DOLLAR });
  });

  it('carries a credit the store held before the journal did, so a top-up after it adds to it', async () => {
    const stores = createMemoryStores();
    const before = guardOn('initech', journal, stores);
    const [status] = await before.status(tenantOf('initech'));
    // Given before there was a journal: only the store knows it.
    await stores.ledger.addCredit(status!.key, DOLLAR, Date.parse(status!.resetAt));
    await before.topUp(tenantOf('initech'), 2);
    expect(await figures(before, tenantOf('initech'))).toMatchObject({ creditNanoUsd: 3 * DOLLAR });
    const after = guardOn('initech');
    await after.rebuild(spendOf('initech'));
    expect(await figures(after, tenantOf('initech'))).toMatchObject({ spentNanoUsd: SPENT, creditNanoUsd: 3 * DOLLAR });
  });

  it('forgets the credit a reset forgot, after a loss too', async () => {
    const first = guardOn('globex');
    await first.topUp(tenantOf('globex'), 2);
    await first.reset(tenantOf('globex'));
    const second = guardOn('globex');
    await second.rebuild(spendOf('globex'));
    expect(await figures(second, tenantOf('globex'))).toMatchObject({ creditNanoUsd: 0 });
  });

  it('gives nothing anywhere when the journal does not record the top-up (503)', async () => {
    const refusing: CreditJournal = {
      ...journal,
      record: async () => {
        throw new Error('connection refused');
      },
    };
    const guard = guardOn('hooli', refusing);
    const refused = await guard.topUp(tenantOf('hooli'), 2).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ status: 503, code: 'service_unavailable' });
    expect((refused as Error).message).toMatch(/not given: the credit journal did not record it/);
    expect(await figures(guard, tenantOf('hooli'))).toMatchObject({ creditNanoUsd: 0 });
    expect(await journal.credits(Date.now(), [(await guard.status(tenantOf('hooli')))[0]!.key])).toEqual([]);
  });

  it('withdraws the top-up from the journal when the store does not take it, asked twice', async () => {
    const stores = createMemoryStores();
    let raises = 0;
    const { ledger } = stores;
    const timingOut: ReservationLedger = {
      reserve: (request) => ledger.reserve(request),
      settle: (id, amount) => ledger.settle(id, amount),
      release: (id) => ledger.release(id),
      usage: (scopes) => ledger.usage(scopes),
      adjustSpent: (scope, delta, expiresAt) => ledger.adjustSpent(scope, delta, expiresAt),
      addCredit: (scope, amount, expiresAt) => ledger.addCredit(scope, amount, expiresAt),
      resetScope: (scope) => ledger.resetScope(scope),
      restoreCredit: async () => {
        raises++;
        throw new Error('store timed out');
      },
    };
    const failing: TollgateStores = { ...stores, ledger: timingOut, close: () => stores.close() };
    const guard = guardOn('umbrella', journal, failing);
    const refused = await guard.topUp(tenantOf('umbrella'), 2).catch((error: unknown) => error);
    expect(refused).toMatchObject({ status: 503, message: expect.stringMatching(/withdrawn from the credit journal/) });
    // Raising is idempotent: asked once more before giving up.
    expect(raises).toBe(2);
    const later = guardOn('umbrella');
    await later.rebuild(spendOf('umbrella'));
    expect(await figures(later, tenantOf('umbrella'))).toMatchObject({ creditNanoUsd: 0 });
  });
});
