// What operators read from the usage ledger beyond totals: spend over time, the latest records, per-provider health.
import { TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { COLUMNS, ledgerTableName } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';

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

/** Adds `AND ...` conditions for a filter to `values` (placeholders continue from its length). */
function filterSql(filter: UsageFilter, values: unknown[]): string {
  let sql = '';
  for (const [field, column] of Object.entries(FILTER_COLUMNS) as [keyof typeof FILTER_COLUMNS, string][]) {
    const value = filter[field];
    if (value === undefined) continue;
    values.push(value);
    sql += ` AND ${column} = $${values.length}`;
  }
  if (filter.status === 'ok') sql += ' AND status BETWEEN 1 AND 399';
  else if (filter.status === 'error') sql += ' AND (status >= 400 OR status = 0)';
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
export type SeriesSplit = 'model' | 'feature' | 'key' | 'user' | 'tenant' | 'provider';

const SPLIT_COLUMNS: Record<SeriesSplit, string> = {
  model: 'model',
  feature: 'feature',
  key: 'key_id',
  user: 'user_id',
  tenant: 'tenant_id',
  provider: 'provider',
};

export interface UsageOverTimeOptions extends LedgerLocation, UsageFilter {
  /** Start (inclusive). */
  since: Date;
  /** End (exclusive). @default now */
  until?: Date;
  /** Width of one bucket in seconds; buckets are aligned to the Unix epoch, so hours and days are UTC ones. */
  bucketSeconds: number;
  /** Split each bucket by this column. @default one series */
  splitBy?: SeriesSplit;
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
}

/** Spend, requests and tokens per time bucket (and per group), oldest first; empty buckets are left out. */
export async function usageOverTime(db: Queryable, options: UsageOverTimeOptions): Promise<UsagePoint[]> {
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
  const values: unknown[] = [options.since.toISOString(), (options.until ?? new Date()).toISOString(), bucketSeconds];
  const filter = filterSql(options, values);
  const result = await db.query<Record<string, unknown>>(
    `SELECT floor(extract(epoch FROM ts) / $3::int) * $3::int AS bucket,
            ${split} AS grp,
            count(*) AS requests,
            coalesce(sum(input_tokens + cached_input_tokens + cache_write_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens,
            coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd
       FROM ${ledgerTableName(options)}
      WHERE ts >= $1 AND ts < $2${filter}
      GROUP BY bucket, grp
      ORDER BY bucket, grp NULLS LAST`,
    values,
  );
  // pg returns bigint and numeric as strings, PGlite some as numbers: Number() reads both; sums stay below 2^53.
  return result.rows.map((row) => ({
    bucket: Number(row.bucket) * 1000,
    group: (row.grp as string | null) ?? null,
    requests: Number(row.requests),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
    costNanoUsd: Number(row.cost_nano_usd),
  }));
}

/** Where a page of records ends: the next page starts after it. */
export interface RecordCursor {
  timestamp: string;
  id: string;
}

export interface RecentUsageOptions extends LedgerLocation, UsageFilter {
  /** Records per page, at most 500. @default 50 */
  limit?: number;
  /** Only records older than this one (the `next` of the previous page). */
  after?: RecordCursor;
  /** Only records at or after this time. */
  since?: Date;
}

export interface RecentUsage {
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

export interface ProviderUsageOptions extends LedgerLocation, UsageFilter {
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
