// One SQL ledger, two databases: the migration, the sink and every read give the same answers on PGlite and PostgreSQL.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import {
  aggregateUsage,
  migrateUsageLedger,
  postgresSpendSource,
  recentUsage,
  usageByProvider,
  usageOverTime,
} from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import { sampleRecord } from './sample-record.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const HOUR = 3_600_000;
const start = Date.UTC(2026, 10, 20, 0, 0);
const at = (hours: number) => new Date(start + hours * HOUR).toISOString();

const records = [
  sampleRecord({
    id: 'a1',
    requestId: 'same',
    timestamp: at(1),
    tenantId: 'acme',
    keyId: 'k1',
    model: 'gpt-4o',
    provider: 'openai',
    costNanoUsd: 1_250_000,
    latencyMs: 100,
    tags: ['eu', 'team:search'],
  }),
  sampleRecord({
    id: 'a2',
    requestId: 'same',
    timestamp: at(1.5),
    tenantId: 'acme',
    keyId: 'k2',
    model: 'gpt-4o-mini',
    provider: 'openai',
    costNanoUsd: 10_000,
    status: 502,
    latencyMs: 300,
  }),
  sampleRecord({
    id: 'a3',
    requestId: 'r3',
    timestamp: at(2),
    tenantId: 'acme',
    keyId: 'k1',
    model: 'gpt-4o',
    provider: 'openai',
    costNanoUsd: 3_000_000_000_000,
    latencyMs: 200,
  }),
  sampleRecord({
    id: 'g1',
    requestId: 'r4',
    timestamp: at(2.25),
    tenantId: 'globex',
    keyId: 'k9',
    model: 'claude-haiku-4-5',
    provider: 'anthropic',
    costNanoUsd: 7,
    status: 0,
    usageSource: 'estimated',
    latencyMs: 0,
  }),
  sampleRecord({
    id: 'n1',
    requestId: 'r5',
    timestamp: at(3),
    tenantId: null,
    keyId: null,
    userId: null,
    feature: null,
    model: 'gpt-4o',
    provider: 'openai',
    costNanoUsd: 5,
  }),
];

interface Backend {
  name: string;
  db: Queryable;
  location: LedgerLocation;
  close(): Promise<void>;
}

async function pgliteBackend(): Promise<Backend> {
  const db = new PGlite();
  return { name: 'PGlite', db, location: {}, close: () => db.close() };
}

async function postgresBackend(): Promise<Backend> {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  // A table of its own, dropped after: other runs share the database.
  const table = `tg_ledger_${randomBytes(6).toString('hex')}`;
  return {
    name: 'PostgreSQL',
    db: pool,
    location: { table },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS "${table}", "${table}_outcomes", "${table}_hourly", "${table}_daily"`);
      await pool.query(`DROP FUNCTION IF EXISTS "${table}_add_to_rollups"`);
      await pool.end();
    },
  };
}

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend],
])('the usage ledger on %s', (_name, open) => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await open();
    // Two migrations racing on one database (two processes starting, or a sink and a reader).
    await Promise.all([
      migrateUsageLedger(backend.db, backend.location),
      migrateUsageLedger(backend.db, backend.location),
    ]);
    const sink = postgresSink({
      db: backend.db,
      ...backend.location,
      migrate: false,
      flushIntervalMs: 60_000,
      batchSize: 2,
    });
    for (const record of records) sink.write(record);
    sink.write(records[0]!); // written again (a replay): stored once
    await sink.close();
  }, 60_000);

  afterAll(async () => {
    await backend.close();
  });

  it('stores each record once, with the sink leaving the database open for its owner', async () => {
    const result = await backend.db.query<{ n: unknown }>(
      `SELECT count(*) AS n FROM "${backend.location.table ?? 'tollgate_usage'}"`,
    );
    expect(Number(result.rows[0]!.n)).toBe(records.length);
  });

  it('sums spend per tenant exactly, large amounts included', async () => {
    const rows = await aggregateUsage(backend.db, {
      ...backend.location,
      by: 'tenant',
      since: new Date(start),
      until: new Date(start + 24 * HOUR),
    });
    expect(rows.map((row) => [row.group, row.requests, row.costNanoUsd])).toEqual([
      ['acme', 3, 3_000_001_260_000],
      ['globex', 1, 7],
      [null, 1, 5],
    ]);
  });

  it('sums spend per tag (a record under each of its tags, untagged ones under null)', async () => {
    const rows = await aggregateUsage(backend.db, {
      ...backend.location,
      by: 'tag',
      since: new Date(start),
      until: new Date(start + 24 * HOUR),
    });
    expect(rows.map((row) => [row.group, row.requests, row.costNanoUsd])).toEqual([
      [null, 4, 3_000_000_010_012],
      ['eu', 1, 1_250_000],
      ['team:search', 1, 1_250_000],
    ]);
  });

  it('reads spend over time in UTC buckets, split by model', async () => {
    const points = await usageOverTime(backend.db, {
      ...backend.location,
      since: new Date(start),
      until: new Date(start + 24 * HOUR),
      bucketSeconds: 3600,
      splitBy: 'model',
      tenantId: 'acme',
    });
    expect(points).toEqual([
      {
        bucket: start + HOUR,
        group: 'gpt-4o',
        requests: 1,
        inputTokens: 1400,
        outputTokens: 200,
        costNanoUsd: 1_250_000,
      },
      {
        bucket: start + HOUR,
        group: 'gpt-4o-mini',
        requests: 1,
        inputTokens: 1400,
        outputTokens: 200,
        costNanoUsd: 10_000,
      },
      {
        bucket: start + 2 * HOUR,
        group: 'gpt-4o',
        requests: 1,
        inputTokens: 1400,
        outputTokens: 200,
        costNanoUsd: 3_000_000_000_000,
      },
    ]);
  });

  it('pages through the newest records with filters', async () => {
    const first = await recentUsage(backend.db, { ...backend.location, limit: 2 });
    expect(first.records.map((record) => record.id)).toEqual(['n1', 'g1']);
    const second = await recentUsage(backend.db, { ...backend.location, limit: 2, after: first.next });
    expect(second.records.map((record) => record.id)).toEqual(['a3', 'a2']);
    const last = await recentUsage(backend.db, { ...backend.location, limit: 2, after: second.next });
    expect(last).toEqual({ records: [expect.objectContaining({ id: 'a1' })] });
    expect(last.records[0]).toEqual(records[0]);
    expect(
      (await recentUsage(backend.db, { ...backend.location, status: 'error' })).records.map((record) => record.id),
    ).toEqual(['g1', 'a2']);
    expect(
      (
        await recentUsage(backend.db, { ...backend.location, tenantId: 'acme', keyId: 'k1', model: 'gpt-4o' })
      ).records.map((record) => record.id),
    ).toEqual(['a3', 'a1']);
    expect(
      (await recentUsage(backend.db, { ...backend.location, status: 502 })).records.map((record) => record.id),
    ).toEqual(['a2']);
  });

  it('reports requests, errors and latency per provider and model', async () => {
    const rows = await usageByProvider(backend.db, {
      ...backend.location,
      since: new Date(start),
      until: new Date(start + 24 * HOUR),
    });
    expect(rows[0]).toEqual({
      provider: 'openai',
      model: 'gpt-4o',
      requests: 3,
      refusals: 0,
      errors: 0,
      aborted: 0,
      costNanoUsd: 3_000_001_250_005,
      latencyMeanMs: 511,
      latencyP50Ms: 200,
      latencyP95Ms: 1131,
    });
    expect(rows.find((row) => row.provider === 'anthropic')).toMatchObject({ requests: 1, errors: 1 });
  });

  it('is the spend source a budget rebuild reads', async () => {
    const source = postgresSpendSource(backend.db, backend.location);
    expect(await source.spent({ scope: 'key', id: 'k1', since: start, until: start + 24 * HOUR })).toBe(
      3_000_001_250_000,
    );
    expect((await source.idsWithSpend('tenant', start)).sort()).toEqual(['acme', 'globex']);
  });

  it("keeps a rebuild's reads to the callers of some tenants or keys when asked (a drift sample's)", async () => {
    const source = postgresSpendSource(backend.db, backend.location);
    const until = start + 24 * HOUR;
    const callers = async (only?: { tenantIds: string[]; keyIds: string[] }) =>
      (await source.spentByCaller(start, until, undefined, undefined, only))
        .map((row) => `${row.tenantId}/${row.keyId}=${row.spentNanoUsd}`)
        .sort();
    const all = await callers();
    expect(await callers({ tenantIds: ['globex'], keyIds: [] })).toEqual(['globex/k9=7']);
    // Two callers of key k1: its calls with tags and without.
    const k1 = ['acme/k1=1250000', 'acme/k1=3000000000000'];
    expect(await callers({ tenantIds: [], keyIds: ['k1'] })).toEqual(k1);
    expect(await callers({ tenantIds: ['globex'], keyIds: ['k1'] })).toEqual([...k1, 'globex/k9=7']);
    expect(await callers({ tenantIds: [], keyIds: [] })).toEqual([]);
    expect(all.length).toBeGreaterThan(2);
    const records = await source.recordsFinishedSince(start, until, start, { tenantIds: ['acme'], keyIds: [] });
    expect(records.map((record) => record.id).sort()).toEqual(['a1', 'a2', 'a3']);
    expect(records.some((record) => record.keyId !== null)).toBe(true);
    // Read with the fields that decide the budgets only (a drift sample of tenant budgets): the others are null.
    const narrow = await source.recordsFinishedSince(start, until, start, { tenantIds: ['acme'], keyIds: [] }, [
      'tenantId',
    ]);
    const byId = <R extends { id: string }>(rows: R[]) => [...rows].sort((a, b) => a.id.localeCompare(b.id));
    expect(
      byId(narrow).map(({ id, tenantId, keyId, userId, tags, spentNanoUsd }) => ({
        ...{ id, tenantId, keyId, userId, tags, spentNanoUsd },
      })),
    ).toEqual(
      byId(records).map(({ id, tenantId, spentNanoUsd }) => ({
        ...{ id, tenantId, keyId: null, userId: null, tags: null, spentNanoUsd },
      })),
    );
    // A tenant id that reads like SQL is a value, never a part of the query.
    expect(await callers({ tenantIds: ["acme') OR true --"], keyIds: [] })).toEqual([]);
  });
});
