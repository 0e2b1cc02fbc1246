// Reads and atomically rewrites the `keys` array of a JSON config file (temp file + rename, under a lock file a crash does not leave held).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { withFileLock } from '@tollgate/core/process-lock';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { LockHolder } from '@tollgate/core/process-lock';
import { TollgateError } from '@tollgate/core';
import { configKeyFromRecord, keyRecordsFromConfig } from './config-keys.js';

type ConfigObject = Record<string, unknown>;

/** How long a second writer waits for the lock before giving up. */
const LOCK_WAIT_MS = 5000;
const LOCK_RETRY_MS = 50;

function parseConfigObject(text: string, path: string): ConfigObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `${path} must hold a JSON object`);
  return parsed as ConfigObject;
}

async function readConfigObject(path: string, missingOk: boolean): Promise<ConfigObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && missingOk) return {};
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `cannot read ${path}: ${(error as Error).message}`);
  }
  return parseConfigObject(text, path);
}

/** The key records of a config file's text (validated); `path` names it in errors. */
export function parseConfigKeys(text: string, path: string): ApiKeyRecord[] {
  return keyRecordsFromConfig(parseConfigObject(text, path).keys);
}

/** The key records of a config file (validated). A missing file is an error, unless `missingOk` (then it has none). */
export async function readConfigKeys(path: string, options: { missingOk?: boolean } = {}): Promise<ApiKeyRecord[]> {
  const config = await readConfigObject(path, options.missingOk === true);
  return keyRecordsFromConfig(config.keys);
}

/** Writes `text` to `path` so that readers see the old file or the new one, never a half-written one. */
async function writeAtomically(path: string, text: string): Promise<void> {
  let mode = 0o600;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch {
    // A new file: keep it private, it lists key hashes.
  }
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function lockedError(path: string, lockPath: string, holder: LockHolder | undefined): TollgateError {
  const who = holder ? `process ${holder.pid} on ${holder.host} (since ${holder.startedAt})` : 'another process';
  return new TollgateError(
    'ERR_TG_AUTH_CONFIG_LOCKED',
    `${path} is being edited by ${who}, which holds ${lockPath}; try again when it is done` +
      (holder && holder.host !== hostname() ? ' (if that process is gone, delete the lock file)' : ''),
  );
}

/**
 * Holds `<path>.lock` while `work` runs, so two CLI runs cannot lose each other's edit. The lock names
 * its holder: a lock left by a run that died (killed, crashed) on this host is taken over at once.
 */
async function withLock<T>(path: string, work: () => Promise<T>): Promise<T> {
  const lockPath = resolve(`${path}.lock`);
  return withFileLock(lockPath, work, {
    waitMs: LOCK_WAIT_MS,
    retryMs: LOCK_RETRY_MS,
    locked: (holder) => lockedError(path, lockPath, holder),
  });
}

/**
 * Applies `edit` to the config file's key records and writes the file back atomically,
 * leaving every other field as it was. Creates the file (`{ "keys": [...] }`) if missing
 * and `create` is set. `edit` returns its result; the file is written only if it returns `changed: true`.
 */
export async function editConfigKeys<T>(
  path: string,
  edit: (records: ApiKeyRecord[]) => { changed: boolean; records: ApiKeyRecord[]; result: T },
  options: EditOptions = {},
): Promise<T> {
  return withLock(path, async () => {
    const config = await readConfigObject(path, options.create === true);
    const { changed, records, result } = edit(keyRecordsFromConfig(config.keys));
    if (changed) {
      const next = { ...config, keys: records.map(configKeyFromRecord) };
      const text = `${JSON.stringify(next, null, 2)}\n`;
      // Throws to refuse: nothing is written.
      options.check?.(config, next);
      await writeAtomically(path, text);
      options.written?.(text);
    }
    return result;
  });
}

/** How editConfigKeys treats the file. */
interface EditOptions {
  /** A missing file is made (`{ "keys": [...] }`). */
  create?: boolean;
  /** Checks the whole file as it would be written, beside the file as it is; throws to refuse the write. */
  check?: (before: ConfigObject, after: ConfigObject) => void;
  /** Told the text written. */
  written?: (text: string) => void;
}
