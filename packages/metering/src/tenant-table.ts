// Tenants kept as data in the usage ledger's database (PostgreSQL or PGlite): `<usage table>_tenants`.
import { migrateOnce, migrateUsageLedger, readMany, tenantTableName } from './postgres-ledger.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';

/** One stored tenant: its id and its fields (a config tenant's, as JSON), and when they last changed. */
export interface StoredTenantRow extends TenantVersion {
  fields: Record<string, unknown>;
  updatedAt: string;
}

/** A stored tenant's id and its version: a value every write changes (opaque, compared for equality only). */
export interface TenantVersion {
  id: string;
  version: string;
}

/** Where tenants are kept: one row per id, written whole. */
export interface TenantTable {
  /** Every stored tenant, by id. */
  list(): Promise<StoredTenantRow[]>;
  get(id: string): Promise<StoredTenantRow | undefined>;
  /** Every stored tenant's version: what a resync compares before it reads the tenants that changed. */
  versions(): Promise<TenantVersion[]>;
  /** Writes the tenant whole (created or replaced). */
  put(id: string, fields: Record<string, unknown>): Promise<void>;
  /** True when there was a tenant to remove. */
  remove(id: string): Promise<boolean>;
}

interface TenantRow {
  id: string;
  version: string;
  fields: Record<string, unknown> | string;
  updated_at: Date | string;
}

/**
 * A row's version: the transaction that wrote it and its time to the microsecond (two writes in one transaction make
 * one row; `now()` alone is the same for two transactions begun in the same microsecond).
 */
const VERSION = `xmin::text || ':' || (extract(epoch from updated_at) * 1000000)::bigint AS version`;

const rowOf = (row: TenantRow): StoredTenantRow => ({
  id: row.id,
  version: row.version,
  // PGlite and pg both parse jsonb; a driver set to hand text back gets it parsed here.
  fields: typeof row.fields === 'string' ? (JSON.parse(row.fields) as Record<string, unknown>) : row.fields,
  updatedAt: new Date(row.updated_at).toISOString(),
});

/** The tenants table of the ledger at `location` in `db` (made by the ledger's migration, run before the first call). */
export function postgresTenantTable(db: Queryable, location: LedgerLocation = {}): TenantTable {
  const table = tenantTableName(location);
  const migrate = migrateOnce(() => migrateUsageLedger(db, location));
  return {
    async list() {
      await migrate();
      const result = await readMany<TenantRow>(
        db,
        `SELECT id, ${VERSION}, fields, updated_at FROM ${table} ORDER BY id`,
      );
      return result.rows.map(rowOf);
    },
    async get(id) {
      await migrate();
      const result = await db.query<TenantRow>(
        `SELECT id, ${VERSION}, fields, updated_at FROM ${table} WHERE id = $1`,
        [id],
      );
      return result.rows[0] && rowOf(result.rows[0]);
    },
    async versions() {
      await migrate();
      return (await readMany<TenantVersion>(db, `SELECT id, ${VERSION} FROM ${table}`)).rows;
    },
    async put(id, fields) {
      await migrate();
      await db.query(
        `INSERT INTO ${table} (id, fields, updated_at) VALUES ($1, $2::jsonb, now())
         ON CONFLICT (id) DO UPDATE SET fields = EXCLUDED.fields, updated_at = EXCLUDED.updated_at`,
        [id, JSON.stringify(fields)],
      );
    },
    async remove(id) {
      await migrate();
      const result = await db.query<{ id: string }>(`DELETE FROM ${table} WHERE id = $1 RETURNING id`, [id]);
      return result.rows.length > 0;
    },
  };
}

/** The same table in this process's memory: for a gateway without a ledger database (kept until it stops). */
export function memoryTenantTable(): TenantTable {
  const rows = new Map<string, StoredTenantRow>();
  let writes = 0;
  return {
    list: async () => [...rows.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    get: async (id) => rows.get(id),
    versions: async () => [...rows.values()].map(({ id, version }) => ({ id, version })),
    put: async (id, fields) =>
      void rows.set(id, { id, version: String(++writes), fields, updatedAt: new Date().toISOString() }),
    remove: async (id) => rows.delete(id),
  };
}
