// The two databases a SQL ledger runs on, for tests on both: PGlite in memory, PostgreSQL in a schema of its own.
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { migrateUsageLedger } from '@tollgate/metering';
import type { LedgerLocation, Queryable } from '@tollgate/metering';
import { ledgerTableName } from '../src/ledger-names.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface Backend {
  db: Queryable;
  location: LedgerLocation;
  close(): Promise<void>;
}

export async function pgliteBackend(): Promise<Backend> {
  const db = new PGlite();
  return { db, location: {}, close: () => db.close() };
}

/** A schema named `<prefix>_<random>`, dropped at close: other runs share the database. */
export function postgresBackend(prefix: string): () => Promise<Backend> {
  return async () => {
    const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
    const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
    return {
      db: pool,
      location: { schema, table: 'ledger' },
      async close() {
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await pool.end();
      },
    };
  };
}

/**
 * The usage ledger as a version before partitions made it at `location`: one table keyed by id, with its indexes,
 * rollups and trigger (a table of the same shape made and migrated beside it, `<table>_shape`, is its model).
 */
export async function makeUnpartitionedLedger(db: Queryable, location: LedgerLocation): Promise<void> {
  const shape = { ...location, table: `${location.table ?? 'tollgate_usage'}_shape` };
  await migrateUsageLedger(db, shape);
  await db.query(`CREATE TABLE ${ledgerTableName(location)} (LIKE ${ledgerTableName(shape)} INCLUDING DEFAULTS)`);
  await db.query(`ALTER TABLE ${ledgerTableName(location)} ADD PRIMARY KEY (id)`);
  await migrateUsageLedger(db, location);
}
