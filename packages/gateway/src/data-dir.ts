// `dataDir`: the directory that keeps the gateway's ledger, keys and spool across restarts, held by one process at a time.
import { closeSync, linkSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileKeyStore } from '@tollgate/auth';
import type { FileKeyStore } from '@tollgate/auth';
import type { TollgateStores } from '@tollgate/core';
import { lockHolderAlive, readLockHolder, thisLockHolder } from '@tollgate/core/process-lock';
import { dataDirLayout } from '@tollgate/metering';
import type { ConfigFileStates } from './config-file-state.js';

/** A takeover file this old was left by a starter that died while taking a stale lock over. */
const TAKEOVER_STALE_MS = 5000;

export { dataDirLayout };

/** What places the usage ledger: a PostgreSQL URL, the embedded one (in memory, in a directory), the data directory. */
interface LedgerPlacement {
  postgresUrl?: string | undefined;
  embeddedLedger?: boolean | string | undefined;
  dataDir?: string | undefined;
}

/** The embedded ledger's location: a path, `memory`, or none (`postgresUrl` or `embeddedLedger: false`). */
export function embeddedLedgerLocation(place: LedgerPlacement): string | 'memory' | undefined {
  if (place.postgresUrl || place.embeddedLedger === false) return undefined;
  if (typeof place.embeddedLedger === 'string') return place.embeddedLedger;
  if (place.dataDir) return dataDirLayout(place.dataDir).ledger;
  return place.embeddedLedger ? 'memory' : undefined;
}

export class DataDirInUseError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(
      `dataDir ${dir} is held by process ${pid} (its ledger opens in one process at a time); stop that process, or give this one another dataDir`,
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * Creates the lock naming this process (core's process-lock format), exclusively; a lock whose process is gone is
 * taken over (lockHolderAlive, the one liveness rule of the project's locks).
 */
function takeLock(dir: string, path: string): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    // Written whole under another name, then linked into place: a lock is never seen half written.
    const written = `${path}.${process.pid}.tmp`;
    writeFileSync(written, `${JSON.stringify(thisLockHolder())}\n`, { mode: 0o600 });
    try {
      linkSync(written, path);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      rmSync(written, { force: true });
    }
    const holder = readLockHolder(path);
    if (holder && (holder.pid === process.pid || lockHolderAlive(holder))) throw new DataDirInUseError(dir, holder.pid);
    // Left by a process that is gone. Two starters may both see that: the one that makes the takeover file removes
    // the old lock, the other finds the new one (or the takeover) and stops.
    const takeover = `${path}.takeover`;
    try {
      closeSync(openSync(takeover, 'wx', 0o600));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A takeover file older than a few seconds was left by a starter that died in the middle of one.
      if (Date.now() - statSync(takeover).mtimeMs > TAKEOVER_STALE_MS) rmSync(takeover, { force: true });
      continue;
    }
    try {
      if (readLockHolder(path)?.startedAt === holder?.startedAt) rmSync(path, { force: true });
    } finally {
      rmSync(takeover, { force: true });
    }
  }
  const holder = readLockHolder(path);
  throw holder === undefined
    ? new Error(`cannot hold dataDir ${dir}: its lock ${path} cannot be taken`)
    : new DataDirInUseError(dir, holder.pid);
}

export interface HeldDataDir {
  readonly dir: string;
  readonly layout: ReturnType<typeof dataDirLayout>;
  release(): void;
}

/**
 * Makes the directory (mode 0700: it holds key hashes and spend) and holds it for this process: a lock file with its
 * pid, created exclusively. A lock whose process is gone (killed, crashed) is taken over; one whose process runs is a
 * DataDirInUseError. Released by `release()`, and by nothing else: a process that dies leaves it, for the next start
 * to take over.
 */
export function holdDataDir(dir: string): HeldDataDir {
  const absolute = resolve(dir);
  mkdirSync(absolute, { recursive: true, mode: 0o700 });
  const layout = dataDirLayout(absolute);
  takeLock(absolute, layout.lock);
  let held = true;
  return {
    dir: absolute,
    layout,
    release() {
      if (!held) return;
      held = false;
      if (readLockHolder(layout.lock)?.pid === process.pid) rmSync(layout.lock, { force: true });
    },
  };
}

/**
 * On memory stores, the keys made while running (through /admin/keys, the dashboard, `tollgate keys --config
 * <dataDir>/keys.json`) are kept in the data directory's keys file; Redis stores keep their own.
 */
export function keysKeptIn(
  held: HeldDataDir,
  stores: TollgateStores,
  files: ConfigFileStates,
): { stores: TollgateStores; keys?: FileKeyStore } {
  if (stores.kind !== 'memory') return { stores };
  const path = held.layout.keys;
  const keys = fileKeyStore(path, {
    onError: (error, taken) =>
      files.note({
        path,
        status: taken === 'removals' ? 'invalid' : 'unreadable',
        problems: [error instanceof Error ? error.message : String(error)],
      }),
    onReload: () => files.note({ path, status: 'valid', problems: [] }),
  });
  files.note({ path, status: 'valid', problems: [] });
  return { stores: { ...stores, keys }, keys };
}

/**
 * Writes what a data directory's keys may name, from the config its holder serves (at the gateway's start): `tollgate
 * keys --config <dataDir>/keys.json` checks a change against it. `names`: the config's `keyNamesOf`.
 */
export function writeKeyNames(dir: string, names: object): void {
  writeFileSync(dataDirLayout(dir).keyNames, `${JSON.stringify(names, null, 2)}\n`, { mode: 0o600 });
}
