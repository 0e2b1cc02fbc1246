// The usage table by month: one partition per UTC month (made ahead), a default one for rows outside them, and
// retention that drops whole months of raw rows. The rollups are kept: a dropped partition is a delete they never see.
import { ledgerTableName, quoteIdentifier } from './ledger-names.js';
import type { LedgerLocation } from './ledger-names.js';

/** Months made ahead of the current one: a process that stops running its job leaves weeks before rows miss them. */
const MONTHS_AHEAD = 2;

/**
 * The shortest retention a ledger takes: a budget decided by sessions or tags (in no rollup) is rebuilt from the raw
 * rows of its current period, and the longest calendar period is a quarter (92 days).
 */
export const MIN_RETENTION_MS = 93 * 86_400_000;

const MONTH_NAME = /_p(\d{4})(\d{2})$/;
const BEFORE_NAME = /_p_before(\d{4})(\d{2})$/;

interface PartitionNames {
  parent: string;
  /** The unquoted names' common start, as the catalog lists them (the usage table's, cut as its indexes' are). */
  base: string;
  /** What a name is prefixed with to be the schema's (`"schema".`, or nothing: the search path's). */
  schemaPrefix: string;
  /** The schema-qualified, quoted name of the partition `name` (as the catalog lists it). */
  qualified(name: string): string;
  /** The same, of the partition with this suffix (`p202611`, `p_default`). */
  of(suffix: string): string;
}

function namesOf(location: LedgerLocation): PartitionNames {
  const base = `${(location.table ?? 'tollgate_usage').slice(0, 40)}_`;
  const schemaPrefix = location.schema === undefined ? '' : `${quoteIdentifier(location.schema, 'schema')}.`;
  const qualified = (name: string) => `${schemaPrefix}${quoteIdentifier(name, 'partition')}`;
  return { parent: ledgerTableName(location), base, schemaPrefix, qualified, of: (suffix) => qualified(base + suffix) };
}

function monthStart(ms: number, add = 0): Date {
  const at = new Date(ms);
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + add, 1));
}

function monthSuffix(start: Date): string {
  return `${start.getUTCFullYear()}${String(start.getUTCMonth() + 1).padStart(2, '0')}`;
}

const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** The usage table's definition as partitioned by month: its key holds `ts`, as a partitioned table's must. */
export function partitionedBy(columns: string): string {
  return `${columns}, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`;
}

/**
 * One statement that, when the usage table is partitioned, makes its default partition and the months from `now`'s to
 * MONTHS_AHEAD after it that are missing. A month whose rows the default partition holds already (written while the
 * month had no partition) gets them moved into its own, outside the usage table, so the rollups count them once.
 * Nothing when the table is not partitioned (a ledger made before partitions, until `partitionUsageLedger`).
 */
export function usagePartitionsSql(location: LedgerLocation, now: number): string {
  const names = namesOf(location);
  const months = Array.from({ length: MONTHS_AHEAD + 1 }, (_, i) => monthStart(now, i));
  const standing = names.of('p_default');
  const steps = months.map((from) => {
    const part = names.of(`p${monthSuffix(from)}`);
    const to = monthStart(from.getTime(), 1);
    const range = `ts >= ${literal(from.toISOString())} AND ts < ${literal(to.toISOString())}`;
    const bounds = `FROM (${literal(from.toISOString())}) TO (${literal(to.toISOString())})`;
    const sql = {
      plain: `CREATE TABLE ${part} PARTITION OF ${names.parent} FOR VALUES ${bounds}`,
      like: `CREATE TABLE ${part} (LIKE ${names.parent} INCLUDING DEFAULTS)`,
      move: `WITH moved AS (DELETE FROM ${standing} WHERE ${range} RETURNING *) INSERT INTO ${part} SELECT * FROM moved`,
      attach: `ALTER TABLE ${names.parent} ATTACH PARTITION ${part} FOR VALUES ${bounds}`,
      waiting: `SELECT EXISTS (SELECT 1 FROM ${standing} WHERE ${range})`,
    };
    // A month that an older table's partition covers (`<table>_p_before<YYYYMM>` ends after its start) stays in it.
    const covered = `SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass(${literal(names.parent)})
        AND c.relname COLLATE "C" LIKE ${literal(`${names.base.replaceAll('_', '\\_')}p\\_before%`)}
        AND c.relname COLLATE "C" > ${literal(`${names.base}p_before${monthSuffix(from)}`)})`;
    return `EXECUTE ${literal(covered)} INTO taken;
      IF to_regclass(${literal(part)}) IS NULL AND NOT taken THEN
        EXECUTE ${literal(sql.waiting)} INTO waiting;
        IF waiting THEN
          EXECUTE ${literal(sql.like)};
          EXECUTE ${literal(sql.move)};
          EXECUTE ${literal(sql.attach)};
        ELSE
          EXECUTE ${literal(sql.plain)};
        END IF;
      END IF;`;
  });
  return `DO $partitions$
    DECLARE waiting boolean; taken boolean;
    BEGIN
      IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(${literal(names.parent)})) = 'p' THEN
        IF to_regclass(${literal(standing)}) IS NULL THEN
          EXECUTE ${literal(`CREATE TABLE ${standing} PARTITION OF ${names.parent} DEFAULT`)};
        END IF;
        ${steps.join('\n        ')}
      END IF;
    END $partitions$`;
}

/**
 * The first steps of turning a ledger made before partitions into a partitioned one, run before the migration (which
 * then makes the partitioned table): the old table loses its rollup trigger (a partition may not hold one with a
 * transition table) and its key on `id` (a partition's key holds the partitioned table's, `(id, ts)`, built when it is
 * attached), and is renamed, its indexes too (the partitioned table's take their names).
 */
export function setAsideUnpartitionedSql(location: LedgerLocation): string {
  const names = namesOf(location);
  const trigger = quoteIdentifier(`${names.base}rollups`, 'name');
  return `DO $aside$
    DECLARE index_name text; key_name text;
    BEGIN
      IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(${literal(names.parent)})) = 'r' THEN
        EXECUTE ${literal(`DROP TRIGGER IF EXISTS ${trigger} ON ${names.parent}`)};
        SELECT conname INTO key_name FROM pg_constraint
          WHERE conrelid = to_regclass(${literal(names.parent)}) AND contype = 'p';
        IF key_name IS NOT NULL THEN
          EXECUTE ${literal(`ALTER TABLE ${names.parent} DROP CONSTRAINT `)} || quote_ident(key_name);
        END IF;
        FOR index_name IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                          WHERE i.indrelid = to_regclass(${literal(names.parent)}) LOOP
          EXECUTE format('ALTER INDEX %s RENAME TO %I',
            ${literal(names.schemaPrefix)} || quote_ident(index_name),
            left(index_name, 55) || '_legacy');
        END LOOP;
        EXECUTE ${literal(`ALTER TABLE ${names.parent} RENAME TO ${quoteIdentifier(`${names.base}p_legacy`, 'partition')}`)};
      END IF;
    END $aside$`;
}

/**
 * The last step: the old table, set aside by `setAsideUnpartitionedSql`, attached to the partitioned one as the
 * partition of every time before the first whole month after its newest row (at least the month after `now`'s), named
 * `<table>_p_before<YYYYMM>`. Attaching checks its rows against that bound and builds the key `(id, ts)` on it.
 */
export function attachUnpartitionedSql(location: LedgerLocation, now: number): string {
  const names = namesOf(location);
  const aside = names.of('p_legacy');
  const floor = monthStart(now, 1).toISOString();
  return `DO $attach$
    DECLARE newest timestamptz; upper timestamptz; named text;
    BEGIN
      IF to_regclass(${literal(aside)}) IS NULL THEN RETURN; END IF;
      EXECUTE ${literal(`SELECT max(ts) FROM ${aside}`)} INTO newest;
      upper := greatest(${literal(floor)}::timestamptz,
                        (date_trunc('month', coalesce(newest, now()) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') + interval '1 month');
      named := ${literal(names.base)} || 'p_before' || to_char(upper AT TIME ZONE 'UTC', 'YYYYMM');
      EXECUTE format('ALTER TABLE %s RENAME TO %I', ${literal(aside)}, named);
      EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%L)',
        ${literal(names.parent)}, ${literal(names.schemaPrefix)} || quote_ident(named), upper);
    END $attach$`;
}

/** The end of the times a partition named by this module holds (the default partition and others: undefined). */
function partitionEnd(name: string, location: LedgerLocation): Date | undefined {
  const { base } = namesOf(location);
  if (!name.startsWith(base)) return undefined;
  const month = MONTH_NAME.exec(name);
  if (month && name === `${base}p${month[1]}${month[2]}`)
    return new Date(Date.UTC(Number(month[1]), Number(month[2]), 1));
  const before = BEFORE_NAME.exec(name);
  if (before && name === `${base}p_before${before[1]}${before[2]}`)
    return new Date(Date.UTC(Number(before[1]), Number(before[2]) - 1, 1));
  return undefined;
}

/** The partitions (as the catalog lists them) whose times all end at or before `cutoff`. */
export function expiredPartitions(location: LedgerLocation, partitions: readonly string[], cutoff: number): string[] {
  return partitions.filter((name) => (partitionEnd(name, location)?.getTime() ?? Infinity) <= cutoff);
}

/** The statements that detach and drop the partition `name` (as the catalog lists it). */
export function dropPartitionSql(location: LedgerLocation, name: string): string[] {
  const { parent, qualified } = namesOf(location);
  return [`ALTER TABLE ${parent} DETACH PARTITION ${qualified(name)}`, `DROP TABLE ${qualified(name)}`];
}

/** The catalog's query for the usage table's partitions (`$1`: the table's quoted name); none when not partitioned. */
export const PARTITIONS_QUERY = `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = to_regclass($1) ORDER BY c.relname`;

/** The catalog's query for whether the usage table is partitioned (`$1`: its quoted name). */
export const PARTITIONED_QUERY = `SELECT relkind = 'p' AS partitioned FROM pg_class WHERE oid = to_regclass($1)`;
