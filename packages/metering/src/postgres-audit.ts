// The audit trail in the ledger's database (PostgreSQL, or PGlite embedded): an append-only table beside the usage table.
import { actionMatches, auditEntryOf } from '@tollgate/core/audit';
import type {
  AuditAttempt,
  AuditConclusion,
  AuditEntry,
  AuditPage,
  AuditQuery,
  AuditStore,
} from '@tollgate/core/audit';
import { besideUsageTable, migrateOnce, quoteIdentifier, runMigration } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';

/** `<usage table>_audit` in the usage table's schema (`tollgate_usage_audit` by default), quoted. */
export function auditTableName(location: LedgerLocation = {}): string {
  return besideUsageTable(location, 'audit');
}

/**
 * The table: one row for an entry's attempt and one for its conclusion (each at most once, by `(id, phase)`); a
 * trigger refuses every UPDATE, DELETE and TRUNCATE, so the trail is append-only for every client of the database.
 */
export function auditMigrationSql(location: LedgerLocation = {}): string[] {
  const table = auditTableName(location);
  const base = `${(location.table ?? 'tollgate_usage').slice(0, 40)}_audit`;
  const name = (suffix: string) => quoteIdentifier(`${base}_${suffix}`, 'index');
  const qualified = (suffix: string) =>
    location.schema === undefined ? name(suffix) : `${quoteIdentifier(location.schema, 'schema')}.${name(suffix)}`;
  return [
    ...(location.schema === undefined
      ? []
      : [`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(location.schema, 'schema')}`]),
    `CREATE TABLE IF NOT EXISTS ${table} (
      seq bigserial PRIMARY KEY,
      id text NOT NULL,
      phase text NOT NULL CHECK (phase IN ('attempt', 'conclusion')),
      at timestamptz NOT NULL,
      actor text,
      role text,
      via text,
      address text,
      method text,
      path text,
      action text NOT NULL,
      target text NOT NULL,
      status integer,
      outcome text,
      before jsonb,
      after jsonb,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (id, phase)
    )`,
    `CREATE INDEX IF NOT EXISTS ${name('at')} ON ${table} (at)`,
    `CREATE INDEX IF NOT EXISTS ${name('action')} ON ${table} (action)`,
    `CREATE INDEX IF NOT EXISTS ${name('target')} ON ${table} (target)`,
    `CREATE OR REPLACE FUNCTION ${qualified('append_only')}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the tollgate audit trail is append-only'; END $$`,
    `DROP TRIGGER IF EXISTS ${name('append_only')} ON ${table}`,
    `CREATE TRIGGER ${name('append_only')} BEFORE UPDATE OR DELETE ON ${table}
      FOR EACH ROW EXECUTE FUNCTION ${qualified('append_only')}()`,
    `DROP TRIGGER IF EXISTS ${name('no_truncate')} ON ${table}`,
    `CREATE TRIGGER ${name('no_truncate')} BEFORE TRUNCATE ON ${table}
      FOR EACH STATEMENT EXECUTE FUNCTION ${qualified('append_only')}()`,
  ];
}

interface AuditRow {
  seq: string | number;
  id: string;
  at: Date | string;
  actor: string;
  role: string;
  via: string;
  address: string;
  method: string;
  path: string;
  action: string;
  target: string;
  status: number | null;
  outcome: string | null;
  before: unknown;
  after: unknown;
  finished_at: Date | string | null;
}

const iso = (value: Date | string) => new Date(value).toISOString();

function entryOf(row: AuditRow): AuditEntry {
  const attempt: AuditAttempt = {
    id: row.id,
    at: iso(row.at),
    actor: row.actor,
    role: row.role as AuditAttempt['role'],
    via: row.via,
    address: row.address,
    method: row.method,
    path: row.path,
    action: row.action,
    target: row.target,
  };
  if (row.outcome === null || row.finished_at === null || row.status === null) return auditEntryOf(attempt, undefined);
  return auditEntryOf(attempt, {
    id: row.id,
    finishedAt: iso(row.finished_at),
    action: row.action,
    target: row.target,
    status: row.status,
    outcome: row.outcome as AuditConclusion['outcome'],
    before: row.before ?? null,
    after: row.after ?? null,
  });
}

/** LIKE's own characters in a filter, escaped. */
const likeLiteral = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/**
 * The audit trail on a ledger database: a pg Pool or Client, or PGlite (the data directory's ledger). The table is
 * made on first use; an attempt that cannot be written rejects, and the audit trail refuses the write.
 */
export function postgresAuditStore(db: Queryable, location: LedgerLocation = {}): AuditStore {
  const table = auditTableName(location);
  const ready = migrateOnce(() => runMigration(db, `tollgate:migrate:${table}`, auditMigrationSql(location)));
  return {
    async attempt(a) {
      await ready();
      await db.query(
        `INSERT INTO ${table} (id, phase, at, actor, role, via, address, method, path, action, target)
         VALUES ($1, 'attempt', $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [a.id, a.at, a.actor, a.role, a.via, a.address, a.method, a.path, a.action, a.target],
      );
    },
    async conclude(c) {
      await ready();
      await db.query(
        `INSERT INTO ${table} (id, phase, at, action, target, status, outcome, before, after)
         VALUES ($1, 'conclusion', $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb) ON CONFLICT (id, phase) DO NOTHING`,
        [
          c.id,
          c.finishedAt,
          c.action,
          c.target,
          c.status,
          c.outcome,
          JSON.stringify(c.before),
          JSON.stringify(c.after),
        ],
      );
    },
    async list(query: AuditQuery): Promise<AuditPage> {
      await ready();
      const values: unknown[] = [];
      const param = (value: unknown) => {
        values.push(value);
        return `$${values.length}`;
      };
      const action = 'COALESCE(c.action, a.action)';
      const where = [`a.phase = 'attempt'`];
      if (query.cursor !== undefined) where.push(`a.seq < ${param(query.cursor)}::bigint`);
      if (query.since !== undefined) where.push(`a.at >= ${param(query.since)}::timestamptz`);
      if (query.until !== undefined) where.push(`a.at < ${param(query.until)}::timestamptz`);
      if (query.actor !== undefined) where.push(`a.actor = ${param(query.actor)}`);
      if (query.target !== undefined) where.push(`COALESCE(c.target, a.target) = ${param(query.target)}`);
      if (query.action !== undefined)
        where.push(`(${action} = ${param(query.action)} OR ${action} LIKE ${param(`${likeLiteral(query.action)}.%`)})`);
      const { rows } = await db.query<AuditRow>(
        `SELECT a.seq, a.id, a.at, a.actor, a.role, a.via, a.address, a.method, a.path, ${action} AS action,
           COALESCE(c.target, a.target) AS target, c.status, c.outcome, c.before, c.after, c.at AS finished_at
         FROM ${table} a LEFT JOIN ${table} c ON c.id = a.id AND c.phase = 'conclusion'
         WHERE ${where.join(' AND ')} ORDER BY a.seq DESC LIMIT ${param(query.limit + 1)}`,
        values,
      );
      const shown = rows.slice(0, query.limit);
      const entries = shown
        .map(entryOf)
        .filter((entry) => query.action === undefined || actionMatches(entry.action, query.action));
      return { entries, nextCursor: rows.length > query.limit ? String(shown.at(-1)!.seq) : null };
    },
  };
}
