// @tollgate/metering/postgres: the PostgreSQL usage ledger sink, apart so that only its users need `pg` (an optional peer),
// and the embedded ledger (PGlite, an optional peer too).
export { openEmbeddedLedger, postgresSink } from './postgres-sink.js';
export type { LedgerSink, PostgresSink, PostgresSinkOptions } from './postgres-sink.js';
export { memoryTenantTable, postgresTenantTable } from './tenant-table.js';
export type { StoredTenantRow, TenantTable, TenantVersion } from './tenant-table.js';
