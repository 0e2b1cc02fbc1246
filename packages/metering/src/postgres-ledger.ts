// The SQL usage ledger (PostgreSQL, or PGlite embedded): its migration, batched idempotent inserts, the spend source.
import { TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import type pg from 'pg';
import { besideUsageTable, ledgerTableName, quoteIdentifier } from './ledger-names.js';
import type { LedgerLocation } from './ledger-names.js';
import {
  attachUnpartitionedSql,
  dropPartitionSql,
  expiredPartitions,
  partitionedBy,
  PARTITIONED_QUERY,
  PARTITIONS_QUERY,
  setAsideUnpartitionedSql,
  usagePartitionsSql,
} from './usage-partitions.js';
import { rollupMigrationSql } from './usage-rollups.js';
import { callerColumns, callersCondition, FINISHED, longCallIndexSql, spendByCallerQuery } from './spend-read.js';
import type { CallerFieldName, CallerFilterRows } from './spend-read.js';

/**
 * What the ledger needs of a database: one `query(text, values)` that resolves with `rows`. A pg
 * `Pool`, `PoolClient` or `Client` has it, and so has a PGlite instance (`@electric-sql/pglite`),
 * which runs the same SQL in-process: the embedded default needs no server.
 */
export interface Queryable {
  query<Row = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: Row[] }>;
}

/**
 * A read of many rows; on a pool, on a client checked out for it. pg-pool keeps the query that made it open a new
 * client reachable from that client's listeners for as long as the client lives, its rows included: at 10,000 tenants,
 * the tenants' read at start stayed in the heap of every gateway process, 10,000 rows and a Date each (bench/scale.ts).
 * A checkout's own promise holds only the client.
 */
export async function readMany<Row>(db: Queryable, text: string, values?: unknown[]): Promise<{ rows: Row[] }> {
  if (!isPool(db)) return db.query<Row>(text, values);
  const client = await db.connect();
  try {
    return await client.query<Row & pg.QueryResultRow>(text, values);
  } finally {
    client.release();
  }
}

/** PGlite's shape: one connection, whose `transaction()` keeps other callers' queries out until it ends. */
interface TransactionRunner extends Queryable {
  transaction<T>(run: (tx: Queryable) => Promise<T>): Promise<T>;
}

export { besideUsageTable, ledgerTableName, quoteIdentifier } from './ledger-names.js';
export type { LedgerLocation } from './ledger-names.js';

/** Record fields in column order (the ledger reads in ledger-queries.ts map rows back through it). */
export const COLUMNS: [column: string, field: keyof UsageRecord][] = [
  ['id', 'id'],
  ['request_id', 'requestId'],
  ['ts', 'timestamp'],
  ['key_id', 'keyId'],
  ['tenant_id', 'tenantId'],
  ['user_id', 'userId'],
  ['feature', 'feature'],
  ['route', 'route'],
  ['provider', 'provider'],
  ['model', 'model'],
  ['requested_model', 'requestedModel'],
  ['input_tokens', 'inputTokens'],
  ['cached_input_tokens', 'cachedInputTokens'],
  ['cache_write_tokens', 'cacheWriteTokens'],
  ['cache_write_1h_tokens', 'cacheWrite1hTokens'],
  ['output_tokens', 'outputTokens'],
  ['reasoning_tokens', 'reasoningTokens'],
  ['cost_nano_usd', 'costNanoUsd'],
  ['estimated_cost_nano_usd', 'estimatedCostNanoUsd'],
  ['status', 'status'],
  ['stream', 'stream'],
  ['aborted', 'aborted'],
  ['latency_ms', 'latencyMs'],
  ['usage_source', 'usageSource'],
  ['conversation_id', 'conversationId'],
  ['saved_nano_usd', 'savedNanoUsd'],
  ['refused_by', 'refusedBy'],
  ['kind', 'kind'],
  ['tool', 'tool'],
  ['shadow_refusal', 'shadowRefusal'],
  ['tags', 'tags'],
  ['price_version', 'priceVersion'],
  ['service_tier', 'serviceTier'],
  ['abuse_score', 'abuseScore'],
  ['client_user_id', 'clientUserId'],
  ['session', 'session'],
  ['team', 'team'],
];

const OPTIONAL_COUNTS = new Set<keyof UsageRecord>(['cacheWrite1hTokens', 'savedNanoUsd']);

/**
 * The migration: the table, keyed by the record's server-made id and its time (retries of a record insert
 * nothing twice; the client's request id is a plain column, so no client can hide or overwrite a
 * row by reusing one), partitioned by month (usage-partitions.ts; the months up to two after `now`'s
 * made), and the indexes reports use. A table of the earlier layout (keyed by request_id) is upgraded
 * in place: its rows keep their request id as their id. A table made before partitions stays one
 * table, keyed by id, until `partitionUsageLedger`.
 */
export function ledgerMigrationSql(location: LedgerLocation = {}, now = Date.now()): string[] {
  const table = ledgerTableName(location);
  const base = (location.table ?? 'tollgate_usage').slice(0, 40);
  const index = (suffix: string) => quoteIdentifier(`${base}_${suffix}`, 'index');
  const statements: string[] = [];
  if (location.schema !== undefined)
    statements.push(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(location.schema, 'schema')}`);
  statements.push(
    `CREATE TABLE IF NOT EXISTS ${table} (
      id text NOT NULL,
      request_id text NOT NULL,
      ts timestamptz NOT NULL,
      key_id text,
      tenant_id text,
      user_id text,
      feature text,
      route text NOT NULL,
      provider text,
      model text,
      requested_model text,
      input_tokens bigint NOT NULL DEFAULT 0,
      cached_input_tokens bigint NOT NULL DEFAULT 0,
      cache_write_tokens bigint NOT NULL DEFAULT 0,
      cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
      output_tokens bigint NOT NULL DEFAULT 0,
      reasoning_tokens bigint NOT NULL DEFAULT 0,
      cost_nano_usd bigint NOT NULL DEFAULT 0,
      estimated_cost_nano_usd bigint NOT NULL DEFAULT 0,
      status integer NOT NULL,
      stream boolean NOT NULL DEFAULT false,
      aborted boolean NOT NULL DEFAULT false,
      latency_ms integer NOT NULL DEFAULT 0,
      usage_source text NOT NULL,
      conversation_id text,
      saved_nano_usd bigint NOT NULL DEFAULT 0,
      refused_by text,
      kind text,
      tool text,
      shadow_refusal text,
      tags text[],
      price_version text,
      service_tier text,
      abuse_score double precision,
      client_user_id text,
      session text,
      team text,
      ${partitionedBy('recorded_at timestamptz NOT NULL DEFAULT now()')}`,
    usagePartitionsSql(location, now),
    upgradeToRecordIds(table),
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS cache_write_1h_tokens bigint NOT NULL DEFAULT 0`,
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS conversation_id text`,
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS saved_nano_usd bigint NOT NULL DEFAULT 0`,
    // Rows written before it have NULL: a refusal among them reads as a failed call, as it did then.
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS refused_by text`,
    // NULL: a model call (every row written before tool calls were recorded is one).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS kind text`,
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS tool text`,
    // NULL: nothing would have refused it (every row written before shadow mode).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS shadow_refusal text`,
    // NULL: no tags (every row written before attribution's tags).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS tags text[]`,
    // NULL: the prices are not known (rows written before price versions) / the answer named no service tier.
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS price_version text`,
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS service_tier text`,
    // NULL: the caller was not scored (the guard's abuse model off or not yet trained; rows written before it).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS abuse_score double precision`,
    // NULL: the body's end-user value was a user id, or none was sent (every row written before it was kept).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS client_user_id text`,
    // NULL: no session named (every row written before sessions were kept).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS session text`,
    // NULL: no team (every row written before teams were kept).
    `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS team text`,
    `CREATE INDEX IF NOT EXISTS ${index('request_id')} ON ${table} (request_id)`,
    `CREATE INDEX IF NOT EXISTS ${index('tenant_ts')} ON ${table} (tenant_id, ts)`,
    `CREATE INDEX IF NOT EXISTS ${index('feature_ts')} ON ${table} (feature, ts)`,
    `CREATE INDEX IF NOT EXISTS ${index('model_ts')} ON ${table} (model, ts)`,
    `CREATE INDEX IF NOT EXISTS ${index('key_ts')} ON ${table} (key_id, ts)`,
    `CREATE INDEX IF NOT EXISTS ${index('ts')} ON ${table} (ts)`,
    // The calls that took an hour or more: a rebuild's read of the rollups finds those that straddle its cut by it.
    longCallIndexSql(table, index('long_calls')),
    `CREATE INDEX IF NOT EXISTS ${index('session_ts')} ON ${table} (session, ts) WHERE session IS NOT NULL`,
    // A tenant's top sessions from the index alone (sessions are not rolled up: docs/usage-rollups.md).
    `CREATE INDEX IF NOT EXISTS ${index('tenant_sessions')} ON ${table} (tenant_id, ts)
       INCLUDE (session, cost_nano_usd, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
                reasoning_tokens, saved_nano_usd, refused_by, usage_source)
       WHERE session IS NOT NULL`,
    // Outcomes find their requests by tenant and request or conversation id.
    `CREATE INDEX IF NOT EXISTS ${index('tenant_request')} ON ${table} (tenant_id, request_id)`,
    `CREATE INDEX IF NOT EXISTS ${index('tenant_conversation')} ON ${table} (tenant_id, conversation_id) WHERE conversation_id IS NOT NULL`,
    ...rollupMigrationSql(location),
    ...outcomeMigrationSql(location),
    ...creditMigrationSql(location),
    ...tenantMigrationSql(location),
  );
  return statements;
}

/**
 * The credits table sits next to the usage table, in its schema: `<usage table>_credits` (`tollgate_usage_credits` by
 * default). Quoted and schema-qualified, like ledgerTableName().
 */
export function creditTableName(location: LedgerLocation = {}): string {
  return besideUsageTable(location, 'credits');
}

/**
 * The credits table: one row per operator action (a top-up's id, a reset's) and budget scope, so that an action
 * written again is stored once. `seq` orders a scope's rows: its credit is what was added after its last reset.
 */
function creditMigrationSql(location: LedgerLocation): string[] {
  const table = creditTableName(location);
  const index = quoteIdentifier(`${(location.table ?? 'tollgate_usage').slice(0, 40)}_credits_scope`, 'index');
  return [
    `CREATE TABLE IF NOT EXISTS ${table} (
      id text NOT NULL,
      scope_key text NOT NULL,
      slot text,
      kind text NOT NULL CHECK (kind IN ('top-up', 'carried', 'reset')),
      amount_nano_usd bigint NOT NULL CHECK (amount_nano_usd >= 0),
      period_end timestamptz NOT NULL,
      ts timestamptz NOT NULL,
      seq bigserial NOT NULL,
      PRIMARY KEY (id, scope_key)
    )`,
    `CREATE INDEX IF NOT EXISTS ${index} ON ${table} (period_end, scope_key)`,
  ];
}

/** The tenants table (tenants kept as data, /admin/tenants) sits next to the usage table: `<usage table>_tenants`. */
export function tenantTableName(location: LedgerLocation = {}): string {
  return besideUsageTable(location, 'tenants');
}

/** One row per stored tenant: its fields as the config writes a tenant, and when they last changed. */
function tenantMigrationSql(location: LedgerLocation): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${tenantTableName(location)} (
      id text PRIMARY KEY,
      fields jsonb NOT NULL,
      updated_at timestamptz NOT NULL
    )`,
  ];
}

/**
 * The outcomes table sits next to the usage table, in its schema: `<usage table>_outcomes`
 * (`tollgate_usage_outcomes` by default). Quoted and schema-qualified, like ledgerTableName().
 */
export function outcomeTableName(location: LedgerLocation = {}): string {
  return besideUsageTable(location, 'outcomes');
}

/**
 * The outcomes table: one row per tenant, subject (a request id or a conversation id) and kind, so
 * that an outcome reported twice is stored once. Its requests are found at read time, by tenant and id.
 */
function outcomeMigrationSql(location: LedgerLocation): string[] {
  const table = outcomeTableName(location);
  const index = quoteIdentifier(`${(location.table ?? 'tollgate_usage').slice(0, 40)}_outcomes_tenant_ts`, 'index');
  return [
    `CREATE TABLE IF NOT EXISTS ${table} (
      id text PRIMARY KEY,
      tenant_id text NOT NULL,
      subject text NOT NULL CHECK (subject IN ('request', 'conversation')),
      subject_id text NOT NULL,
      kind text NOT NULL,
      value_nano_usd bigint,
      ts timestamptz NOT NULL,
      UNIQUE (tenant_id, subject, subject_id, kind)
    )`,
    `CREATE INDEX IF NOT EXISTS ${index} ON ${table} (tenant_id, ts)`,
  ];
}

/** The earlier layout keyed rows by the client's request id: key them by an id of their own instead. */
function upgradeToRecordIds(table: string): string {
  // The table name is a quoted identifier already (ledgerTableName); as a literal for to_regclass it is doubled.
  const literal = `'${table.replaceAll("'", "''")}'`;
  return `DO $upgrade$
    DECLARE pk text;
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(${literal}) AND attname = 'id' AND NOT attisdropped) THEN
        EXECUTE 'ALTER TABLE ' || ${literal} || ' ADD COLUMN id text';
        EXECUTE 'UPDATE ' || ${literal} || ' SET id = request_id';
        SELECT conname INTO pk FROM pg_constraint WHERE conrelid = to_regclass(${literal}) AND contype = 'p';
        IF pk IS NOT NULL THEN EXECUTE 'ALTER TABLE ' || ${literal} || ' DROP CONSTRAINT ' || quote_ident(pk); END IF;
        EXECUTE 'ALTER TABLE ' || ${literal} || ' ADD PRIMARY KEY (id)';
      END IF;
    END $upgrade$`;
}

/** Runs the migration in one transaction, under an advisory lock so that processes starting together do not race. */
export async function migrateUsageLedger(db: Queryable, location: LedgerLocation = {}): Promise<void> {
  await runMigration(db, migrationLock(location), ledgerMigrationSql(location));
}

/**
 * Turns a usage table made before partitions into a partitioned one, in one transaction under the migration's lock:
 * the old table becomes the partition of every time up to the first whole month after its newest row
 * (`<table>_p_before<YYYYMM>`, dropped by retention once that month is old enough), the months after it get their own.
 * Its rows, ids and rollups stay as they are; attaching checks its rows against the bound and builds the key `(id, ts)`
 * on it (writes wait meanwhile: `bench/ledger-scale.ts --partition` times it). Nothing when it is partitioned.
 */
export async function partitionUsageLedger(
  db: Queryable,
  location: LedgerLocation = {},
  now = Date.now(),
): Promise<{ converted: boolean }> {
  if (await isPartitioned(db, location)) return { converted: false };
  const statements = ledgerMigrationSql(location, now);
  // The usage table's statement (after its schema's): the old table set aside before it, attached after it.
  const create = statements.findIndex((statement) => statement.startsWith('CREATE TABLE'));
  statements.splice(create + 1, 0, attachUnpartitionedSql(location, now));
  statements.splice(create, 0, setAsideUnpartitionedSql(location));
  await runMigration(db, migrationLock(location), statements);
  return { converted: true };
}

/** Whether the usage table is partitioned (undefined: there is none yet). */
export async function isPartitioned(db: Queryable, location: LedgerLocation = {}): Promise<boolean | undefined> {
  const { rows } = await db.query<{ partitioned: boolean }>(PARTITIONED_QUERY, [ledgerTableName(location)]);
  return rows[0]?.partitioned;
}

/**
 * The usage table's monthly upkeep, run by every process that writes to it (its sink, hourly): the months ahead made,
 * and with `retentionMs`, every partition whose times all end more than that before `now` detached and dropped (the
 * rollups keep what they counted). Returns the partitions dropped. A table made before partitions is left as it is
 * (`partitioned: false`): nothing of it is deleted.
 */
export async function keepUsagePartitions(
  db: Queryable,
  location: LedgerLocation = {},
  options: { now?: number; retentionMs?: number } = {},
): Promise<{ partitioned: boolean; dropped: string[] }> {
  const now = options.now ?? Date.now();
  if (!(await isPartitioned(db, location))) return { partitioned: false, dropped: [] };
  const { rows } = await db.query<{ name: string }>(PARTITIONS_QUERY, [ledgerTableName(location)]);
  const names = rows.map((row) => row.name);
  const dropped =
    options.retentionMs === undefined ? [] : expiredPartitions(location, names, now - options.retentionMs);
  await runMigration(db, migrationLock(location), [
    usagePartitionsSql(location, now),
    ...dropped.flatMap((name) => dropPartitionSql(location, name)),
  ]);
  return { partitioned: true, dropped };
}

function migrationLock(location: LedgerLocation): string {
  return `tollgate:migrate:${ledgerTableName(location)}`;
}

/** `migrate` run once for its callers (the first call's promise shared), and again at the next call after it failed. */
export function migrateOnce(migrate: () => Promise<void>): () => Promise<void> {
  let migrated: Promise<void> | undefined;
  return () =>
    (migrated ??= migrate().catch((error: unknown) => {
      migrated = undefined;
      throw error;
    }));
}

/** Runs `statements` in one transaction under the advisory lock `lockName` (the ledger's tables' migrations). */
export async function runMigration(db: Queryable, lockName: string, statements: readonly string[]): Promise<void> {
  if (isTransactionRunner(db)) {
    // PGlite: a BEGIN sent through query() would let queries of other callers (a sink, a dashboard) run inside it.
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName]);
      for (const statement of statements) await tx.query(statement);
    });
    return;
  }
  // A transaction needs one connection: take one from a pool.
  const pool = isPool(db);
  const client = pool ? await db.connect() : db;
  let failure: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName]);
    for (const statement of statements) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    // A connection that failed mid-transaction (a timed-out query) is discarded, not handed to the next caller.
    if (pool) (client as pg.PoolClient).release(failure);
  }
}

function isTransactionRunner(db: Queryable): db is TransactionRunner {
  // pg's Pool and Client have no transaction(); a PoolClient is already one connection.
  return typeof (db as Partial<TransactionRunner>).transaction === 'function' && !isPool(db);
}

/** A pg pool (duck-typed: pools from another pg copy count too), which hands out one connection per query. */
function isPool(db: Queryable): db is Queryable & pg.Pool {
  return 'totalCount' in db;
}

/** Inserts records in one multi-row statement; a record id already stored is skipped (retries are safe). */
export async function insertUsageRecords(
  db: Queryable,
  records: readonly UsageRecord[],
  location: LedgerLocation = {},
): Promise<void> {
  if (records.length === 0) return;
  const values: unknown[] = [];
  const rows: string[] = [];
  for (const record of records) {
    const placeholders: string[] = [];
    for (const [, field] of COLUMNS) {
      // Optional counts (1-hour cache writes) are 0 when absent; other absent fields are NULL.
      values.push(record[field] ?? (OPTIONAL_COUNTS.has(field) ? 0 : null));
      placeholders.push(`$${values.length}`);
    }
    rows.push(`(${placeholders.join(', ')})`);
  }
  await db.query(
    `INSERT INTO ${ledgerTableName(location)} (${COLUMNS.map(([column]) => column).join(', ')}) VALUES ${rows.join(', ')} ON CONFLICT DO NOTHING`,
    values,
  );
}

/** The ledger column each budget scope is recorded in (`global`: every row). */
const SPEND_COLUMNS = {
  key: 'key_id',
  user: 'user_id',
  tenant: 'tenant_id',
  feature: 'feature',
  session: 'session',
  team: 'team',
  global: undefined,
} as const;
type SpendScope = keyof typeof SPEND_COLUMNS;

/** What a budget guard's `rebuild()` asks a usage ledger (the shape of @tollgate/budget's `SpendSource`). */
interface LedgerSpendSource {
  spent(query: { scope: SpendScope; id: string | null; since: number; until: number }): Promise<number>;
  idsWithSpend(scope: Exclude<SpendScope, 'global'>, since: number): Promise<string[]>;
  /**
   * Nano-USD per caller (key, user, tenant, feature, model as billed, session, team) with spend started in [since, until): what a
   * rebuild reads; with `finishedBefore`, only records whose call finished before it (ts + latency_ms); with
   * `finishedFrom`, only those whose call finished at or after it (a budget's last reset); with `fields`, callers alike
   * in those are one row (the other fields null), summed from the rollups where they keep them (spend-read.ts).
   */
  spentByCaller(
    since: number,
    until: number,
    finishedBefore?: number,
    finishedFrom?: number,
    only?: CallerFilterRows,
    fields?: readonly CallerFieldName[],
  ): Promise<CallerSpendRow[]>;
  /**
   * Each record with spend started in [since, until) that finished at or after `finishedFrom`: a rebuild's cut. With
   * `fields`, only those caller fields are read (the others null), as `spentByCaller` keeps them.
   */
  recordsFinishedSince(
    since: number,
    until: number,
    finishedFrom: number,
    only?: CallerFilterRows,
    fields?: readonly CallerFieldName[],
  ): Promise<RecordSpendRow[]>;
}

/** One record's spend (the shape of @tollgate/budget's `RecordSpend`). */
interface RecordSpendRow extends CallerSpendRow {
  id: string;
  startedAt: number;
  finishedAt: number;
}

/** One caller's spend (the shape of @tollgate/budget's `CallerSpend`). */
interface CallerSpendRow {
  keyId: string | null;
  userId: string | null;
  tenantId: string | null;
  feature: string | null;
  model: string | null;
  tags: string[] | null;
  session: string | null;
  team: string | null;
  spentNanoUsd: number;
}

function spendColumn(scope: SpendScope): string | undefined {
  if (!(scope in SPEND_COLUMNS))
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_SCOPE',
      `spend is recorded per ${Object.keys(SPEND_COLUMNS).join(', ')}; got ${JSON.stringify(scope)}`,
    );
  return SPEND_COLUMNS[scope];
}

/** The caller columns of a ledger row. */
interface CallerRow {
  key_id: string | null;
  user_id: string | null;
  tenant_id: string | null;
  feature: string | null;
  model: string | null;
  tags: string[] | null;
  session: string | null;
  team: string | null;
}

function callerOf(row: CallerRow): Omit<CallerSpendRow, 'spentNanoUsd'> {
  // No tags and an empty list are one caller: records written before tags were kept hold NULL.
  const tags = row.tags && row.tags.length > 0 ? row.tags : null;
  return {
    keyId: row.key_id,
    userId: row.user_id,
    tenantId: row.tenant_id,
    feature: row.feature,
    model: row.model,
    tags,
    session: row.session,
    team: row.team,
  };
}

/**
 * The PostgreSQL usage ledger as the source a budget's spend is rebuilt from, when its store lost
 * it: `guard.rebuild(postgresSpendSource(pool))`. Sums `cost_nano_usd` per scope over a time range.
 */
export function postgresSpendSource(db: Queryable, location: LedgerLocation = {}): LedgerSpendSource {
  const table = ledgerTableName(location);
  /** A ledger not created yet (nothing was ever written to it) has recorded nothing. */
  const orNothing = async <T>(query: Promise<T>, nothing: T): Promise<T> => {
    try {
      return await query;
    } catch (error) {
      if ((error as { code?: unknown }).code === '42P01') return nothing;
      throw error;
    }
  };
  return {
    async spent({ scope, id, since, until }) {
      const column = spendColumn(scope);
      const values: unknown[] = [new Date(since).toISOString(), new Date(until).toISOString()];
      let filter = '';
      if (column) {
        values.push(id);
        filter = ` AND ${column} = $3`;
      }
      const result = await orNothing(
        db.query<{ spent: string }>(
          `SELECT coalesce(sum(cost_nano_usd), 0) AS spent FROM ${table} WHERE ts >= $1 AND ts < $2${filter}`,
          values,
        ),
        { rows: [] },
      );
      return Number(result.rows[0]?.spent ?? 0);
    },
    async spentByCaller(since, until, finishedBefore, finishedFrom, only, fields) {
      const query = spendByCallerQuery(table, location, { since, until, finishedBefore, finishedFrom, only, fields });
      const result = await orNothing(readMany<CallerRow & { spent: string }>(db, query.text, query.values), {
        rows: [],
      });
      return result.rows.map((row) => ({ ...callerOf(row), spentNanoUsd: Number(row.spent) }));
    },
    async recordsFinishedSince(since, until, finishedFrom, only, fields) {
      const values: unknown[] = [
        new Date(since).toISOString(),
        new Date(until).toISOString(),
        new Date(finishedFrom).toISOString(),
      ];
      const callers = callersCondition(only, values);
      const result = await orNothing(
        readMany<CallerRow & { id: string; ts: Date | string; latency_ms: number | string; cost_nano_usd: string }>(
          db,
          `SELECT id, ts, latency_ms, ${callerColumns(fields).select}, cost_nano_usd FROM ${table}
           WHERE ts >= $1 AND ts < $2 AND ${FINISHED} >= $3 AND cost_nano_usd > 0${callers}`,
          values,
        ),
        { rows: [] },
      );
      return result.rows.map((row) => ({
        ...callerOf(row),
        id: row.id,
        startedAt: new Date(row.ts).getTime(),
        finishedAt: new Date(row.ts).getTime() + Number(row.latency_ms),
        spentNanoUsd: Number(row.cost_nano_usd),
      }));
    },
    async idsWithSpend(scope, since) {
      const column = spendColumn(scope);
      const result = await orNothing(
        db.query<{ id: string }>(
          `SELECT DISTINCT ${column} AS id FROM ${table} WHERE ts >= $1 AND ${column} IS NOT NULL AND cost_nano_usd > 0`,
          [new Date(since).toISOString()],
        ),
        { rows: [] },
      );
      return result.rows.map((row) => row.id);
    },
  };
}
