// Every rollup holds exactly what the raw rows hold, to the nano-USD, for every grouping it keeps: filled at migration,
// kept by every insert, retried record ids counted once, on PGlite and PostgreSQL; reads take the smallest that fits.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { UsageRecord } from '@tollgate/core';
import { aggregateUsage, migrateUsageLedger, USAGE_GROUPINGS, usageOverTime } from '@tollgate/metering';
import type { UsageFilter, UsageGrouping } from '@tollgate/metering';
import { insertUsageRecords, ledgerTableName } from '../src/postgres-ledger.js';
import {
  CALLER_DAILY,
  DAILY,
  DAY_TOTALS,
  grainsKeeping,
  HOURLY,
  ROLLUP_GRAINS,
  rollupTableName,
  TENANT_DAILY,
  TENANT_HOURLY,
} from '../src/usage-rollups.js';
import type { RollupGrain } from '../src/usage-rollups.js';
import { pgliteBackend, postgresBackend } from './ledger-backends.js';
import type { Backend } from './ledger-backends.js';
import { sampleRecord } from './sample-record.js';
import { seeded } from './seeded.js';

const HOUR = 3_600_000;
const start = Date.UTC(2026, 10, 20, 0, 0);

function randomRecords(count: number, seed: number, prefix: string): UsageRecord[] {
  const next = seeded(seed);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)]!;
  const records: UsageRecord[] = [];
  for (let i = 0; i < count; i++) {
    const tenant = pick(['acme', 'globex', 'initech', null]);
    const refused = next() < 0.15;
    const cached = !refused && next() < 0.15;
    records.push(
      sampleRecord({
        id: `${prefix}-${i}`,
        requestId: `req-${i % 7}`,
        // Three days, at any millisecond: hours and days split at their UTC edges.
        timestamp: new Date(start + Math.floor(next() * 72 * HOUR)).toISOString(),
        tenantId: tenant,
        keyId: tenant === null ? pick(['loose-1', null]) : `${tenant}-k${Math.floor(next() * 3)}`,
        userId: pick(['alice', 'bob', null]),
        feature: pick(['chat', 'search', null]),
        model: pick(['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5']),
        provider: pick(['openai', 'anthropic']),
        team: pick(['red', undefined]),
        session: pick(['s1', 's2', undefined]),
        tags: pick([['eu'], ['eu', 'beta'], undefined]),
        inputTokens: Math.floor(next() * 100_000),
        cachedInputTokens: Math.floor(next() * 10_000),
        cacheWriteTokens: Math.floor(next() * 5_000),
        cacheWrite1hTokens: pick([0, 1_000]),
        outputTokens: Math.floor(next() * 20_000),
        reasoningTokens: Math.floor(next() * 3_000),
        // Up to $1,000 a call, to the nano: sums well past 2^32, exact.
        costNanoUsd: refused || cached ? 0 : Math.floor(next() * 1e12),
        estimatedCostNanoUsd: Math.floor(next() * 1e12),
        savedNanoUsd: cached ? Math.floor(next() * 1e9) : undefined,
        status: refused ? 429 : pick([200, 200, 200, 502, 0]),
        usageSource: cached ? 'cache' : 'provider',
        refusedBy: refused ? 'budget' : undefined,
        latencyMs: Math.floor(next() * 5_000),
      }),
    );
  }
  return records;
}

const SUMS = `count(*) AS requests, count(*) FILTER (WHERE refused_by IS NOT NULL) AS refusals,
  sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
  sum(cache_write_tokens) AS cache_write_tokens, sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
  sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens, sum(cost_nano_usd) AS cost_nano_usd,
  sum(estimated_cost_nano_usd) AS estimated_cost_nano_usd, count(*) FILTER (WHERE usage_source = 'cache') AS cache_hits,
  sum(saved_nano_usd) AS saved_nano_usd`;
const ROLLED_SUMS = [
  'requests',
  'refusals',
  'input_tokens',
  'cached_input_tokens',
  'cache_write_tokens',
  'cache_write_1h_tokens',
  'output_tokens',
  'reasoning_tokens',
  'cost_nano_usd',
  'estimated_cost_nano_usd',
  'cache_hits',
  'saved_nano_usd',
]
  .map((column) => `sum(${column}) AS ${column}`)
  .join(', ');

/** Every grouping an operator reads that a rollup keeps, as the raw rows' expression and the rollup's. */
function groupingsOf(grain: RollupGrain): [raw: string, rolled: string][] {
  const time = (format: string): [string, string] => [
    `to_char(ts AT TIME ZONE 'UTC', '${format}')`,
    `to_char(${grain.column} AT TIME ZONE 'UTC', '${format}')`,
  ];
  const keeps = (...columns: string[]) => columns.every((column) => grain.callers.includes(column));
  const both = (expression: string): [string, string] => [expression, expression];
  return [
    ...grain.callers.map(both),
    ['(status >= 400 OR status = 0)', 'failed'],
    ...(grain.column === 'hour' ? [time('YYYY-MM-DD HH24')] : []),
    time('YYYY-MM-DD'),
    ...(keeps('tenant_id')
      ? [
          [
            `tenant_id || to_char(ts AT TIME ZONE 'UTC', 'DD')`,
            `tenant_id || to_char(${grain.column} AT TIME ZONE 'UTC', 'DD')`,
          ] as [string, string],
        ]
      : []),
    ...(keeps('model', 'feature', 'team') ? [both(`model || coalesce(feature, '-') || team`)] : []),
    ...(keeps('tenant_id', 'key_id', 'user_id') ? [both(`key_id || coalesce(user_id, '-') || tenant_id`)] : []),
    ['1', '1'],
  ];
}

/** Sums as exact decimal strings (pg gives numeric as strings, PGlite some as numbers; both exact below 2^53 here). */
async function grouped(backend: Backend, expression: string, sums: string, table: string) {
  const result = await backend.db.query<Record<string, unknown>>(
    `SELECT ${expression} AS grp, ${sums} FROM ${table} GROUP BY 1 ORDER BY 1 NULLS LAST`,
  );
  return result.rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, String(v)])));
}

async function expectRollupExact(backend: Backend): Promise<void> {
  const raw = ledgerTableName(backend.location);
  for (const grain of ROLLUP_GRAINS)
    for (const [rawExpression, rolledExpression] of groupingsOf(grain))
      expect(await grouped(backend, rolledExpression, ROLLED_SUMS, rollupTableName(backend.location, grain))).toEqual(
        await grouped(backend, rawExpression, SUMS, raw),
      );
}

describe('the grain a read takes', () => {
  it('is, for each unit, the smallest that keeps its split and filter', () => {
    expect(grainsKeeping([])).toEqual([DAY_TOTALS, TENANT_HOURLY]);
    expect(grainsKeeping(['tenant_id'])).toEqual([TENANT_DAILY, TENANT_HOURLY]);
    expect(grainsKeeping(['feature'])).toEqual([DAY_TOTALS, TENANT_HOURLY]);
    expect(grainsKeeping(['model', 'tenant_id'])).toEqual([DAILY, TENANT_HOURLY]);
    expect(grainsKeeping(['key_id', 'tenant_id'])).toEqual([CALLER_DAILY, HOURLY]);
    expect(grainsKeeping(['user_id', 'model'])).toEqual([HOURLY]);
    expect(grainsKeeping(['session'])).toEqual([]);
  });
});

describe.each([
  ['PGlite', pgliteBackend],
  ['PostgreSQL', postgresBackend('tg_rollups')],
])('the rollups on %s', (_name, open) => {
  let backend: Backend;
  const first = randomRecords(300, 1, 'first');
  const second = randomRecords(600, 2, 'second');

  beforeAll(async () => {
    backend = await open();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('is filled from the rows stored before it existed, once', async () => {
    await migrateUsageLedger(backend.db, backend.location);
    await insertUsageRecords(backend.db, first, backend.location);
    // A ledger of the version before: its rows, no rollup.
    for (const grain of ROLLUP_GRAINS) await backend.db.query(`DROP TABLE ${rollupTableName(backend.location, grain)}`);
    await backend.db.query(
      `DROP TRIGGER "${backend.location.table ?? 'tollgate_usage'}_rollups" ON ${ledgerTableName(backend.location)}`,
    );
    await migrateUsageLedger(backend.db, backend.location);
    await expectRollupExact(backend);
    // Migrating again (every start does) adds nothing.
    await migrateUsageLedger(backend.db, backend.location);
    await expectRollupExact(backend);
  });

  it('counts each stored record once: retries of an id, in later batches and in the same one, add nothing', async () => {
    const batches: UsageRecord[][] = [];
    for (let i = 0; i < second.length; i += 50) batches.push(second.slice(i, i + 50));
    // Each batch also retries records of the batch before and of the first set, and repeats one of its own.
    const withRetries = batches.map((batch, i) => [
      ...batch,
      batch[0]!,
      ...(batches[i - 1] ?? []).slice(0, 10),
      ...first.slice(i * 5, i * 5 + 5),
    ]);
    // Several writers at once, as several processes' sinks are (PGlite runs them one after another).
    await Promise.all(withRetries.map((batch) => insertUsageRecords(backend.db, batch, backend.location)));
    await Promise.all(withRetries.map((batch) => insertUsageRecords(backend.db, batch, backend.location)));
    await expectRollupExact(backend);
    const total = await backend.db.query<{ cost: string; requests: string }>(
      `SELECT sum(cost_nano_usd) AS cost, sum(requests) AS requests FROM ${rollupTableName(backend.location, DAILY)}`,
    );
    const expected = [...first, ...second].reduce((sum, record) => sum + BigInt(record.costNanoUsd), 0n);
    expect(String(total.rows[0]!.cost)).toBe(expected.toString());
    expect(Number(total.rows[0]!.requests)).toBe(first.length + second.length);
  });

  /** The raw path: a ledger without a rollup (one this version has not migrated yet) is read from raw rows alone. */
  async function withoutRollup<T>(read: () => Promise<T>): Promise<T> {
    const table = backend.location.table ?? 'tollgate_usage';
    const schema = backend.location.schema === undefined ? '' : `"${backend.location.schema}".`;
    for (const grain of ROLLUP_GRAINS)
      await backend.db.query(
        `ALTER TABLE ${rollupTableName(backend.location, grain)} RENAME TO "hidden_${grain.suffix}"`,
      );
    try {
      return await read();
    } finally {
      for (const grain of ROLLUP_GRAINS)
        await backend.db.query(`ALTER TABLE ${schema}"hidden_${grain.suffix}" RENAME TO "${table}_${grain.suffix}"`);
    }
  }

  const ranges: [since: number, until: number][] = [
    [start, start + 72 * HOUR],
    [start + 1.25 * HOUR, start + 50.5 * HOUR],
    [start + 3 * HOUR + 1, start + 3 * HOUR + 2_000],
    [start + 10 * HOUR - 1, start + 11 * HOUR + 1],
    [start - 5 * HOUR, start + 24 * HOUR],
  ];

  it('answers aggregateUsage as raw rows alone do, for every grouping, range edge and tenant', async () => {
    for (const by of USAGE_GROUPINGS as readonly UsageGrouping[])
      for (const [since, until] of ranges)
        for (const tenantId of [undefined, 'acme'])
          for (const limit of [undefined, 3]) {
            const options = {
              ...backend.location,
              by,
              since: new Date(since),
              until: new Date(until),
              tenantId,
              limit,
            };
            expect(await aggregateUsage(backend.db, options)).toEqual(
              await withoutRollup(() => aggregateUsage(backend.db, options)),
            );
          }
  }, 120_000);

  it('answers usageOverTime as raw rows alone do, for buckets of hours and days and every split and filter', async () => {
    const filters: UsageFilter[] = [
      {},
      { tenantId: 'acme', status: 'ok' },
      { status: 'error' },
      { status: 200 },
      { keyId: 'acme-k1' },
    ];
    for (const bucketSeconds of [60, 3_600, 7_200, 86_400])
      for (const splitBy of [undefined, 'tenant', 'key', 'user', 'model', 'provider'] as const)
        for (const [since, until] of ranges)
          for (const filter of filters) {
            const options = {
              ...backend.location,
              ...filter,
              bucketSeconds,
              splitBy,
              since: new Date(since),
              until: new Date(until),
            };
            expect(await usageOverTime(backend.db, options)).toEqual(
              await withoutRollup(() => usageOverTime(backend.db, options)),
            );
          }
  }, 120_000);

  it('names the top groups of a series in SQL and sums the rest of each bucket', async () => {
    // Ranked by an aggregate then read in two steps (a split aggregateUsage groups by, filtered by tenant at most),
    // or in one statement (by provider, or filtered by status).
    const filters: UsageFilter[] = [{}, { tenantId: 'acme' }, { status: 'ok' }];
    for (const splitBy of ['tenant', 'model', 'key', 'provider'] as const)
      for (const filter of filters)
        for (const [since, until] of ranges.slice(0, 2)) {
          const options = {
            ...backend.location,
            ...filter,
            bucketSeconds: 86_400,
            splitBy,
            since: new Date(since),
            until: new Date(until),
          };
          const all = await usageOverTime(backend.db, options);
          const totals = new Map<string | null, number>();
          for (const point of all) totals.set(point.group, (totals.get(point.group) ?? 0) + point.costNanoUsd);
          const top = [...totals.entries()]
            .sort((a, b) => b[1] - a[1] || (a[0] === null ? 1 : b[0] === null ? -1 : a[0] < b[0] ? -1 : 1))
            .slice(0, 2)
            .map(([group]) => group);
          const ranked = await usageOverTime(backend.db, { ...options, topGroups: 2 });
          expect(ranked.filter((point) => !point.rest)).toEqual(all.filter((point) => top.includes(point.group)));
          const rest = new Map<number, number>();
          for (const point of all)
            if (!top.includes(point.group)) rest.set(point.bucket, (rest.get(point.bucket) ?? 0) + point.costNanoUsd);
          expect(
            ranked.filter((point) => point.rest).map((point) => [point.bucket, point.group, point.costNanoUsd]),
          ).toEqual([...rest.entries()].map(([bucket, cost]) => [bucket, null, cost]));
          // Groups named by the caller (ranked elsewhere): the same points, unranked; the rest the same way.
          const picked = [...totals.keys()].filter((group): group is string => group !== null).slice(-2);
          const named = await usageOverTime(backend.db, { ...options, namedGroups: picked });
          expect(named.filter((point) => !point.rest)).toEqual(
            all.filter((point) => point.group !== null && picked.includes(point.group)),
          );
          expect(named.reduce((sum, point) => sum + point.costNanoUsd, 0)).toBe(
            all.reduce((sum, point) => sum + point.costNanoUsd, 0),
          );
        }
  });

  it('pages, searches and picks groups in SQL, as the whole list would', async () => {
    for (const by of ['tenant', 'key', 'user', 'feature', 'session'] as const)
      for (const [since, until] of ranges.slice(0, 2)) {
        const options = { ...backend.location, by, since: new Date(since), until: new Date(until) };
        const all = await aggregateUsage(backend.db, options);
        expect(await aggregateUsage(backend.db, { ...options, limit: 2, offset: 1 })).toEqual(all.slice(1, 3));
        const ids = all.flatMap((row) => (row.group === null ? [] : [row.group]));
        const picked = [ids[0]!, ids[ids.length - 1]!];
        expect(await aggregateUsage(backend.db, { ...options, groups: picked })).toEqual(
          all.filter((row) => row.group !== null && picked.includes(row.group)),
        );
        const prefix = ids[0]!.slice(0, 2);
        expect(await aggregateUsage(backend.db, { ...options, groupPrefix: prefix })).toEqual(
          all.filter((row) => row.group?.startsWith(prefix)),
        );
        expect(await aggregateUsage(backend.db, { ...options, groupPrefix: '%' })).toEqual([]);
        expect(await aggregateUsage(backend.db, { ...options, named: true })).toEqual(
          all.filter((row) => row.group !== null),
        );
      }
  });

  it('keeps its sums when raw rows are deleted (retention)', async () => {
    const before = await grouped(backend, 'tenant_id', ROLLED_SUMS, rollupTableName(backend.location, DAILY));
    await backend.db.query(`DELETE FROM ${ledgerTableName(backend.location)} WHERE ts < $1`, [
      new Date(start + 24 * HOUR).toISOString(),
    ]);
    expect(await grouped(backend, 'tenant_id', ROLLED_SUMS, rollupTableName(backend.location, DAILY))).toEqual(before);
  });
});
