// What operators read from the usage ledger beyond totals: spend over time, the latest records, per-provider health.
import { TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { COLUMNS, ledgerTableName } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';
import { aggregateUsage } from './usage-aggregate.js';
import type { UsageGrouping } from './usage-aggregate.js';
import { grainsKeeping, planRollupRead, rollupTableName } from './usage-rollups.js';

/** A filter on the columns an operator narrows by; each one present must match exactly. */
export interface UsageFilter {
  tenantId?: string;
  keyId?: string;
  userId?: string;
  feature?: string;
  model?: string;
  provider?: string;
  /** An HTTP status, `'ok'` (below 400) or `'error'` (400 and above, and 0: a call rebuilt after a crash). */
  status?: number | 'ok' | 'error';
}

const FILTER_COLUMNS = {
  tenantId: 'tenant_id',
  keyId: 'key_id',
  userId: 'user_id',
  feature: 'feature',
  model: 'model',
  provider: 'provider',
} as const satisfies Partial<Record<keyof UsageFilter, string>>;

/**
 * Adds `AND ...` conditions for a filter to `values` (placeholders continue from its length); `onRollup`: on the hourly
 * rollup's columns, which class a status as failed or not (a single status is not kept there: see canUseRollup).
 */
function filterSql(filter: UsageFilter, values: unknown[], onRollup = false): string {
  let sql = '';
  for (const [field, column] of Object.entries(FILTER_COLUMNS) as [keyof typeof FILTER_COLUMNS, string][]) {
    const value = filter[field];
    if (value === undefined) continue;
    values.push(value);
    sql += ` AND ${column} = $${values.length}`;
  }
  if (filter.status === 'ok') sql += onRollup ? ' AND NOT failed' : ' AND status BETWEEN 1 AND 399';
  else if (filter.status === 'error') sql += onRollup ? ' AND failed' : ' AND (status >= 400 OR status = 0)';
  else if (filter.status !== undefined) {
    if (!Number.isSafeInteger(filter.status))
      throw new TollgateError(
        'ERR_TG_METERING_INVALID_OPTION',
        `status must be an HTTP status, 'ok' or 'error'; got ${JSON.stringify(filter.status)}`,
      );
    values.push(filter.status);
    sql += ` AND status = $${values.length}::int`;
  }
  return sql;
}

/** The dimensions a time series can be split by. */
type SeriesSplit = 'model' | 'feature' | 'key' | 'user' | 'tenant' | 'provider';

const SPLIT_COLUMNS: Record<SeriesSplit, string> = {
  model: 'model',
  feature: 'feature',
  key: 'key_id',
  user: 'user_id',
  tenant: 'tenant_id',
  provider: 'provider',
};

interface UsageOverTimeOptions extends LedgerLocation, UsageFilter {
  /** Start (inclusive). */
  since: Date;
  /** End (exclusive). @default now */
  until?: Date;
  /** Width of one bucket in seconds; buckets are aligned to the Unix epoch, so hours and days are UTC ones. */
  bucketSeconds: number;
  /** Split each bucket by this column. @default one series */
  splitBy?: SeriesSplit;
  /**
   * With `splitBy`: only the groups that cost most over the range come by name, at most this many (chosen in SQL);
   * each bucket's rest is one point with `rest: true`. @default every group
   */
  topGroups?: number;
  /**
   * With `splitBy`: these groups come by name, each bucket's rest as one point with `rest: true`, without ranking them
   * over the range (what a caller that ranked them already passes: the overview, its table's top tenants).
   */
  namedGroups?: readonly string[];
}

export interface UsagePoint {
  /** Epoch ms of the bucket's start. */
  bucket: number;
  /** The split's value (null when unset, or without `splitBy`). */
  group: string | null;
  requests: number;
  /** Input tokens of every class: uncached, cached and cache writes. */
  inputTokens: number;
  outputTokens: number;
  costNanoUsd: number;
  /** The point sums the bucket's groups outside the `topGroups` (its `group` is null). */
  rest?: true;
}

/** The groups an aggregate ranks as a series splits (usageOverTime's topGroups, read in two steps). */
const RANKED_SPLITS: Partial<Record<SeriesSplit, UsageGrouping>> = {
  tenant: 'tenant',
  key: 'key',
  user: 'user',
  feature: 'feature',
  model: 'model',
};

/** Spend, requests and tokens per time bucket (and per group), oldest first; empty buckets are left out. */
export async function usageOverTime(db: Queryable, options: UsageOverTimeOptions): Promise<UsagePoint[]> {
  const ranking = options.splitBy === undefined ? undefined : RANKED_SPLITS[options.splitBy];
  const filters = Object.keys(FILTER_COLUMNS).filter((field) => options[field as keyof UsageFilter] !== undefined);
  const onlyTenant = filters.every((field) => field === 'tenantId') && options.status === undefined;
  const named = options.splitBy === undefined ? undefined : options.namedGroups;
  const ranks = ranking !== undefined && onlyTenant && options.topGroups !== undefined && validTop(options.topGroups);
  // Ranked in one statement (by provider, or filtered by status), or not split by name at all.
  if (named === undefined && !ranks) return seriesPoints(db, options);
  // In two steps, each on the smallest rollup that fits: the top groups over the range (a sum per group), unless the
  // caller names them, then their points (an index read each) and the buckets' totals; the rest of a bucket is its
  // total less its top groups.
  const { topGroups, namedGroups: _named, ...series } = options;
  const until = options.until ?? new Date();
  const groups =
    named ??
    (
      await aggregateUsage(db, {
        ...locationOf(options),
        by: ranking!,
        since: options.since,
        until,
        ...(options.tenantId === undefined ? {} : { tenantId: options.tenantId }),
        limit: topGroups,
      })
    ).map((row) => row.group);
  const [points, totals] = await Promise.all([
    groups.length === 0 ? [] : seriesPoints(db, { ...series, until, onlyGroups: groups }),
    seriesPoints(db, { ...series, until, splitBy: undefined }),
  ]);
  const merged: UsagePoint[] = [];
  let next = 0;
  for (const total of totals) {
    const rest = { ...total, group: null, rest: true as const };
    for (; next < points.length && points[next]!.bucket === total.bucket; next++) {
      const point = points[next]!;
      merged.push(point);
      rest.requests -= point.requests;
      rest.inputTokens -= point.inputTokens;
      rest.outputTokens -= point.outputTokens;
      rest.costNanoUsd -= point.costNanoUsd;
    }
    if (rest.requests > 0) merged.push(rest);
  }
  return merged;
}

function validTop(topGroups: number): boolean {
  return Number.isSafeInteger(topGroups) && topGroups >= 0;
}

function locationOf(location: LedgerLocation): LedgerLocation {
  return {
    ...(location.schema === undefined ? {} : { schema: location.schema }),
    ...(location.table === undefined ? {} : { table: location.table }),
  };
}

interface SeriesQuery extends UsageOverTimeOptions {
  /** Only these groups of the split (null: calls without one). */
  onlyGroups?: readonly (string | null)[];
}

async function seriesPoints(db: Queryable, options: SeriesQuery): Promise<UsagePoint[]> {
  const { bucketSeconds } = options;
  if (!Number.isSafeInteger(bucketSeconds) || bucketSeconds < 1)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `bucketSeconds must be a positive integer; got ${JSON.stringify(bucketSeconds)}`,
    );
  const split = options.splitBy === undefined ? 'NULL' : SPLIT_COLUMNS[options.splitBy];
  if (!split)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_GROUPING',
      `a series can be split by ${Object.keys(SPLIT_COLUMNS).join(', ')}; got ${JSON.stringify(options.splitBy)}`,
    );
  const until = options.until ?? new Date();
  const values: unknown[] = [options.since.toISOString(), until.toISOString(), bucketSeconds];
  const statusAndIds = filterSql(options, values);
  // The split's column has the same name in the rollups: this condition fits raw rows and rollups alike.
  let only = '';
  if (options.onlyGroups !== undefined) {
    values.push(options.onlyGroups.filter((group) => group !== null));
    const unset = options.onlyGroups.includes(null) ? ` OR ${split} IS NULL` : '';
    only = ` AND (${split} = ANY($${values.length}::text[])${unset})`;
  }
  const filter = statusAndIds + only;
  const { topGroups } = options;
  if (topGroups !== undefined) {
    if (!Number.isSafeInteger(topGroups) || topGroups < 0)
      throw new TollgateError(
        'ERR_TG_METERING_INVALID_OPTION',
        `topGroups must be a non-negative integer; got ${JSON.stringify(topGroups)}`,
      );
    values.push(topGroups);
  }
  const ranked = (points: string) =>
    topGroups === undefined
      ? points
      : // Materialized, and joined on a hashable key (an unset group is a key of its own): not a sort per point.
        `WITH points AS MATERIALIZED (${points}),
             top AS MATERIALIZED (SELECT grp IS NULL AS unset, coalesce(grp, '') AS id FROM points GROUP BY grp
                                   ORDER BY sum(cost_nano_usd) DESC, grp NULLS LAST LIMIT $${values.length}::int)
        SELECT bucket, CASE WHEN top.id IS NOT NULL THEN points.grp END AS grp, top.id IS NULL AS rest,
               sum(requests) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cost_nano_usd) AS cost_nano_usd
          FROM points LEFT JOIN top ON top.unset = (points.grp IS NULL) AND top.id = coalesce(points.grp, '')
         GROUP BY 1, 2, 3
         ORDER BY bucket, rest, grp NULLS LAST`;
  const bucket = (column: string) => `floor(extract(epoch FROM ${column}) / $3::int) * $3::int`;
  const raw = (range: string) => `SELECT ${bucket('ts')} AS bucket,
            ${split} AS grp,
            count(*) AS requests,
            coalesce(sum(input_tokens + cached_input_tokens + cache_write_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens,
            coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd
       FROM ${ledgerTableName(options)}
      WHERE ${range}${filter}`;
  const whole = 'ts >= $1 AND ts < $2';
  const order = 'GROUP BY bucket, grp ORDER BY bucket, grp NULLS LAST';
  // Buckets of whole hours or days: rollups that keep the split and the filter answer for the whole periods of the
  // range, raw rows for its edges (usage-rollups.ts). A single status is not kept there (failed or not only).
  const needs = [
    ...(options.splitBy === undefined ? [] : [split]),
    ...Object.entries(FILTER_COLUMNS)
      .filter(([field]) => options[field as keyof UsageFilter] !== undefined)
      .map(([, column]) => column),
  ];
  const usable = grainsKeeping(needs).filter((grain) => (bucketSeconds * 1000) % grain.ms === 0);
  const plan = typeof options.status === 'number' ? undefined : planRollupRead(options.since, until, usable, values);
  // On the rollups a status class is `failed`: the same placeholders, from the same values.
  const rollupFilter = filterSql(options, values.slice(0, 3), true) + only;
  const rawOnly = () => db.query<Record<string, unknown>>(ranked(`${raw(whole)} ${order}`), values);
  const query =
    plan === undefined
      ? rawOnly()
      : db
          .query<Record<string, unknown>>(
            ranked(`SELECT bucket, grp, sum(requests) AS requests, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, sum(cost_nano_usd) AS cost_nano_usd
               FROM (${raw(plan.raw)}
                     GROUP BY bucket, grp
                     ${plan.rollups
                       .map(
                         ({ grain, range }) => `UNION ALL
                     SELECT ${bucket(grain.column)} AS bucket, ${split} AS grp, sum(requests) AS requests,
                            sum(input_tokens + cached_input_tokens + cache_write_tokens) AS input_tokens,
                            sum(output_tokens) AS output_tokens, sum(cost_nano_usd) AS cost_nano_usd
                       FROM ${rollupTableName(options, grain)}
                      WHERE ${range}${rollupFilter}
                      GROUP BY bucket, grp`,
                       )
                       .join('\n')}) AS parts
              ${order}`),
            plan.values,
          )
          .catch((error: unknown) => {
            // A ledger this version has not migrated yet has no rollup: raw rows answer alone.
            if ((error as { code?: unknown }).code === '42P01') return rawOnly();
            throw error;
          });
  const result = await query;
  // pg returns bigint and numeric as strings, PGlite some as numbers: Number() reads both; sums stay below 2^53.
  return result.rows.map((row) => ({
    bucket: Number(row.bucket) * 1000,
    group: (row.grp as string | null) ?? null,
    requests: Number(row.requests),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    costNanoUsd: Number(row.cost_nano_usd),
    ...(row.rest === true ? { rest: true as const } : {}),
  }));
}

/** Where a page of records ends: the next page starts after it. */
export interface RecordCursor {
  timestamp: string;
  id: string;
}

interface RecentUsageOptions extends LedgerLocation, UsageFilter {
  /** Records per page, at most 500. @default 50 */
  limit?: number;
  /** Only records older than this one (the `next` of the previous page). */
  after?: RecordCursor;
  /** Only records at or after this time. */
  since?: Date;
}

interface RecentUsage {
  records: UsageRecord[];
  /** Pass as `after` for the next page; absent on the last one. */
  next?: RecordCursor;
}

const NUMERIC_FIELDS = new Set<keyof UsageRecord>([
  'inputTokens',
  'cachedInputTokens',
  'cacheWriteTokens',
  'outputTokens',
  'reasoningTokens',
  'costNanoUsd',
  'estimatedCostNanoUsd',
  'status',
  'latencyMs',
]);

const OPTIONAL_TEXTS = new Set<keyof UsageRecord>([
  'conversationId',
  'refusedBy',
  'kind',
  'tool',
  'shadowRefusal',
  'priceVersion',
  'serviceTier',
  'clientUserId',
  'session',
  'team',
]);

function recordFromRow(row: Record<string, unknown>): UsageRecord {
  const record: Record<string, unknown> = {};
  for (const [column, field] of COLUMNS) {
    const value = row[column];
    if (field === 'timestamp')
      record[field] = value instanceof Date ? value.toISOString() : new Date(String(value)).toISOString();
    // Absent means none for the optional counts (the insert stores them as 0).
    else if (field === 'cacheWrite1hTokens' || field === 'savedNanoUsd') {
      if (Number(value ?? 0) !== 0) record[field] = Number(value);
    } else if (field === 'tags') {
      // Absent means none, as on a record the meter made for a request without tags.
      if (Array.isArray(value) && value.length > 0) record[field] = value;
    } else if (field === 'abuseScore') {
      // Absent means not scored, as on a record the meter made for a caller the guard had no score for.
      if (value !== null && value !== undefined) record[field] = Number(value);
    } else if (OPTIONAL_TEXTS.has(field)) {
      // Absent means none, as on a record the meter made without an x-conversation-id, a refusal, a tool or a shadow.
      if (value !== null && value !== undefined) record[field] = value;
    } else if (NUMERIC_FIELDS.has(field)) record[field] = Number(value ?? 0);
    else record[field] = value ?? null;
  }
  return record as unknown as UsageRecord;
}

/** The newest records first, filtered, a page at a time. */
export async function recentUsage(db: Queryable, options: RecentUsageOptions = {}): Promise<RecentUsage> {
  const limit = options.limit ?? 50;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 500)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `limit must be an integer from 1 to 500; got ${JSON.stringify(limit)}`,
    );
  const values: unknown[] = [];
  let where = 'WHERE true';
  if (options.since) {
    values.push(options.since.toISOString());
    where += ` AND ts >= $${values.length}`;
  }
  if (options.after) {
    values.push(options.after.timestamp, options.after.id);
    where += ` AND (ts, id) < ($${values.length - 1}::timestamptz, $${values.length}::text)`;
  }
  where += filterSql(options, values);
  // One more than asked: tells whether a next page exists without a count.
  values.push(limit + 1);
  const result = await db.query<Record<string, unknown>>(
    `SELECT ${COLUMNS.map(([column]) => column).join(', ')} FROM ${ledgerTableName(options)} ${where} ORDER BY ts DESC, id DESC LIMIT $${values.length}::int`,
    values,
  );
  const records = result.rows.slice(0, limit).map(recordFromRow);
  const last = records[records.length - 1];
  return result.rows.length > limit && last
    ? { records, next: { timestamp: last.timestamp, id: last.id } }
    : { records };
}

interface ProviderUsageOptions extends LedgerLocation, UsageFilter {
  since: Date;
  /** @default now */
  until?: Date;
}

export interface ProviderUsage {
  provider: string | null;
  model: string | null;
  /** Every record, refusals by tollgate included. */
  requests: number;
  /** Requests tollgate refused itself (`refused_by` set: limits, budget, guard): the provider never saw them. */
  refusals: number;
  /**
   * Provider errors: answers with status 400 and above that tollgate did not refuse itself (502/504 for an
   * upstream that failed or timed out, the provider's own 4xx/5xx), or 0 (a call rebuilt after a crash).
   */
  errors: number;
  /** Client aborts. */
  aborted: number;
  costNanoUsd: number;
  /** Mean, median and 95th percentile of the request's latency, in ms, over the requests not refused by tollgate. */
  latencyMeanMs: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
}

/** Requests, errors, latency and spend per provider and model, busiest first. */
export async function usageByProvider(db: Queryable, options: ProviderUsageOptions): Promise<ProviderUsage[]> {
  const values: unknown[] = [options.since.toISOString(), (options.until ?? new Date()).toISOString()];
  const filter = filterSql(options, values);
  const result = await db.query<Record<string, unknown>>(
    `SELECT provider, model,
            count(*) AS requests,
            count(*) FILTER (WHERE refused_by IS NOT NULL) AS refusals,
            count(*) FILTER (WHERE (status >= 400 OR status = 0) AND refused_by IS NULL) AS errors,
            count(*) FILTER (WHERE aborted) AS aborted,
            coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd,
            coalesce(avg(latency_ms) FILTER (WHERE refused_by IS NULL), 0) AS latency_mean,
            coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
                       FILTER (WHERE refused_by IS NULL), 0) AS latency_p50,
            coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
                       FILTER (WHERE refused_by IS NULL), 0) AS latency_p95
       FROM ${ledgerTableName(options)}
      WHERE ts >= $1 AND ts < $2${filter}
      GROUP BY provider, model
      ORDER BY requests DESC, provider NULLS LAST, model NULLS LAST`,
    values,
  );
  return result.rows.map((row) => ({
    provider: (row.provider as string | null) ?? null,
    model: (row.model as string | null) ?? null,
    requests: Number(row.requests),
    refusals: Number(row.refusals),
    errors: Number(row.errors),
    aborted: Number(row.aborted),
    costNanoUsd: Number(row.cost_nano_usd),
    latencyMeanMs: Math.round(Number(row.latency_mean)),
    latencyP50Ms: Math.round(Number(row.latency_p50)),
    latencyP95Ms: Math.round(Number(row.latency_p95)),
  }));
}
