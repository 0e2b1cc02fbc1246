// @tollgate/core/process-lock: lock files that name their holder (process id, host, start): a lock whose process died
// on this host is stale, so a crash never leaves one behind for good. The one liveness rule of the usage spool's locks,
// the key commands' lock, the Stripe meter journal's lock and the gateway's data directory.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

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

/** Lock files held by this process (absolute paths): alive, though they name this process's own id. */
const heldHere = new Set<string>();
/** Per lock file, the turn of the last run of this process waiting for it or holding it. */
const inProcess = new Map<string, Promise<void>>();

/** The lock file and what it names: its inode tells it from a lock taken after it was read. */
async function readLock(lockPath: string): Promise<{ ino: number; holder: LockHolder | undefined } | undefined> {
  try {
    const { ino } = await stat(lockPath);
    return { ino, holder: readLockHolder(lockPath) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Creates the lock naming this process, whole (written, then linked to its name); false when it exists. */
async function createLock(lockPath: string): Promise<boolean> {
  const temp = `${lockPath}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, JSON.stringify(thisLockHolder()), { mode: 0o600, flag: 'wx' });
  try {
    await link(temp, lockPath);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * Removes a lock whose holder died. It is renamed away first (one rename wins), and put back if the
 * file moved is not the one found stale: another run took the stale lock over in between and holds it.
 */
async function removeStaleLock(lockPath: string, staleIno: number): Promise<void> {
  const moved = `${lockPath}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await rename(lockPath, moved);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    if ((await stat(moved)).ino !== staleIno) await link(moved, lockPath);
  } finally {
    await rm(moved, { force: true });
  }
}

export interface FileLockOptions {
  /** How long to wait for a live holder before giving up with `locked(holder)`. */
  waitMs: number;
  /** The pause between tries. */
  retryMs: number;
  /** The error thrown when a live holder kept the lock past `waitMs`. */
  locked(holder: LockHolder | undefined): Error;
}

/**
 * Holds the lock file `lockPath` while `work` runs, across processes (and runs of this process take turns). The lock
 * names its holder: a lock left by a process that died (killed, crashed) on this host is taken over at once.
 */
export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, options: FileLockOptions): Promise<T> {
  const path = resolve(lockPath);
  // Runs of this process take turns before they touch the file: a lock naming this process is then held by the run
  // under way (heldHere), never mistaken for one an earlier life of the process id left, and a run that ends removes
  // its own lock before the next one of this process looks.
  const before = inProcess.get(path) ?? Promise.resolve();
  let done!: () => void;
  const turn = new Promise<void>((resolveTurn) => (done = resolveTurn));
  const queued = before.then(() => turn);
  inProcess.set(path, queued);
  await before;
  try {
    return await holdLockFile(path, work, options);
  } finally {
    done();
    if (inProcess.get(path) === queued) inProcess.delete(path);
  }
}

/** The lock file itself, taken by this process's one run at a time (withFileLock). */
async function holdLockFile<T>(lockPath: string, work: () => Promise<T>, options: FileLockOptions): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  for (;;) {
    if (await createLock(lockPath)) break;
    const found = await readLock(lockPath);
    if (found === undefined) continue;
    if (!lockHolderAlive(found.holder, heldHere.has(lockPath))) {
      await removeStaleLock(lockPath, found.ino);
      continue;
    }
    if (Date.now() > deadline) throw options.locked(found.holder);
    await new Promise((wake) => setTimeout(wake, options.retryMs));
  }
  heldHere.add(lockPath);
  try {
    return await work();
  } finally {
    heldHere.delete(lockPath);
    await rm(lockPath, { force: true });
  }
}
