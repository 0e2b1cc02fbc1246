// The usage table by month on PGlite and PostgreSQL: each record stored once in its month's partition (or the default
// one), the rollups counting every insert once, months made ahead with rows moved out of the default partition,
// retention dropping whole old months while the rollups keep what they counted, and a table made before partitions
// turned into one without losing a row or a nano-USD.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { keepUsagePartitions, migrateUsageLedger, partitionUsageLedger } from '@tollgate/metering';
import { postgresSink } from '@tollgate/metering/postgres';
import { insertUsageRecords, isPartitioned, ledgerTableName } from '../src/postgres-ledger.js';
import { ROLLUP_GRAINS, rollupTableName } from '../src/usage-rollups.js';
import { MIN_RETENTION_MS, PARTITIONS_QUERY } from '../src/usage-partitions.js';
import { makeUnpartitionedLedger, pgliteBackend, postgresBackend } from './ledger-backends.js';
import type { Backend } from './ledger-backends.js';
import { sampleRecord } from './sample-record.js';

const DAY = 86_400_000;
const at = (iso: string) => Date.parse(iso);

function record(id: string, timestamp: string, costNanoUsd: number): UsageRecord {
  return sampleRecord({ id, requestId: id, timestamp, costNanoUsd });
}

/** Records in September (before any month partition), November, December and February of the next year. */
const RECORDS = [
  record('sep', '2026-09-10T08:00:00.000Z', 1_000_000_001),
  record('nov-1', '2026-11-01T00:00:00.000Z', 2_000_000_003),
  record('nov-2', '2026-11-30T23:59:59.999Z', 3_000_000_005),
  record('dec', '2026-12-01T00:00:00.000Z', 4_000_000_007),
  record('feb', '2027-02-14T12:00:00.000Z', 5_000_000_011),
];

async function partitionNames(backend: Backend): Promise<string[]> {
  const names = await backend.db.query<{ name: string }>(PARTITIONS_QUERY, [ledgerTableName(backend.location)]);
  return names.rows.map((row) => row.name);
}

async function partitions(backend: Backend): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const name of await partitionNames(backend)) {
    const qualified = backend.location.schema ? `"${backend.location.schema}"."${name}"` : `"${name}"`;
    const { rows } = await backend.db.query<{ n: number | string }>(`SELECT count(*) AS n FROM ${qualified}`);
    counts[name] = Number(rows[0]!.n);
  }
  return counts;
}

/** Raw rows' total and each rollup's, as exact strings. */
async function totals(backend: Backend): Promise<{ raw: string; rollups: string[] }> {
  const sum = async (table: string, column: string) => {
    const { rows } = await backend.db.query<{ total: unknown }>(
      `SELECT coalesce(sum(${column}), 0)::text AS total FROM ${table}`,
    );
    return String(rows[0]!.total);
  };
  return {
    raw: await sum(ledgerTableName(backend.location), 'cost_nano_usd'),
    rollups: await Promise.all(
      ROLLUP_GRAINS.map((grain) => sum(rollupTableName(backend.location, grain), 'cost_nano_usd')),
    ),
  };
}

const ALL = '15000000027';
const base = (backend: Backend) => (backend.location.table ?? 'tollgate_usage').slice(0, 40);

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend('tg_partitions')],
])('the usage table by month on %s', (_name, open) => {
  let backend: Backend;
  beforeEach(async () => {
    backend = await open();
  });
  afterEach(() => backend.close());

  it('stores each record once in its month, counts it once in every rollup, and drops whole months', async () => {
    const { db, location } = backend;
    const t = base(backend);
    await migrateUsageLedger(db, location);
    await keepUsagePartitions(db, location, { now: at('2026-11-15T00:00:00Z') });
    expect(await isPartitioned(db, location)).toBe(true);
    await insertUsageRecords(db, RECORDS, location);
    // A retried batch (the spool's replay after a crash) stores nothing and adds nothing.
    await insertUsageRecords(db, RECORDS.slice(1, 4), location);
    expect(await partitions(backend)).toMatchObject({
      [`${t}_p_default`]: 2,
      [`${t}_p202611`]: 2,
      [`${t}_p202612`]: 1,
      [`${t}_p202701`]: 0,
    });
    expect(await totals(backend)).toEqual({ raw: ALL, rollups: ROLLUP_GRAINS.map(() => ALL) });

    // January: March is made, and February's row, which waited in the default partition, moves into its month.
    await keepUsagePartitions(db, location, { now: at('2027-01-10T00:00:00Z') });
    const moved = await partitions(backend);
    expect(moved).toMatchObject({ [`${t}_p_default`]: 1, [`${t}_p202702`]: 1, [`${t}_p202703`]: 0 });
    expect(await totals(backend)).toEqual({ raw: ALL, rollups: ROLLUP_GRAINS.map(() => ALL) });
    await insertUsageRecords(db, [RECORDS[4]!], location);
    expect((await partitions(backend))[`${t}_p202702`]).toBe(1);

    // 93 days before 2027-03-20 is 2026-12-17: November ends before it and goes; December does not.
    const kept = await keepUsagePartitions(db, location, { now: at('2027-03-20T00:00:00Z'), retentionMs: 93 * DAY });
    expect(kept.dropped).toEqual([`${t}_p202611`]);
    const after = await partitions(backend);
    expect(after[`${t}_p202611`]).toBeUndefined();
    expect(after).toMatchObject({ [`${t}_p_default`]: 1, [`${t}_p202612`]: 1, [`${t}_p202704`]: 0 });
    // The raw rows of November are gone; every rollup still holds what was spent.
    expect(await totals(backend)).toEqual({ raw: '10000000019', rollups: ROLLUP_GRAINS.map(() => ALL) });
    expect(MIN_RETENTION_MS).toBe(93 * DAY);
  });

  it('turns a table made before partitions into one, keeping every row, id and rollup', async () => {
    const { db, location } = backend;
    const t = base(backend);
    // The ledger as the version before partitions made it: one table keyed by id, with its indexes, rollups and trigger.
    await makeUnpartitionedLedger(db, location);
    expect(await isPartitioned(db, location)).toBe(false);
    // Retention leaves a table made before partitions whole.
    expect(await keepUsagePartitions(db, location, { now: at('2027-06-01T00:00:00Z'), retentionMs: 93 * DAY })).toEqual(
      {
        partitioned: false,
        dropped: [],
      },
    );
    await insertUsageRecords(db, RECORDS.slice(0, 3), location);

    expect(await partitionUsageLedger(db, location, at('2026-11-15T00:00:00Z'))).toEqual({ converted: true });
    expect(await partitionUsageLedger(db, location, at('2026-11-15T00:00:00Z'))).toEqual({ converted: false });
    expect(await partitions(backend)).toEqual({
      [`${t}_p_before202612`]: 3,
      [`${t}_p_default`]: 0,
      [`${t}_p202612`]: 0,
      [`${t}_p202701`]: 0,
    });
    // Its indexes became the partitioned table's on it (attached, not built again beside them): as many as a month's.
    const indexCount = async (name: string) => {
      const { rows } = await db.query<{ n: number | string }>(
        `SELECT count(*) AS n FROM pg_index WHERE indrelid = to_regclass($1)`,
        [location.schema ? `"${location.schema}"."${name}"` : `"${name}"`],
      );
      return Number(rows[0]!.n);
    };
    expect(await indexCount(`${t}_p_before202612`)).toBe(await indexCount(`${t}_p202612`));
    // The old rows are still keyed: a retry of one stores nothing; new rows go to their months and are rolled up.
    await insertUsageRecords(db, RECORDS, location);
    expect(await totals(backend)).toEqual({ raw: ALL, rollups: ROLLUP_GRAINS.map(() => ALL) });
    expect(await partitions(backend)).toMatchObject({ [`${t}_p_before202612`]: 3, [`${t}_p202612`]: 1 });
    // A later start's migration keeps the layout as it is.
    await migrateUsageLedger(db, location);
    expect(await isPartitioned(db, location)).toBe(true);

    // The old table's partition goes once all its times are older than the retention.
    const kept = await keepUsagePartitions(db, location, { now: at('2027-03-10T00:00:00Z'), retentionMs: 93 * DAY });
    expect(kept.dropped).toEqual([`${t}_p_before202612`]);
    expect(await totals(backend)).toEqual({ raw: '9000000018', rollups: ROLLUP_GRAINS.map(() => ALL) });
  });
});

describe("the sink's upkeep", () => {
  it('drops the months older than its retention on its upkeep, and keeps the rollups', async () => {
    const backend = await pgliteBackend();
    try {
      const { db, location } = backend;
      const now = Date.now();
      const monthsAgo = (n: number) => {
        const date = new Date(now);
        return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() - n, 10);
      };
      // A ledger made six months ago, its months kept since, with a record in the month six months back and one now.
      await migrateUsageLedger(db, location);
      for (let n = 6; n >= 0; n--) await keepUsagePartitions(db, location, { now: monthsAgo(n) });
      const old = record('old', new Date(monthsAgo(6)).toISOString(), 7_000_000_001);
      const recent = record('recent', new Date(now).toISOString(), 3);
      await insertUsageRecords(db, [old], location);
      const errors: unknown[] = [];
      const sink = postgresSink({
        db,
        retentionMs: 93 * DAY,
        upkeepIntervalMs: 20,
        flushIntervalMs: 10,
        onError: (error) => errors.push(error),
      });
      sink.write(recent);
      await sink.flush();
      const oldMonth = `${base(backend)}_p${new Date(monthsAgo(6)).toISOString().slice(0, 7).replace('-', '')}`;
      for (let i = 0; i < 100 && (await partitionNames(backend)).includes(oldMonth); i++)
        await new Promise((resolve) => setTimeout(resolve, 20));
      await sink.close();
      expect(errors).toEqual([]);
      expect((await partitions(backend))[oldMonth]).toBeUndefined();
      expect(await totals(backend)).toEqual({ raw: '3', rollups: ROLLUP_GRAINS.map(() => '7000000004') });
    } finally {
      await backend.close();
    }
  });

  it('refuses a retention shorter than a quarter, and deletes nothing from a table made before partitions', async () => {
    expect(() => postgresSink({ db: { query: async () => ({ rows: [] }) } as never, retentionMs: 92 * DAY })).toThrow(
      /retentionMs must be at least 8035200000 \(93 days/,
    );
    const backend = await pgliteBackend();
    try {
      const { db, location } = backend;
      await makeUnpartitionedLedger(db, location);
      await insertUsageRecords(db, [record('ancient', '2020-01-01T00:00:00.000Z', 5)], location);
      const errors: Error[] = [];
      const sink = postgresSink({
        db,
        retentionMs: 93 * DAY,
        upkeepIntervalMs: 10,
        flushIntervalMs: 10,
        onError: (error) => errors.push(error as Error),
      });
      sink.write(record('now', new Date().toISOString(), 1));
      await sink.flush();
      for (let i = 0; i < 100 && errors.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      await sink.close();
      expect(errors.map((error) => error.message)).toEqual([
        expect.stringContaining('usage retention is not applied: "tollgate_usage" was made before partitions'),
      ]);
      expect((await totals(backend)).raw).toBe('6');
    } finally {
      await backend.close();
    }
  });
});
