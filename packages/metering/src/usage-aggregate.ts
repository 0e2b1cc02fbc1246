// aggregateUsage: spend and tokens per tenant, feature, model, key, user, tag, session, team or day over a time range.
import { TollgateError } from '@tollgate/core';
import { ledgerTableName } from './ledger-names.js';
import type { LedgerLocation } from './ledger-names.js';
import type { Queryable } from './postgres-ledger.js';
import { grainsKeeping, planRollupRead, rollupTableName } from './usage-rollups.js';
import type { RollupGrain } from './usage-rollups.js';

export type UsageGrouping = 'tenant' | 'feature' | 'model' | 'day' | 'key' | 'user' | 'tag' | 'session' | 'team';
export const USAGE_GROUPINGS: readonly UsageGrouping[] = [
  'tenant',
  'feature',
  'model',
  'day',
  'key',
  'user',
  'tag',
  'session',
  'team',
];

const GROUP_EXPRESSIONS: Record<UsageGrouping, string> = {
  tenant: 'tenant_id',
  feature: 'feature',
  model: 'model',
  key: 'key_id',
  user: 'user_id',
  session: 'session',
  team: 'team',
  // One row per tag of each record (the lateral join below); an untagged record counts under null.
  tag: 'usage_tag.tag',
  day: `to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
};

export interface UsageAggregate {
  /**
   * The group's value (tenant id, feature, model, key, user, tag, session, or UTC day `YYYY-MM-DD`); null when unset. By tag,
   * a record with several tags counts in each of their groups (the groups then add up to more than the total).
   */
  group: string | null;
  /** Every record, refusals by tollgate included. */
  requests: number;
  /** Of `requests`, those tollgate refused itself (`refused_by` set: limits, budget, guard): no provider saw them. */
  refusals: number;
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  costNanoUsd: number;
  /** Requests answered from the response cache (`usage_source = 'cache'`). */
  cacheHits: number;
  /** What caching saved: response-cache hits and the provider's cached-input discount (`saved_nano_usd`). */
  savedNanoUsd: number;
}

interface AggregateOptions extends LedgerLocation {
  by: UsageGrouping;
  /** Start (inclusive). */
  since: Date;
  /** End (exclusive). @default now */
  until?: Date;
  /** Only this tenant. */
  tenantId?: string;
  /** At most this many groups, the most expensive (sessions are many: a dashboard shows the top ones). @default all */
  limit?: number;
  /** Groups skipped before the first returned, in the same order: the next page of `limit`. @default 0 */
  offset?: number;
  /** Only these groups (ids; not by day). */
  groups?: readonly string[];
  /** Only groups whose id starts with this (a search; not by day). */
  groupPrefix?: string;
  /** Leave out the calls without an id (the null group). By session, a tenant's are read from an index alone. */
  named?: boolean;
}

/** The sums of an aggregate over raw rows, named as the rollups' columns (usage-rollups.ts sums those alike). */
const AGGREGATE_SUMS = `count(*) AS requests,
            count(*) FILTER (WHERE refused_by IS NOT NULL) AS refusals,
            coalesce(sum(input_tokens), 0) AS input_tokens,
            coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,
            coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens,
            coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
            coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd,
            count(*) FILTER (WHERE usage_source = 'cache') AS cache_hits,
            coalesce(sum(saved_nano_usd), 0) AS saved_nano_usd`;

/**
 * Spend and tokens per group over a time range, most expensive first (by day: in date order). Whole UTC days and hours
 * of the range are read from the rollups that keep the grouping, the parts of hours at its edges from raw rows: the
 * same answer as raw rows alone while those are kept (docs/usage-rollups.md). By tag and session: raw rows.
 */
export async function aggregateUsage(db: Queryable, options: AggregateOptions): Promise<UsageAggregate[]> {
  const expression = GROUP_EXPRESSIONS[options.by];
  if (!expression)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_GROUPING',
      `usage can be grouped by ${USAGE_GROUPINGS.join(', ')}; got ${JSON.stringify(options.by)}`,
    );
  const until = options.until ?? new Date();
  const values: unknown[] = [options.since.toISOString(), until.toISOString()];
  let filter = '';
  if (options.tenantId !== undefined) {
    values.push(options.tenantId);
    filter = ` AND tenant_id = $${values.length}`;
  }
  if ((options.groups !== undefined || options.groupPrefix !== undefined) && options.by === 'day')
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'groups and groupPrefix choose ids; by day there are none',
    );
  // The raw expression of an id grouping is the rollups' column of the same name: one filter fits both.
  if (options.groups !== undefined) {
    values.push([...options.groups]);
    filter += ` AND ${expression} = ANY($${values.length}::text[])`;
  }
  if (options.named === true) filter += ` AND ${expression} IS NOT NULL`;
  if (options.groupPrefix !== undefined) {
    values.push(`${options.groupPrefix.replace(/[\\%_]/g, '\\$&')}%`);
    filter += ` AND ${expression} LIKE $${values.length}`;
  }
  const order = options.by === 'day' ? 'grp NULLS LAST' : 'cost_nano_usd DESC, grp NULLS LAST';
  let limit = '';
  if (options.limit !== undefined) {
    values.push(Math.max(0, Math.floor(options.limit)));
    limit = ` LIMIT $${values.length}`;
  }
  if (options.offset !== undefined) {
    values.push(Math.max(0, Math.floor(options.offset)));
    limit += ` OFFSET $${values.length}`;
  }
  const raw = `SELECT ${expression} AS grp, ${AGGREGATE_SUMS}
       FROM ${ledgerTableName(options)}${options.by === 'tag' ? ' LEFT JOIN LATERAL unnest(tags) AS usage_tag(tag) ON true' : ''}
      WHERE ts >= $1 AND ts < $2${filter}
      GROUP BY grp
      ORDER BY ${order}${limit}`;
  const combined = rolledUpAggregateSql(options, until, values, filter, order + limit);
  const result = await (combined === undefined
    ? db.query<Record<string, string | null>>(raw, values)
    : db.query<Record<string, string | null>>(combined.sql, combined.values).catch((error: unknown) => {
        // A ledger this version has not migrated yet has no rollup: raw rows answer alone.
        if ((error as { code?: unknown }).code === '42P01') return db.query<Record<string, string | null>>(raw, values);
        throw error;
      }));
  // bigint and numeric arrive as strings; every sum here stays below 2^53.
  return result.rows.map((row) => ({
    group: row.grp ?? null,
    requests: Number(row.requests),
    refusals: Number(row.refusals),
    inputTokens: Number(row.input_tokens),
    cachedInputTokens: Number(row.cached_input_tokens),
    cacheWriteTokens: Number(row.cache_write_tokens),
    outputTokens: Number(row.output_tokens),
    reasoningTokens: Number(row.reasoning_tokens),
    costNanoUsd: Number(row.cost_nano_usd),
    cacheHits: Number(row.cache_hits),
    savedNanoUsd: Number(row.saved_nano_usd),
  }));
}

/** The groupings a rollup can answer, as the raw columns they need (tags and sessions are not kept: too many). */
const ROLLED_GROUPS: Partial<Record<UsageGrouping, string[]>> = {
  tenant: ['tenant_id'],
  key: ['key_id'],
  user: ['user_id'],
  feature: ['feature'],
  model: ['model'],
  team: ['team'],
  day: [],
};

/** The columns of AGGREGATE_SUMS, which the rollups hold under the same names. */
const AGGREGATE_COLUMNS = [
  'requests',
  'refusals',
  'input_tokens',
  'cached_input_tokens',
  'cache_write_tokens',
  'output_tokens',
  'reasoning_tokens',
  'cost_nano_usd',
  'cache_hits',
  'saved_nano_usd',
];

/**
 * aggregateUsage's query over the rollups for the whole days and hours of [since, until) and over raw rows for the
 * rest, or undefined when no rollup keeps the grouping or the range holds no whole hour. `values` holds since, until
 * and the placeholders of `filter` (on tenant_id and the group's column) and `orderAndLimit`.
 */
function rolledUpAggregateSql(
  options: AggregateOptions,
  until: Date,
  values: readonly unknown[],
  filter: string,
  orderAndLimit: string,
): { sql: string; values: unknown[] } | undefined {
  const needs = ROLLED_GROUPS[options.by];
  const filtered = options.tenantId === undefined ? [] : ['tenant_id'];
  const plan = needs && planRollupRead(options.since, until, grainsKeeping([...needs, ...filtered]), values);
  if (plan === undefined) return undefined;
  const sums = AGGREGATE_COLUMNS.map((column) => `sum(${column}) AS ${column}`).join(', ');
  const group = (grain: RollupGrain) =>
    options.by === 'day' ? `to_char(${grain.column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')` : needs![0]!;
  const sql = `SELECT grp, ${sums}
       FROM (SELECT ${GROUP_EXPRESSIONS[options.by]} AS grp, ${AGGREGATE_SUMS}
               FROM ${ledgerTableName(options)}
              WHERE ${plan.raw}${filter}
              GROUP BY grp
             ${plan.rollups
               .map(
                 ({ grain, range }) => `UNION ALL
             SELECT ${group(grain)} AS grp, ${sums}
               FROM ${rollupTableName(options, grain)}
              WHERE ${range}${filter}
              GROUP BY grp`,
               )
               .join('\n')}) AS parts
      GROUP BY grp
      ORDER BY ${orderAndLimit}`;
  return { sql, values: plan.values };
}
