// Usage summed per UTC hour and per UTC day as it is written (`<usage table>_hourly`, `_daily` and finer-cut grains),
// and the plan that splits a read's range between them and raw rows.
import { besideUsageTable, ledgerTableName, quoteIdentifier } from './ledger-names.js';
import type { LedgerLocation } from './ledger-names.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** One rollup: its table's suffix, its time column (of the UTC unit it sums by) and the caller columns it keeps. */
export interface RollupGrain {
  suffix: string;
  column: 'hour' | 'day';
  ms: number;
  /** Raw columns of the same name; a rollup row's key is its time, these and `failed`. */
  callers: readonly string[];
}

/** Every caller: what the pages of one tenant, key or user read. */
export const HOURLY: RollupGrain = {
  suffix: 'hourly',
  column: 'hour',
  ms: HOUR_MS,
  callers: ['tenant_id', 'key_id', 'user_id', 'feature', 'model', 'team', 'provider'],
};

/** A tenant's hours without keys and users: its page's series and its lists by model and feature, at their edges. */
export const TENANT_HOURLY: RollupGrain = {
  suffix: 'tenant_hourly',
  column: 'hour',
  ms: HOUR_MS,
  callers: ['tenant_id', 'feature', 'model', 'team', 'provider'],
};

/**
 * Without keys and users: what reports and the overview read over months. With 100,000 keys most keys call less than
 * once an hour, so the hourly rollup has nearly a row per raw row (bench/ledger-scale.ts); this one does not.
 */
export const DAILY: RollupGrain = {
  suffix: 'daily',
  column: 'day',
  ms: DAY_MS,
  callers: ['tenant_id', 'feature', 'model', 'team', 'provider'],
};

/** A tenant's keys and end users per day: its page's lists by key and user over days. */
export const CALLER_DAILY: RollupGrain = {
  suffix: 'caller_daily',
  column: 'day',
  ms: DAY_MS,
  callers: ['tenant_id', 'key_id', 'user_id'],
};

/** A tenant's day, nothing finer: the report and the overview by tenant (a row per tenant and day at most). */
export const TENANT_DAILY: RollupGrain = {
  suffix: 'tenant_daily',
  column: 'day',
  ms: DAY_MS,
  callers: ['tenant_id'],
};

/** The day over every tenant: the overview's features, and totals by model, team or day (a few hundred rows a day). */
export const DAY_TOTALS: RollupGrain = {
  suffix: 'day_totals',
  column: 'day',
  ms: DAY_MS,
  callers: ['feature', 'model', 'team', 'provider'],
};

/**
 * Every rollup, each unit's smallest first (by the rows it holds in a typical ledger): a read takes, for each unit,
 * the first grain that keeps its split and filter.
 */
export const ROLLUP_GRAINS: readonly RollupGrain[] = [
  DAY_TOTALS,
  TENANT_DAILY,
  CALLER_DAILY,
  DAILY,
  TENANT_HOURLY,
  HOURLY,
];

/** A rollup table: `<usage table>_<grain suffix>`, next to the usage table in its schema. */
export function rollupTableName(location: LedgerLocation = {}, grain: RollupGrain = HOURLY): string {
  return besideUsageTable(location, grain.suffix);
}

/** Whether a call failed (the ledger queries' `status: 'error'`): a status of 400 and above, or 0 (rebuilt after a crash). */
const FAILED = '(status >= 400 OR status = 0)';

/** Each summed column of a rollup row and what it sums of the raw rows. */
const ROLLUP_SUMS: readonly [column: string, ofRawRows: string][] = [
  ['requests', 'count(*)'],
  ['refusals', 'count(*) FILTER (WHERE refused_by IS NOT NULL)'],
  ['input_tokens', 'sum(input_tokens)'],
  ['cached_input_tokens', 'sum(cached_input_tokens)'],
  ['cache_write_tokens', 'sum(cache_write_tokens)'],
  ['cache_write_1h_tokens', 'sum(cache_write_1h_tokens)'],
  ['output_tokens', 'sum(output_tokens)'],
  ['reasoning_tokens', 'sum(reasoning_tokens)'],
  ['cost_nano_usd', 'sum(cost_nano_usd)'],
  ['estimated_cost_nano_usd', 'sum(estimated_cost_nano_usd)'],
  ['cache_hits', `count(*) FILTER (WHERE usage_source = 'cache')`],
  ['saved_nano_usd', 'sum(saved_nano_usd)'],
];

const keyColumns = (grain: RollupGrain) => [grain.column, ...grain.callers, 'failed'];

/** The raw rows of `source` summed into rollup rows, in key order (writers lock rollup rows in one order: no deadlock). */
function rollupSelect(grain: RollupGrain, source: string): string {
  const positions = keyColumns(grain).map((_, i) => i + 1);
  // The UTC hour or day whatever the session's time zone (date_trunc on a timestamptz follows it).
  return `SELECT date_trunc('${grain.column}', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS ${grain.column},
            ${grain.callers.join(', ')}, ${FAILED} AS failed,
            ${ROLLUP_SUMS.map(([column, sum]) => `${sum} AS ${column}`).join(', ')}
       FROM ${source}
      GROUP BY ${positions.join(', ')}
      ORDER BY ${positions.join(', ')}`;
}

/**
 * The rollups' migration (run by the ledger's, under its lock, after the usage table's): each table, made and filled
 * from the raw rows once, and the statement trigger that adds every later insert's rows to them in the insert's own
 * transaction. A trigger rather than a clause of the sink's insert, so that every writer is counted, an older version's
 * during a rolling upgrade too. Its transition table holds only the rows the insert stored: a retried record id, skipped
 * by `ON CONFLICT DO NOTHING`, is not counted twice. Nothing updates a usage row; a deleted one (retention) stays counted.
 */
export function rollupMigrationSql(location: LedgerLocation = {}): string[] {
  const usage = ledgerTableName(location);
  const base = (location.table ?? 'tollgate_usage').slice(0, 40);
  const name = (suffix: string) => quoteIdentifier(`${base}_${suffix}`, 'name');
  const literal = (sql: string) => `'${sql.replaceAll("'", "''")}'`;
  const add = (grain: RollupGrain, source: string) => {
    const rollup = rollupTableName(location, grain);
    return `INSERT INTO ${rollup} (${keyColumns(grain).join(', ')}, ${ROLLUP_SUMS.map(([column]) => column).join(', ')})
     ${rollupSelect(grain, source)}
     ON CONFLICT ON CONSTRAINT ${name(`${grain.suffix}_key`)} DO UPDATE SET
       ${ROLLUP_SUMS.map(([column]) => `${column} = ${rollup}.${column} + EXCLUDED.${column}`).join(', ')}`;
  };
  const tables = ROLLUP_GRAINS.flatMap((grain) => {
    const rollup = rollupTableName(location, grain);
    const create = `CREATE TABLE ${rollup} (
      ${grain.column} timestamptz NOT NULL,
      ${grain.callers.map((column) => `${column} text`).join(', ')},
      failed boolean NOT NULL,
      ${ROLLUP_SUMS.map(([column]) => `${column} bigint NOT NULL`).join(', ')},
      CONSTRAINT ${name(`${grain.suffix}_key`)} UNIQUE NULLS NOT DISTINCT (${keyColumns(grain).join(', ')})
    )`;
    return [
      // Made and filled in one step, once: the lock keeps inserts out between the fill's read and the trigger's start.
      `DO $rollup$ BEGIN
         IF to_regclass(${literal(rollup)}) IS NULL THEN
           EXECUTE ${literal(create)};
           EXECUTE ${literal(`LOCK TABLE ${usage} IN SHARE ROW EXCLUSIVE MODE`)};
           EXECUTE ${literal(add(grain, usage))};
         END IF;
       END $rollup$`,
      // A grain without tenants is read by its time column, which leads its key already.
      ...(grain.callers.includes('tenant_id')
        ? [`CREATE INDEX IF NOT EXISTS ${name(`${grain.suffix}_tenant`)} ON ${rollup} (tenant_id, ${grain.column})`]
        : []),
    ];
  });
  const adder = besideUsageTable(location, 'add_to_rollups');
  return [
    ...tables,
    `CREATE OR REPLACE FUNCTION ${adder}() RETURNS trigger LANGUAGE plpgsql AS $add$
     BEGIN
       ${ROLLUP_GRAINS.map((grain) => `${add(grain, 'inserted')};`).join('\n')}
       RETURN NULL;
     END $add$`,
    `CREATE OR REPLACE TRIGGER ${name('rollups')} AFTER INSERT ON ${usage}
       REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ${adder}()`,
  ];
}

/** The parts of a read over [since, until): a condition on raw rows' `ts` and one on each rollup's time column. */
interface RollupPlan {
  /** The read's values with the parts' bounds added. */
  values: unknown[];
  raw: string;
  rollups: { grain: RollupGrain; range: string }[];
}

/**
 * Splits [since, until) into whole UTC days (the daily rollup, when usable), whole hours (the hourly one) and the rest
 * (raw rows); undefined when no usable rollup has a whole period in it. `usable`: the grains that keep what the read
 * needs; `values` begin with since and until. The parts add up to the raw rows' answer while those rows are kept.
 */
export function planRollupRead(
  since: Date,
  until: Date,
  usable: readonly RollupGrain[],
  values: readonly unknown[],
): RollupPlan | undefined {
  const all = [...values];
  const bound = (ms: number) => {
    // The read's own since and until are $1 and $2: each part's bounds name them where they are since or until.
    if (ms === since.getTime()) return '$1::timestamptz';
    if (ms === until.getTime()) return '$2::timestamptz';
    all.push(new Date(ms).toISOString());
    return `$${all.length}`;
  };
  const condition = (column: string, spans: [number, number][]) =>
    spans.length === 0
      ? 'false'
      : `(${spans.map(([a, b]) => `(${column} >= ${bound(a)} AND ${column} < ${bound(b)})`).join(' OR ')})`;
  let rest: [number, number][] = [[since.getTime(), until.getTime()]];
  const rollups: RollupPlan['rollups'] = [];
  // Coarsest first: whole days, then the whole hours left at their edges.
  for (const grain of [...usable].sort((a, b) => b.ms - a.ms)) {
    const whole: [number, number][] = [];
    const left: [number, number][] = [];
    for (const [a, b] of rest) {
      const first = Math.ceil(a / grain.ms) * grain.ms;
      const end = Math.floor(b / grain.ms) * grain.ms;
      if (first >= end) {
        left.push([a, b]);
        continue;
      }
      whole.push([first, end]);
      if (a < first) left.push([a, first]);
      if (end < b) left.push([end, b]);
    }
    if (whole.length > 0) rollups.push({ grain, range: condition(grain.column, whole) });
    rest = left;
  }
  if (rollups.length === 0) return undefined;
  return { values: all, raw: condition('ts', rest), rollups };
}

/**
 * The rollups a read can use: for each unit (day, hour), the smallest that keeps what it groups or filters by, as raw
 * column names (`failed` every rollup keeps).
 */
export function grainsKeeping(columns: readonly string[]): RollupGrain[] {
  const keeping = ROLLUP_GRAINS.filter((grain) => columns.every((column) => grain.callers.includes(column)));
  return keeping.filter((grain, i) => keeping.findIndex((other) => other.ms === grain.ms) === i);
}
