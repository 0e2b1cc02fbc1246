// The usage ledger sink (PostgreSQL, or PGlite embedded): records queued in memory and inserted in batches, migration on first use.
import { TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { UsageRecord } from '@tollgate/core';
import type pg from 'pg';
import { loadOptionalPeer } from './optional-peer.js';
import { insertUsageRecords, keepUsagePartitions, ledgerTableName, migrateUsageLedger } from './postgres-ledger.js';
import { MIN_RETENTION_MS } from './usage-partitions.js';
import type { LedgerLocation, Queryable } from './postgres-ledger.js';
import { BatchQueue, logOnce } from './sink.js';
import type { SinkErrorHandler, UsageSink } from './sink.js';

export interface PostgresSinkOptions extends LedgerLocation {
  /** Connection string; the sink opens (and closes) its own small pool. One of this, `pool` or `db`. */
  connectionString?: string;
  /** A pool you own (not closed by the sink). */
  pool?: pg.Pool;
  /**
   * Any database the ledger can query, which you own (not closed by the sink): a PGlite instance
   * for the embedded ledger (`new PGlite(dataDir)`), or a pg client. Share it with whatever reads
   * the ledger (`dashboard({ ledger })`): a PGlite data directory is opened by one instance at a time.
   */
  db?: Queryable;
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
  /**
   * How long raw usage rows are kept, in ms (at least `MIN_RETENTION_MS`, 93 days: a budget's spend is rebuilt from the
   * rows of its current period). The sink's hourly upkeep drops each month partition whose times all end longer ago
   * than this; the rollups keep what those rows summed. A table made before partitions is never deleted from
   * (`partitionUsageLedger` turns it into a partitioned one). @default undefined: every row kept
   */
  retentionMs?: number;
  /** How often the sink makes the months ahead and applies `retentionMs`, in ms. @default 3600000 */
  upkeepIntervalMs?: number;
}

const KNOWN = [
  'connectionString',
  'pool',
  'db',
  'schema',
  'table',
  'migrate',
  'batchSize',
  'flushIntervalMs',
  'maxQueue',
  'queryTimeoutMs',
  'onError',
  'retentionMs',
  'upkeepIntervalMs',
] as const satisfies readonly (keyof PostgresSinkOptions)[];

/** A sink writing to the usage ledger through any `Queryable` (PostgreSQL or PGlite). */
export interface LedgerSink extends UsageSink {
  /** The database the records go to. */
  readonly db: Queryable;
  /** Records waiting to be inserted. */
  readonly pending: number;
}

/** An embedded ledger as its users need it: queries, transactions (the ledger socket), close. */
interface EmbeddedLedger extends Queryable {
  transaction<T>(run: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * An embedded PostgreSQL (PGlite, an optional peer) to keep the ledger in: in `directory`, or in memory without one.
 * `feature` names what asked for it, for the error that says to install PGlite.
 */
export function openEmbeddedLedger(directory: string | undefined, feature: string): EmbeddedLedger {
  const { PGlite } = loadOptionalPeer<{ PGlite: new (directory?: string) => EmbeddedLedger }>(
    '@electric-sql/pglite',
    feature,
  );
  return new PGlite(directory);
}

export interface PostgresSink extends LedgerSink {
  readonly pool: pg.Pool;
}

/**
 * Writes each record to the usage ledger table (idempotent on the record id): on PostgreSQL
 * (`connectionString` or `pool`), or on any database you pass as `db`, such as PGlite.
 */
export function postgresSink(options: PostgresSinkOptions & { db: Queryable }): LedgerSink;
export function postgresSink(options: PostgresSinkOptions): PostgresSink;
export function postgresSink(options: PostgresSinkOptions): PostgresSink | LedgerSink {
  assertKnownOptions(options, KNOWN, 'ERR_TG_METERING_UNKNOWN_OPTION', 'postgresSink');
  if (options?.db !== undefined) {
    if (options.pool !== undefined || options.connectionString !== undefined)
      throw new TollgateError(
        'ERR_TG_METERING_INVALID_OPTION',
        'postgresSink() takes db, or a connectionString or pool, not both',
      );
    if (typeof options.db?.query !== 'function')
      throw new TollgateError(
        'ERR_TG_METERING_INVALID_OPTION',
        'postgresSink() db must have a query(text, values) method (a pg Pool or Client, or PGlite)',
      );
  } else if (!options?.pool && !options?.connectionString) {
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'postgresSink() needs a connectionString, a pool or a db',
    );
  }
  const location: LedgerLocation = { schema: options.schema, table: options.table };
  ledgerTableName(location); // validates the names now, not at the first insert
  const batchSize = options.batchSize ?? 100;
  // 25 parameters per row; PostgreSQL allows 65535 per statement.
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 1000)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'postgresSink() batchSize must be an integer from 1 to 1000',
    );
  const queryTimeoutMs = options.queryTimeoutMs ?? 10_000;
  if (!Number.isSafeInteger(queryTimeoutMs) || queryTimeoutMs < 1)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'postgresSink() queryTimeoutMs must be a positive integer',
    );
  const { retentionMs, upkeepIntervalMs = 3_600_000 } = options;
  if (retentionMs !== undefined && !(Number.isSafeInteger(retentionMs) && retentionMs >= MIN_RETENTION_MS))
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      `postgresSink() retentionMs must be at least ${MIN_RETENTION_MS} (93 days: a budget's spend is rebuilt from the rows of its current period, a quarter at most); got ${String(retentionMs)}`,
    );
  if (!Number.isSafeInteger(upkeepIntervalMs) || upkeepIntervalMs < 1)
    throw new TollgateError(
      'ERR_TG_METERING_INVALID_OPTION',
      'postgresSink() upkeepIntervalMs must be a positive integer',
    );
  const onError = options.onError ?? logOnce(`usage ledger ${ledgerTableName(location)}`);
  const ownsPool = options.db === undefined && !options.pool;
  // Without a query timeout, a connection that goes silent would hold the queue (and flush) forever.
  const pool = ownsPool
    ? new (loadOptionalPeer<typeof pg>('pg', 'postgresSink({ connectionString })').Pool)({
        connectionString: options.connectionString,
        max: 2,
        connectionTimeoutMillis: 5_000,
        query_timeout: queryTimeoutMs,
      })
    : options.pool;
  // An idle client losing its connection emits 'error' on the pool; unhandled, it would crash the process.
  if (ownsPool) pool!.on('error', onError);
  const db: Queryable = options.db ?? pool!;
  let migrated = options.migrate === false;
  // The months ahead and retention: after the first migration, then hourly; one run at a time, failures reported.
  let upkeep: Promise<unknown> | undefined;
  let warnedUnpartitioned = false;
  const keep = () =>
    (upkeep ??= keepUsagePartitions(db, location, retentionMs === undefined ? {} : { retentionMs })
      .then(({ partitioned }) => {
        if (!partitioned && retentionMs !== undefined && !warnedUnpartitioned) {
          warnedUnpartitioned = true;
          onError(
            new Error(
              `usage retention is not applied: ${ledgerTableName(location)} was made before partitions (run \`tollgate ledger partition\`); no row is deleted`,
            ),
          );
        }
      })
      .catch(onError)
      .finally(() => (upkeep = undefined)));
  const upkeepTimer =
    options.migrate === false ? undefined : setInterval(() => migrated && void keep(), upkeepIntervalMs);
  upkeepTimer?.unref();

  const queue = new BatchQueue<UsageRecord>(
    async (batch) => {
      if (!migrated) {
        await migrateUsageLedger(db, location);
        migrated = true;
        // The migration made the months ahead; what is older than the retention goes now, not an hour from now.
        if (retentionMs !== undefined) void keep();
      }
      await insertUsageRecords(db, batch, location);
    },
    { batchSize, flushIntervalMs: options.flushIntervalMs ?? 1000, maxQueue: options.maxQueue ?? 10_000, onError },
  );

  const sink: LedgerSink = {
    db,
    name: `postgres:${ledgerTableName(location)}`,
    get pending() {
      return queue.size;
    },
    write: (record) => queue.push(record),
    flush: () => queue.flush(),
    flushStored: () => queue.flushStored(),
    get dropped() {
      return queue.dropped;
    },
    // Inserts skip a record id already stored: a record written again is stored once.
    replay: (records) => queue.pushAll(records),
    async close() {
      clearInterval(upkeepTimer);
      await queue.close();
      await upkeep;
      if (ownsPool) await pool!.end().catch(onError);
    },
  };
  return pool === undefined ? sink : Object.assign(sink, { pool });
}
