// PostgreSQL ledger sink: records queued in memory and inserted in batches, migration on first use.
import { assertKnownOptions, TollgateError } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import pg from 'pg';
import { insertUsageRecords, ledgerTableName, migrateUsageLedger } from './postgres-ledger.js';
import type { LedgerLocation } from './postgres-ledger.js';
import { BatchQueue, logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

export interface PostgresSinkOptions extends LedgerLocation {
  /** Connection string; the sink opens (and closes) its own small pool. Either this or `pool`. */
  connectionString?: string;
  /** A pool you own (not closed by the sink). */
  pool?: pg.Pool;
  /** Create the schema, table and indexes on first use. @default true */
  migrate?: boolean;
  /** Records per INSERT (at most 1000). @default 100 */
  batchSize?: number;
  /** Longest a record waits in memory, in ms. @default 1000 */
  flushIntervalMs?: number;
  /** Records kept while PostgreSQL is unreachable; the oldest are dropped beyond it. @default 10000 */
  maxQueue?: number;
  /**
   * Longest a query of the pool the sink opens may wait for PostgreSQL (`query_timeout`): a
   * connection that stops answering fails the batch, which is retried on a new connection.
   * Set `query_timeout` yourself on a `pool` you pass. @default 10000
   */
  queryTimeoutMs?: number;
  /** Receives failures. @default a warning for the first failure, then every 1000th */
  onError?: SinkErrorHandler;
}

const KNOWN = ['connectionString', 'pool', 'schema', 'table', 'migrate', 'batchSize', 'flushIntervalMs', 'maxQueue', 'queryTimeoutMs', 'onError'] as const satisfies readonly (keyof PostgresSinkOptions)[];

export interface PostgresSink extends UsageSink {
  readonly pool: pg.Pool;
  /** Records waiting to be inserted. */
  readonly pending: number;
}

/** Writes each record to the usage ledger table (idempotent on the record id). */
export function postgresSink(options: PostgresSinkOptions): PostgresSink {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'postgresSink');
  if (!options?.pool && !options?.connectionString) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'postgresSink() needs a connectionString or a pool');
  const location: LedgerLocation = { schema: options.schema, table: options.table };
  ledgerTableName(location); // validates the names now, not at the first insert
  const batchSize = options.batchSize ?? 100;
  // 22 parameters per row; PostgreSQL allows 65535 per statement.
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 1000) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'postgresSink() batchSize must be an integer from 1 to 1000');
  const queryTimeoutMs = options.queryTimeoutMs ?? 10_000;
  if (!Number.isSafeInteger(queryTimeoutMs) || queryTimeoutMs < 1) throw new TollgateError('ERR_TG_METERING_INVALID_OPTION', 'postgresSink() queryTimeoutMs must be a positive integer');
  const onError = options.onError ?? logOnce(`usage ledger ${ledgerTableName(location)}`);
  const ownsPool = !options.pool;
  // Without a query timeout, a connection that goes silent would hold the queue (and flush) forever.
  const pool = options.pool ?? new pg.Pool({ connectionString: options.connectionString, max: 2, connectionTimeoutMillis: 5_000, query_timeout: queryTimeoutMs });
  // An idle client losing its connection emits 'error' on the pool; unhandled, it would crash the process.
  if (ownsPool) pool.on('error', onError);
  let migrated = options.migrate === false;

  const queue = new BatchQueue<UsageRecord>(
    async (batch) => {
      if (!migrated) {
        await migrateUsageLedger(pool, location);
        migrated = true;
      }
      await insertUsageRecords(pool, batch, location);
    },
    { batchSize, flushIntervalMs: options.flushIntervalMs ?? 1000, maxQueue: options.maxQueue ?? 10_000, onError },
  );

  return {
    pool,
    get pending() {
      return queue.size;
    },
    write: (record) => queue.push(record),
    flush: () => queue.flush(),
    async close() {
      await queue.close();
      if (ownsPool) await pool.end().catch(onError);
    },
  };
}
