// Budget top-ups in the SQL ledger's database: made by the ledger's migration, an action written again stored once, a
// scope's credit the sum since its last reset, periods over left out; on PGlite and PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { creditTableName, ledgerMigrationSql } from '../src/postgres-ledger.js';
import { postgresCreditJournal } from '@tollgate/metering';
import { pgliteBackend, postgresBackend } from './ledger-backends.js';
import type { Backend } from './ledger-backends.js';
const now = Date.UTC(2026, 3, 1, 12);
const dayEnd = Date.UTC(2026, 3, 2);
const yesterdayEnd = Date.UTC(2026, 3, 1);

const tenant = { key: 'budget:tenant:acme:day:20260401', expiresAt: dayEnd };
const user = { key: 'budget:user:acme:bob:day:20260401', slot: 'acme', expiresAt: dayEnd };

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend('tg_credit')],
])('the credit journal on %s', (_name, open) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await open();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('is made by the usage ledger migration, beside the usage table', () => {
    const sql = ledgerMigrationSql(backend.location).join('\n');
    expect(sql).toContain(`CREATE TABLE IF NOT EXISTS ${creditTableName(backend.location)}`);
    expect(sql).toContain('PRIMARY KEY (id, scope_key)');
  });

  it('holds nothing before the first top-up (no table yet)', async () => {
    expect(await postgresCreditJournal(backend.db, backend.location).credits(now)).toEqual([]);
  });

  it('sums a scope’s top-ups, stores an action written again once, and forgets periods that are over', async () => {
    const journal = postgresCreditJournal(backend.db, backend.location);
    const topUp = { id: 'top-1', kind: 'top-up' as const, at: now, entries: [{ ...tenant, nanoUsd: 2_000_000_000 }] };
    await journal.record(topUp);
    // A retried write (same id): stored once.
    await journal.record(topUp);
    await journal.record({ id: 'top-2', kind: 'top-up', at: now, entries: [{ ...user, nanoUsd: 500_000_000 }] });
    await journal.record({
      id: 'old',
      kind: 'top-up',
      at: now - 86_400_000,
      entries: [{ key: 'budget:tenant:acme:day:20260331', expiresAt: yesterdayEnd, nanoUsd: 7 }],
    });
    const credits = await journal.credits(now);
    expect(credits.sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { ...tenant, creditNanoUsd: 2_000_000_000 },
      { ...user, creditNanoUsd: 500_000_000 },
    ]);
    expect(await journal.credits(now, [user.key])).toEqual([{ ...user, creditNanoUsd: 500_000_000 }]);
  });

  it('starts a scope over at a reset (and says when: spend counts from it), and takes back a withdrawn top-up', async () => {
    const journal = postgresCreditJournal(backend.db, backend.location);
    await journal.record({ id: 'reset-1', kind: 'reset', at: now - 5_000, entries: [{ ...tenant, nanoUsd: 0 }] });
    expect(await journal.credits(now, [tenant.key])).toEqual([{ ...tenant, creditNanoUsd: 0, resetAt: now - 5_000 }]);
    await journal.record({ id: 'top-3', kind: 'top-up', at: now, entries: [{ ...tenant, nanoUsd: 300 }] });
    await journal.record({ id: 'top-4', kind: 'top-up', at: now, entries: [{ ...tenant, nanoUsd: 40 }] });
    const resetAt = now - 5_000;
    expect(await journal.credits(now, [tenant.key])).toEqual([{ ...tenant, creditNanoUsd: 340, resetAt }]);
    await journal.withdraw('top-4');
    expect(await journal.credits(now, [tenant.key])).toEqual([{ ...tenant, creditNanoUsd: 300, resetAt }]);
    // The last reset is the one that counts.
    await journal.record({ id: 'reset-2', kind: 'reset', at: now, entries: [{ ...tenant, nanoUsd: 0 }] });
    expect(await journal.credits(now, [tenant.key])).toEqual([{ ...tenant, creditNanoUsd: 0, resetAt: now }]);
  });
});
