// A rebuild's read of spend per caller: from the rollups when the fields asked for are kept there, and always exactly
// what the raw rows hold under its finish-time cuts, long calls that straddle a cut or a reset included, on PGlite and
// PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { migrateUsageLedger, postgresSpendSource } from '@tollgate/metering';
import { insertUsageRecords, ledgerTableName } from '../src/postgres-ledger.js';
import { LONG_CALL_MS, spendByCallerQuery } from '../src/spend-read.js';
import type { CallerFieldName, SpendByCallerRead } from '../src/spend-read.js';
import { pgliteBackend, postgresBackend } from './ledger-backends.js';
import type { Backend } from './ledger-backends.js';
import { sampleRecord } from './sample-record.js';
import { seeded } from './seeded.js';

const HOUR = 3_600_000;
const start = Date.UTC(2026, 10, 20, 0, 0);
const end = start + 72 * HOUR;

/** Three days of calls; one in eight takes from 50 minutes to 3 hours (long calls, and some just under the mark). */
function records(count: number): UsageRecord[] {
  const next = seeded(7);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)]!;
  return Array.from({ length: count }, (_, i) => {
    const tenant = pick(['acme', 'globex', null]);
    return sampleRecord({
      id: `r-${i}`,
      timestamp: new Date(start + Math.floor(next() * 72 * HOUR)).toISOString(),
      tenantId: tenant,
      keyId: tenant === null ? pick(['loose-1', null]) : `${tenant}-k${Math.floor(next() * 3)}`,
      userId: pick(['alice', 'bob', null]),
      feature: pick(['chat', 'search', null]),
      model: pick(['gpt-4o', 'claude-sonnet-4-5']),
      team: pick(['red', undefined]),
      session: pick(['s1', 's2', undefined]),
      tags: pick([['eu'], [], undefined]),
      costNanoUsd: next() < 0.1 ? 0 : Math.floor(next() * 1e12),
      latencyMs:
        next() < 0.125 ? Math.floor(50 * 60_000 + next() * 130 * 60_000) : pick([0, Math.floor(next() * 5_000)]),
    });
  });
}

const COLUMN: Record<CallerFieldName, keyof UsageRecord> = {
  keyId: 'keyId',
  userId: 'userId',
  tenantId: 'tenantId',
  feature: 'feature',
  model: 'model',
  tags: 'tags',
  session: 'session',
  team: 'team',
};
const ALL: CallerFieldName[] = ['keyId', 'userId', 'tenantId', 'feature', 'model', 'tags', 'session', 'team'];

/** What a read must answer, from the records themselves: `caller key => nano-USD`. */
function expected(all: readonly UsageRecord[], read: SpendByCallerRead): Map<string, number> {
  const fields = read.fields ?? ALL;
  const sums = new Map<string, number>();
  for (const record of all) {
    const started = Date.parse(record.timestamp);
    const finished = started + record.latencyMs;
    if (started < read.since || started >= read.until) continue;
    if (read.finishedBefore !== undefined && finished >= read.finishedBefore) continue;
    if (read.finishedFrom !== undefined && finished < read.finishedFrom) continue;
    if (
      read.only &&
      !read.only.tenantIds.includes(record.tenantId ?? '\0') &&
      !read.only.keyIds.includes(record.keyId ?? '\0')
    )
      continue;
    const key = keyOf(fields, (field) => {
      const value = record[COLUMN[field]] as unknown;
      if (field === 'tags') return Array.isArray(value) && value.length > 0 ? value : null;
      return value ?? null;
    });
    sums.set(key, (sums.get(key) ?? 0) + record.costNanoUsd);
  }
  for (const [key, sum] of sums) if (sum <= 0) sums.delete(key);
  return sums;
}

function keyOf(fields: readonly CallerFieldName[], value: (field: CallerFieldName) => unknown): string {
  return JSON.stringify(ALL.map((field) => (fields.includes(field) ? value(field) : null)));
}

const READS: [string, Omit<SpendByCallerRead, 'since' | 'until'> & { since?: number; until?: number }][] = [
  ['tenants and keys, cut a minute before the end', { fields: ['keyId', 'tenantId'], finishedBefore: end - 60_000 }],
  [
    'every field but sessions and tags (the hourly rollup), cut mid-hour',
    { fields: ['keyId', 'userId', 'tenantId', 'feature', 'model', 'team'], finishedBefore: end - 95 * 60_000 },
  ],
  [
    'models of tenants, after a reset on the second day',
    { fields: ['tenantId', 'model'], finishedFrom: start + 30.5 * HOUR, finishedBefore: end - 60_000 },
  ],
  ['nothing kept apart (a global budget)', { fields: [], finishedBefore: end - 60_000 }],
  [
    'a reset at a whole hour, kept to a tenant and a key',
    {
      fields: ['keyId', 'tenantId', 'userId'],
      finishedFrom: start + 40 * HOUR,
      finishedBefore: end - 60_000,
      only: { tenantIds: ['acme'], keyIds: ['loose-1'] },
    },
  ],
  ['sessions kept apart (raw rows)', { fields: ['session', 'tenantId'], finishedBefore: end - 60_000 }],
  ['every field (raw rows), a reset', { finishedFrom: start + 20 * HOUR + 1, finishedBefore: end - 60_000 }],
  ['from mid-day, no cut', { fields: ['tenantId'], since: start + 13.25 * HOUR }],
];

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend('spendread')],
])('spend per caller on %s', (_name, open: () => Promise<Backend>) => {
  let backend: Backend;
  const all = records(2_000);
  beforeAll(async () => {
    backend = await open();
    await migrateUsageLedger(backend.db, backend.location);
    for (let i = 0; i < all.length; i += 500)
      await insertUsageRecords(backend.db, all.slice(i, i + 500), backend.location);
  });
  afterAll(() => backend.close());

  it('holds long calls on both sides of the marks the reads cut at', () => {
    const long = all.filter((record) => record.latencyMs >= LONG_CALL_MS).length;
    const nearly = all.filter((record) => record.latencyMs >= 50 * 60_000 && record.latencyMs < LONG_CALL_MS).length;
    expect(long).toBeGreaterThan(100);
    expect(nearly).toBeGreaterThan(20);
  });

  it.each(READS)('answers exactly what the records hold: %s', async (_case, read) => {
    const full = { since: start, until: end, ...read };
    const source = postgresSpendSource(backend.db, backend.location);
    const answered = await source.spentByCaller(
      full.since,
      full.until,
      full.finishedBefore,
      full.finishedFrom,
      full.only,
      full.fields,
    );
    const got = new Map<string, number>();
    for (const row of answered) {
      const key = keyOf(full.fields ?? ALL, (field) => row[field] ?? null);
      expect(got.has(key)).toBe(false);
      got.set(key, row.spentNanoUsd);
      // A field not kept apart is answered null.
      for (const field of ALL) if (!(full.fields ?? ALL).includes(field)) expect(row[field] ?? null).toBeNull();
    }
    const want = expected(all, full);
    expect(want.size).toBeGreaterThan(0);
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(want));
  });

  it('reads the rollups when the fields are kept there, raw rows only for sessions and tags', () => {
    const table = ledgerTableName(backend.location);
    const query = (read: Omit<SpendByCallerRead, 'since' | 'until'>) =>
      spendByCallerQuery(table, backend.location, { since: start, until: end, finishedBefore: end - 60_000, ...read })
        .text;
    expect(query({ fields: ['keyId', 'tenantId'] })).toMatch(/_caller_daily/);
    expect(query({ fields: ['tenantId', 'model'] })).toMatch(/_daily/);
    expect(query({ fields: ['keyId', 'userId', 'tenantId', 'feature', 'model', 'team'] })).toMatch(/_hourly/);
    expect(query({ fields: ['session', 'tenantId'] })).not.toMatch(/_daily|_hourly/);
    expect(query({})).not.toMatch(/_daily|_hourly/);
  });
});
