// The two databases a SQL ledger runs on, for tests on both: PGlite in memory, PostgreSQL in a schema of its own.
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { LedgerLocation, Queryable } from '@tollgate/metering';

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
