// Who reads a key file, and what they took of it: each reader notes the text it applied, so that `tollgate keys` can
// tell whether a revocation reached every process reading the file, and a file that does not validate still revokes.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { lockHolderAlive, thisLockHolder } from '@tollgate/core/process-lock';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { LockHolder } from '@tollgate/core/process-lock';

/** How a reader took the file's last text: all of it, or only what it removes (the rest did not validate). */
type KeyFileTaking = 'whole' | 'removals';

interface ReaderNote extends LockHolder {
  /** SHA-256 hex of the file's text the reader took. */
  sha256: string;
  taking: KeyFileTaking;
  /** ISO time it took it. */
  takenAt: string;
  /** ISO time the reader last said it still reads the file (its heartbeat); older notes have only `takenAt`. */
  aliveAt?: string;
}

/** How often a reader rewrites its note while it reads the file. */
const READER_HEARTBEAT_MS = 5_000;
/**
 * A note not rewritten for this long is a reader gone (a container that died leaves its note behind, and another
 * host's process cannot be asked): a revoke no longer waits for it. Four heartbeats: a live reader never misses them.
 */
export const READER_NOTE_EXPIRY_MS = 4 * READER_HEARTBEAT_MS;

/** The folder beside `path` where its readers note what they took: `.<name>.readers/`. */
export function readersFolder(path: string): string {
  return join(dirname(path), `.${basename(path)}.readers`);
}

/** The SHA-256 hex of a file's text, as readers note it. */
function keyFileDigest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

const self = thisLockHolder();

/** The file a reader's note is kept in, in the readers folder. */
function noteName(holder: LockHolder): string {
  return `${holder.host}-${holder.pid}.json`;
}

/** This process's note on each file it reads, and the timer that keeps it fresh. */
const heartbeats = new Map<string, { note: ReaderNote; timer: NodeJS.Timeout }>();

function writeNote(path: string, note: ReaderNote): void {
  const folder = readersFolder(path);
  try {
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    // Written beside and renamed over: a command reading the folder meanwhile sees the old note or the new, never half.
    const name = noteName(self);
    writeFileSync(join(folder, `.${name}.partial`), JSON.stringify(note), { mode: 0o600 });
    renameSync(join(folder, `.${name}.partial`), join(folder, name));
  } catch {
    // Not knowing is said by the command that asks.
  }
}

/**
 * Notes that this process took `text` of the key file at `path` (whole, or its removals only), and keeps the note
 * fresh (`aliveAt`, every READER_HEARTBEAT_MS) until `forgetKeyFileReader`. Best effort: a folder that cannot be
 * written leaves `tollgate keys` unable to know, which it says.
 */
export function noteKeyFileTaken(path: string, text: string, taking: KeyFileTaking): void {
  const now = new Date().toISOString();
  const note: ReaderNote = { ...self, sha256: keyFileDigest(text), taking, takenAt: now, aliveAt: now };
  writeNote(path, note);
  const beating = heartbeats.get(path);
  if (beating) {
    beating.note = note;
    return;
  }
  const entry = {
    note,
    timer: setInterval(
      () => writeNote(path, { ...entry.note, aliveAt: new Date().toISOString() }),
      READER_HEARTBEAT_MS,
    ),
  };
  // The heartbeat never keeps a process alive that is otherwise done.
  entry.timer.unref();
  heartbeats.set(path, entry);
}

/** Removes this process's note (it stops reading the file). */
export function forgetKeyFileReader(path: string): void {
  clearInterval(heartbeats.get(path)?.timer);
  heartbeats.delete(path);
  rmSync(join(readersFolder(path), noteName(self)), { force: true });
}

/** A note still kept by a reader: rewritten lately, by a process that may be alive. */
function noteAlive(note: ReaderNote, now: number): boolean {
  const aliveAt = Date.parse(note.aliveAt ?? note.takenAt);
  return Number.isFinite(aliveAt) && now - aliveAt < READER_NOTE_EXPIRY_MS && lockHolderAlive(note);
}

/** The processes reading `path` now, with what they last took; notes of processes gone (or silent) are removed. */
function keyFileReaders(path: string): ReaderNote[] {
  const folder = readersFolder(path);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return [];
  }
  const readers: ReaderNote[] = [];
  const now = Date.now();
  for (const name of names) {
    // A note being written (renamed over its reader's note when whole).
    if (name.startsWith('.')) continue;
    const file = join(folder, name);
    let note: ReaderNote | undefined;
    try {
      note = JSON.parse(readFileSync(file, 'utf8')) as ReaderNote;
    } catch {
      continue;
    }
    if (noteAlive(note, now)) readers.push(note);
    else rmSync(file, { force: true });
  }
  return readers;
}

/** What the readers of a file did with a text written to it, once they had the time to see it. */
export interface ReadersVerdict {
  /** Readers that took the text (wholly or its removals). */
  took: ReaderNote[];
  /** Readers alive that have not taken it. */
  waiting: ReaderNote[];
}

/** Waits up to `timeoutMs` for every reader of `path` to note `text` taken; says who did and who did not. */
export async function waitForKeyFileReaders(path: string, text: string, timeoutMs: number): Promise<ReadersVerdict> {
  const sha256 = keyFileDigest(text);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const readers = keyFileReaders(path);
    const took = readers.filter((reader) => reader.sha256 === sha256);
    const waiting = readers.filter((reader) => reader.sha256 !== sha256);
    if (waiting.length === 0 || Date.now() >= deadline) return { took, waiting };
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

/** An entry of a key file read without validating the rest: only what can take a key away. */
interface RemovalTerms {
  id: string;
  sha256: string;
  disabled: boolean;
  expiresAt: number | undefined;
}

function removalTerms(raw: unknown): RemovalTerms | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const entry = raw as Record<string, unknown>;
  if (typeof entry.id !== 'string' || typeof entry.sha256 !== 'string') return undefined;
  const expiry = typeof entry.expiresAt === 'string' ? Date.parse(entry.expiresAt) : undefined;
  return {
    id: entry.id,
    sha256: entry.sha256.toLowerCase(),
    // Anything but an explicit false reads as disabled: a hand edit that half-wrote it fails closed.
    disabled: entry.disabled !== undefined && entry.disabled !== false,
    // An expiry that does not read is already past (judgeKeyRecord's rule).
    expiresAt: entry.expiresAt === undefined ? undefined : Number.isFinite(expiry) ? expiry : 0,
  };
}

/**
 * The running keys with what a changed file takes away, when the file as a whole does not validate: a key whose
 * entry is gone (or whose entry no longer reads, or names another hash) is removed, one disabled there is disabled,
 * one given an earlier expiry there expires then. Nothing is added or widened: those wait for a valid file.
 * `rawKeys` is the file's `keys` as parsed; not an array, it names no key, and every running key is removed.
 */
export function keysWithRemovals(running: readonly ApiKeyRecord[], rawKeys: unknown): ApiKeyRecord[] {
  const entries = new Map<string, RemovalTerms>();
  for (const raw of Array.isArray(rawKeys) ? rawKeys : []) {
    const terms = removalTerms(raw);
    // An id given twice: the stricter reading of the two.
    if (terms && !entries.has(terms.id)) entries.set(terms.id, terms);
    else if (terms) entries.set(terms.id, { ...terms, disabled: true });
  }
  const kept: ApiKeyRecord[] = [];
  for (const record of running) {
    const terms = entries.get(record.id);
    if (!terms || terms.sha256 !== record.sha256) continue;
    const next: ApiKeyRecord = { ...record };
    if (terms.disabled) next.disabled = true;
    const current = record.expiresAt === undefined ? Infinity : Date.parse(record.expiresAt);
    if (terms.expiresAt !== undefined && terms.expiresAt < current)
      next.expiresAt = new Date(terms.expiresAt).toISOString();
    kept.push(next);
  }
  return kept;
}
