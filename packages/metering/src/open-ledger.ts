// Opening the usage ledger to read it from another process: a PostgreSQL server, or the embedded (PGlite) ledger of a
// gateway's data directory, through the socket of the gateway holding it or directly when none does.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { lockHolderAlive, readLockHolder } from '@tollgate/core/process-lock';
import type pg from 'pg';
import { dataDirLayout, ledgerClient } from './ledger-socket.js';
import { loadOptionalPeer } from './optional-peer.js';
import type { Queryable } from './postgres-ledger.js';
import { openEmbeddedLedger } from './postgres-sink.js';

/** Where a reader finds the usage ledger: PostgreSQL, or a gateway's data directory. */
export type LedgerSource = { postgres: string } | { dataDir: string };

/** A ledger open for one read. */
export interface OpenLedger {
  db: Queryable;
  close(): Promise<void>;
}

async function openPostgres(url: string, feature: string): Promise<OpenLedger> {
  const client = new (loadOptionalPeer<typeof pg>('pg', feature).Client)({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
  });
  const close = () => client.end().catch(() => undefined);
  try {
    await client.connect();
  } catch (error) {
    await close();
    throw error;
  }
  return { db: client, close };
}

/**
 * The embedded ledger a proxy keeps in `<dataDir>/ledger` (a PGlite data directory). PGlite opens a directory in one
 * process at a time: while a proxy holds the data directory (its lock names a live process), the ledger is read
 * through the socket that proxy serves it on (serveLedger: read-only queries, between its writes); otherwise it is
 * opened here.
 */
async function openDataDir(dataDir: string, feature: string): Promise<OpenLedger> {
  const layout = dataDirLayout(dataDir);
  const holder = readLockHolder(layout.lock);
  if (lockHolderAlive(holder)) {
    if (!existsSync(layout.socket))
      throw new Error(
        `the data directory ${dataDir} is held by process ${holder!.pid}, which serves no ledger socket there (${layout.socket}): ` +
          'it may still be starting, or keep its ledger elsewhere (postgresUrl: use --postgres)',
      );
    return { db: ledgerClient(layout.socket), close: async () => undefined };
  }
  // Opening a directory that holds no database would make an empty one there.
  if (!existsSync(join(layout.ledger, 'PG_VERSION')))
    throw new Error(`no ledger in ${dataDir}: ${layout.ledger} is not a PGlite data directory`);
  const db = openEmbeddedLedger(layout.ledger, `${feature} --data-dir`);
  return { db, close: () => db.close() };
}

/**
 * Opens the ledger a source names, to read it (and close it after). `feature` names the reader in the message of a
 * missing optional peer (pg, PGlite): `tollgate report`.
 */
export async function openLedger(source: LedgerSource, feature = 'reading the usage ledger'): Promise<OpenLedger> {
  return 'dataDir' in source ? openDataDir(source.dataDir, feature) : openPostgres(source.postgres, feature);
}
