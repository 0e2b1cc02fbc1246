// @tollgate/core/process-lock: lock files that name their holder (process id, host, start): a lock whose process died
// on this host is stale, so a crash never leaves one behind for good. The one liveness rule of the usage spool's locks,
// the key commands' lock and the gateway's data directory.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock. */
  startedAt: string;
}

/** This process, as a lock file it holds names it. */
export function thisLockHolder(): LockHolder {
  return { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
}

/** The holder a lock file names; undefined when the file names none (gone, not JSON, no pid). */
export function readLockHolder(path: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    return Number.isSafeInteger(holder.pid) && typeof holder.host === 'string' ? (holder as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the process a lock names may still hold it. A lock file is written whole before it gets its
 * name, so one that names nobody is not a process starting up: stale. A process of another host cannot
 * be checked here: taken as alive. A lock naming this process's own id that this process does not hold
 * (`heldHere` false) is from an earlier life of the id (pid 1 in a container): stale.
 */
export function lockHolderAlive(holder: LockHolder | undefined, heldHere = false): boolean {
  if (heldHere) return true;
  if (!holder) return false;
  if (holder.host !== hostname()) return true;
  if (holder.pid === process.pid || holder.pid <= 0) return false;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
