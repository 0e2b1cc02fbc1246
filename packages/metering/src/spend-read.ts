// The usage ledger summed per caller for a budget rebuild (`postgresSpendSource().spentByCaller`): from the rollups for
// whole hours and days when the caller fields asked for are kept there, raw rows for the last hours and the edges, and
// exact in its finish-time cuts (a call is in a rollup by when it started).
import { grainsKeeping, planRollupRead, rollupTableName } from './usage-rollups.js';
import type { LedgerLocation } from './ledger-names.js';

/**
 * A call longer than this is a long call: the usage table keeps an index of them (`<table>_long_calls`), so a read can
 * find the few calls that started long before a cut and finished after it without reading the rows in between.
 */
export const LONG_CALL_MS = 3_600_000;

/** The index of long calls, in the usage table's migration. */
export function longCallIndexSql(table: string, index: string): string {
  return `CREATE INDEX IF NOT EXISTS ${index} ON ${table} (ts) WHERE latency_ms >= ${LONG_CALL_MS}`;
}

/** A caller field as @tollgate/budget names it (`CallerField`), and the ledger column it is recorded in. */
const FIELD_COLUMNS = {
  keyId: 'key_id',
  userId: 'user_id',
  tenantId: 'tenant_id',
  feature: 'feature',
  model: 'model',
  tags: 'tags',
  session: 'session',
  team: 'team',
} as const;
export type CallerFieldName = keyof typeof FIELD_COLUMNS;
const ALL_FIELDS = Object.keys(FIELD_COLUMNS) as CallerFieldName[];

/**
 * The caller columns of a read keeping `fields` apart (every one: undefined): the kept ones (no tags and an empty list
 * one caller: records written before tags were kept hold NULL), the others NULL of their type.
 */
export function callerColumns(fields: readonly CallerFieldName[] = ALL_FIELDS) {
  const kept = fields.map((field) => FIELD_COLUMNS[field]);
  const keptSql = kept.map((column) => (column === 'tags' ? `nullif(tags, '{}')` : column));
  const unkept = ALL_FIELDS.filter((field) => !fields.includes(field)).map(
    (field) => `NULL::${field === 'tags' ? 'text[]' : 'text'} AS ${FIELD_COLUMNS[field]}`,
  );
  return {
    kept,
    keptSql,
    unkept,
    select: [...kept.map((column, i) => `${keptSql[i]} AS ${column}`), ...unkept].join(', '),
  };
}

/** When a record's call finished, in SQL: its timestamp plus its latency (what a settle names it by, SettledRecord). */
export const FINISHED = `(ts + latency_ms * interval '1 millisecond')`;

/** The callers a read keeps to: of one of the tenants or keys (the shape of @tollgate/budget's `CallerFilter`). */
export interface CallerFilterRows {
  tenantIds: readonly string[];
  keyIds: readonly string[];
}

/** `only` as a condition on the rows, its values pushed onto `values`: '' for every row. */
export function callersCondition(only: CallerFilterRows | undefined, values: unknown[]): string {
  if (!only) return '';
  values.push([...only.tenantIds], [...only.keyIds]);
  return ` AND (tenant_id = ANY($${values.length - 1}::text[]) OR key_id = ANY($${values.length}::text[]))`;
}

/** One read of spend per caller (epoch ms), as `SpendSource.spentByCaller` is asked it. */
export interface SpendByCallerRead {
  since: number;
  until: number;
  finishedBefore?: number | undefined;
  finishedFrom?: number | undefined;
  only?: CallerFilterRows | undefined;
  /** The caller fields kept apart; the others are answered null. Undefined: every field. */
  fields?: readonly CallerFieldName[] | undefined;
}

/**
 * The query of `read` over `table`: one row per caller (the fields kept, the others null) with its spend, callers with
 * none left out. Where a rollup keeps every field asked for (and the tenant and key with `only`), the read is, exactly:
 *
 * - every call started in [lo, hi) from the rollups' whole days and hours and raw rows at their edges, where lo is the
 *   reset (`finishedFrom`: a call started after it finished after it) and hi an hour of long calls before the cut
 *   (`finishedBefore`), less the long calls started there that finished at or after the cut (the only ones that can);
 * - raw rows, with the finish-time conditions, from hi on (the last hour or two) and from an hour of long calls before
 *   the reset to it, and the long calls started before that which finished after the reset.
 *
 * Otherwise (sessions or tags kept apart, no whole hour in the range) the raw rows alone, grouped by the fields asked.
 */
export function spendByCallerQuery(
  table: string,
  location: LedgerLocation,
  read: SpendByCallerRead,
): { text: string; values: unknown[] } {
  const { kept, keptSql, unkept, select } = callerColumns(read.fields);
  const groupBy = kept.length === 0 ? '' : ` GROUP BY ${keptSql.join(', ')}`;

  const { since, until, finishedBefore, finishedFrom, only } = read;
  const lo = finishedFrom === undefined ? since : Math.max(since, finishedFrom);
  const hi = finishedBefore === undefined ? until : Math.min(until, finishedBefore - LONG_CALL_MS);
  const grains = grainsKeeping(only ? [...kept, 'tenant_id', 'key_id'] : kept);
  const plan =
    grains.length > 0 && lo < hi
      ? planRollupRead(new Date(lo), new Date(hi), grains, [new Date(lo).toISOString(), new Date(hi).toISOString()])
      : undefined;

  const values: unknown[] = plan ? plan.values : [];
  const param = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  const at = (ms: number) => `${param(new Date(ms).toISOString())}::timestamptz`;
  // One condition (and its two values) for every part.
  const callers = callersCondition(only, values);
  const finished = () =>
    (finishedBefore === undefined ? '' : ` AND ${FINISHED} < ${at(finishedBefore)}`) +
    (finishedFrom === undefined ? '' : ` AND ${FINISHED} >= ${at(finishedFrom)}`);
  const part = (from: string, where: string, sign = '') =>
    `SELECT ${select}, ${sign}sum(cost_nano_usd) AS spent FROM ${from} WHERE ${where}${callers}${groupBy}`;
  const rawRange = (a: number, b: number) => `ts >= ${at(a)} AND ts < ${at(b)}`;

  if (!plan)
    return { text: `${part(table, `${rawRange(since, until)}${finished()}`)} HAVING sum(cost_nano_usd) > 0`, values };
  const parts = [
    ...plan.rollups.map(({ grain, range }) => part(rollupTableName(location, grain), range)),
    part(table, plan.raw),
  ];
  // The calls started in [lo, hi) that finished at or after the cut: each is a long call (hi is LONG_CALL_MS before it).
  if (finishedBefore !== undefined)
    parts.push(
      part(
        table,
        `latency_ms >= ${LONG_CALL_MS} AND ts >= $1 AND ts < $2 AND ${FINISHED} >= ${at(finishedBefore)}`,
        '-',
      ),
    );
  if (hi < until) parts.push(part(table, `${rawRange(hi, until)}${finished()}`));
  if (lo > since) {
    // Before the reset: the calls that finished after it, each a long call but those of its last LONG_CALL_MS.
    const longFrom = Math.max(since, lo - LONG_CALL_MS);
    parts.push(part(table, `${rawRange(longFrom, lo)}${finished()}`));
    if (longFrom > since)
      parts.push(part(table, `latency_ms >= ${LONG_CALL_MS} AND ${rawRange(since, longFrom)}${finished()}`));
  }
  const outer = [...kept, ...unkept, 'sum(spent) AS spent'].join(', ');
  const outerGroupBy = kept.length === 0 ? '' : ` GROUP BY ${kept.join(', ')}`;
  return {
    text: `SELECT ${outer} FROM (${parts.join('\n UNION ALL ')}) AS parts${outerGroupBy} HAVING sum(spent) > 0`,
    values,
  };
}
