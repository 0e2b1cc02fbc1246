// Reads and atomically rewrites the `keys` array of a JSON config file (temp file + rename, under a lock file).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ApiKeyRecord } from '@tollgate/core/kit';
import { TollgateError } from '@tollgate/core';
import { configKeyFromRecord, keyRecordsFromConfig } from './config-keys.js';

type ConfigObject = Record<string, unknown>;

/** How long a second writer waits for the lock before giving up. */
const LOCK_WAIT_MS = 5000;
const LOCK_RETRY_MS = 50;

async function readConfigObject(path: string, missingOk: boolean): Promise<ConfigObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && missingOk) return {};
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `cannot read ${path}: ${(error as Error).message}`);
  }
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

/** The key records of a config file (validated). A missing file has none. */
export async function readConfigKeys(path: string): Promise<ApiKeyRecord[]> {
  const config = await readConfigObject(path, false);
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

/** Holds `<path>.lock` while `work` runs, so two CLI runs cannot lose each other's edit. */
async function withLock<T>(path: string, work: () => Promise<T>): Promise<T> {
  const lockPath = `${path}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await open(lockPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (Date.now() > deadline) {
        throw new TollgateError(
          'ERR_TG_AUTH_CONFIG_LOCKED',
          `${lockPath} exists: another "keys" command is editing ${path} (remove the lock file if none is)`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    }
  }
  try {
    return await work();
  } finally {
    await rm(lockPath, { force: true });
  }
}

/**
 * Applies `edit` to the config file's key records and writes the file back atomically,
 * leaving every other field as it was. Creates the file (`{ "keys": [...] }`) if missing
 * and `create` is set. `edit` returns its result; the file is written only if it returns `changed: true`.
 */
export async function editConfigKeys<T>(
  path: string,
  edit: (records: ApiKeyRecord[]) => { changed: boolean; records: ApiKeyRecord[]; result: T },
  options: { create?: boolean } = {},
): Promise<T> {
  return withLock(path, async () => {
    const config = await readConfigObject(path, options.create === true);
    const { changed, records, result } = edit(keyRecordsFromConfig(config.keys));
    if (changed) {
      config.keys = records.map(configKeyFromRecord);
      await writeAtomically(path, `${JSON.stringify(config, null, 2)}\n`);
    }
    return result;
  });
}
