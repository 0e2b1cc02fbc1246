// Outcomes in the SQL ledger: recorded per tenant, once per subject and kind, and read as cost per outcome, on PGlite and PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { costPerOutcome, migrateUsageLedger, recentUsage, recordOutcome } from '@tollgate/metering';
import { outcomeTableName } from '../src/postgres-ledger.js';
import { postgresSink } from '@tollgate/metering/postgres';
import { pgliteBackend, postgresBackend } from './ledger-backends.js';
import type { Backend } from './ledger-backends.js';
import { outcomeRecords } from './ledger-samples.js';

const since = new Date(Date.now() - 3_600_000);

const records = outcomeRecords;

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend('tg_outcomes')],
])('outcomes on %s', (_name, open) => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await open();
    // No ledger yet: nothing recorded, so no request to attach an outcome to, and nothing to report.
    await expect(
      recordOutcome(backend.db, { tenantId: 'acme', requestId: 'r1', kind: 'resolved' }, backend.location),
    ).resolves.toBeUndefined();
    await expect(costPerOutcome(backend.db, { ...backend.location, by: 'tenant', since })).resolves.toEqual([]);
    const sink = postgresSink({ db: backend.db, ...backend.location, flushIntervalMs: 60_000 });
    for (const record of records) sink.write(record);
    await sink.close();
  });

  afterAll(async () => {
    await backend.close();
  });

  it('keeps the conversation id of each record', async () => {
    const page = await recentUsage(backend.db, { ...backend.location, limit: 10, tenantId: 'acme' });
    expect(Object.fromEntries(page.records.map((record) => [record.requestId, record.conversationId ?? null]))).toEqual(
      { r1: 'c1', r2: 'c1', r3: 'c2', r4: null, r5: 'c2' },
    );
  });

  it('attaches an outcome to a request of the tenant, once per kind, the first report standing', async () => {
    const first = await recordOutcome(
      backend.db,
      { tenantId: 'acme', requestId: 'r4', kind: 'resolved', valueNanoUsd: 10_000_000_000 },
      backend.location,
    );
    expect(first).toMatchObject({
      tenantId: 'acme',
      subject: 'request',
      subjectId: 'r4',
      kind: 'resolved',
      valueNanoUsd: 10_000_000_000,
      created: true,
      requests: 1,
      costNanoUsd: 2_000_000,
    });
    const again = await recordOutcome(
      backend.db,
      { tenantId: 'acme', requestId: 'r4', kind: 'resolved', valueNanoUsd: 99 },
      backend.location,
    );
    expect(again).toMatchObject({ id: first!.id, created: false, valueNanoUsd: 10_000_000_000, requests: 1 });
    const rows = await backend.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${outcomeTableName(backend.location)} WHERE subject_id = 'r4'`,
    );
    expect(Number(rows.rows[0]!.n)).toBe(1);
  });

  it("attaches an outcome to a conversation: the tenant's requests in it, never another tenant's", async () => {
    // Two reports racing: one row, one created.
    const [a, b] = await Promise.all([
      recordOutcome(backend.db, { tenantId: 'acme', conversationId: 'c1', kind: 'resolved' }, backend.location),
      recordOutcome(backend.db, { tenantId: 'acme', conversationId: 'c1', kind: 'resolved' }, backend.location),
    ]);
    expect([a!.created, b!.created].sort()).toEqual([false, true]);
    expect(a).toMatchObject({
      subject: 'conversation',
      subjectId: 'c1',
      requests: 2,
      costNanoUsd: 4_000_000,
      valueNanoUsd: null,
    });
    const converted = await recordOutcome(
      backend.db,
      { tenantId: 'acme', conversationId: 'c2', kind: 'converted', valueNanoUsd: 1_500_000_000 },
      backend.location,
    );
    expect(converted).toMatchObject({ created: true, requests: 2, costNanoUsd: 750_000 });
  });

  it('finds no request of another tenant, nor an unknown one', async () => {
    await expect(
      recordOutcome(backend.db, { tenantId: 'globex', requestId: 'r1', kind: 'resolved' }, backend.location),
    ).resolves.toBeUndefined();
    await expect(
      recordOutcome(backend.db, { tenantId: 'acme', requestId: 'g1', kind: 'resolved' }, backend.location),
    ).resolves.toBeUndefined();
    await expect(
      recordOutcome(backend.db, { tenantId: 'acme', conversationId: 'nope', kind: 'resolved' }, backend.location),
    ).resolves.toBeUndefined();
  });

  it('refuses a report it cannot store, naming the field', async () => {
    const bad = [
      [{ tenantId: '', requestId: 'r1', kind: 'resolved' }, /tenantId/],
      [{ tenantId: 'acme', kind: 'resolved' }, /one requestId or one conversationId/],
      [
        { tenantId: 'acme', requestId: 'r1', conversationId: 'c1', kind: 'resolved' },
        /one requestId or one conversationId/,
      ],
      [{ tenantId: 'acme', requestId: 'r 1', kind: 'resolved' }, /requestId must be/],
      [{ tenantId: 'acme', requestId: 'r1', kind: 'Resolved!' }, /kind must be/],
      [{ tenantId: 'acme', requestId: 'r1', kind: 'resolved', valueNanoUsd: 1.5 }, /valueNanoUsd/],
      [{ tenantId: 'acme', requestId: 'r1', kind: 'resolved', valueNanoUsd: -1 }, /valueNanoUsd/],
    ] as const;
    for (const [report, message] of bad) {
      await expect(recordOutcome(backend.db, report as never, backend.location)).rejects.toMatchObject({
        code: 'ERR_TG_METERING_INVALID_OUTCOME',
        message: expect.stringMatching(message),
      });
    }
  });

  it('reads cost per outcome per tenant and kind, with value per cost where values were given', async () => {
    const rows = await costPerOutcome(backend.db, { ...backend.location, by: 'tenant', since });
    expect(rows).toEqual([
      // c2 (r3, r5): $0.00075 for a $1.50 conversion.
      {
        group: 'acme',
        kind: 'converted',
        outcomes: 1,
        requests: 2,
        costNanoUsd: 750_000,
        costPerOutcomeNanoUsd: 750_000,
        valuedOutcomes: 1,
        valueNanoUsd: 1_500_000_000,
        valuePerCost: 2000,
      },
      // r4 ($0.002, valued $10) and c1 (r1 + r2: $0.004, no value).
      {
        group: 'acme',
        kind: 'resolved',
        outcomes: 2,
        requests: 3,
        costNanoUsd: 6_000_000,
        costPerOutcomeNanoUsd: 3_000_000,
        valuedOutcomes: 1,
        valueNanoUsd: 10_000_000_000,
        valuePerCost: 5000,
      },
    ]);
    await expect(
      costPerOutcome(backend.db, { ...backend.location, by: 'tenant', since, tenantId: 'globex' }),
    ).resolves.toEqual([]);
    await expect(
      costPerOutcome(backend.db, { ...backend.location, by: 'tenant', since, until: since }),
    ).resolves.toEqual([]);
  });

  it("reads cost per outcome per feature: a conversation across features counts in each, with that feature's cost", async () => {
    const rows = await costPerOutcome(backend.db, { ...backend.location, by: 'feature', since, kind: 'converted' });
    expect(
      rows.map(({ group, outcomes, requests, costNanoUsd }) => ({ group, outcomes, requests, costNanoUsd })),
    ).toEqual([
      { group: 'search', outcomes: 1, requests: 1, costNanoUsd: 500_000 },
      { group: 'support', outcomes: 1, requests: 1, costNanoUsd: 250_000 },
    ]);
    await expect(
      costPerOutcome(backend.db, { ...backend.location, by: 'model' as never, since }),
    ).rejects.toMatchObject({ code: 'ERR_TG_METERING_INVALID_GROUPING' });
  });

  it('creates the outcomes table of a ledger made before it existed', async () => {
    await backend.db.query(`DROP TABLE ${outcomeTableName(backend.location)}`);
    const outcome = await recordOutcome(
      backend.db,
      { tenantId: 'acme', requestId: 'r1', kind: 'resolved' },
      backend.location,
    );
    expect(outcome).toMatchObject({ created: true, requests: 1, costNanoUsd: 1_000_000 });
    // And the migration leaves it alone when run again.
    await migrateUsageLedger(backend.db, backend.location);
    await expect(
      recordOutcome(backend.db, { tenantId: 'acme', requestId: 'r1', kind: 'resolved' }, backend.location),
    ).resolves.toMatchObject({ created: false });
  });
});
