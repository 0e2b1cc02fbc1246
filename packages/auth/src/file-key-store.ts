// A key store kept in a JSON file's `keys` array (the config file's format): each change written atomically under the
// file's lock, and the file read again when another process (the `keys` command) changed it.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Stats } from 'node:fs';
import { TollgateError } from '@tollgate/core';
import { MemoryKeyStore } from '@tollgate/core/kit';
import type { ApiKeyRecord, KeyStore } from '@tollgate/core/kit';
import { editConfigKeys, parseConfigKeys, readConfigKeys } from './config-file.js';

export interface FileKeyStoreOptions {
  /** How often the file is checked for changes made by another process; 0 never checks. @default 1000 */
  watchIntervalMs?: number;
  /** Told when the changed file cannot be read (the keys held so far stay in force). */
  onError?: (error: unknown) => void;
}

export interface FileKeyStore extends KeyStore {
  readonly path: string;
  /** Reads the file again (done on its own when the file changes). */
  reload(): Promise<void>;
  /** Stops watching the file. */
  close(): void;
}

/** The file's keys, read synchronously; a missing file has none. */
function readKeysNow(path: string): ApiKeyRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `cannot read ${path}: ${(error as Error).message}`);
  }
  return parseConfigKeys(text, path);
}

/**
 * Keys in `path` (`{ "keys": [...] }`, the config file's format, other fields kept): lookups are answered from memory
 * (synchronously, as the memory store answers them), changes go to the file first, under the lock the `keys` command
 * takes, so a proxy and `tollgate keys --config <path>` can both edit it. A missing file holds no keys and is made by
 * the first change (mode 0600: it lists key hashes). The file is read once here, synchronously: a gateway made with
 * it knows its keys before its first request.
 */
export function fileKeyStore(path: string, options: FileKeyStoreOptions = {}): FileKeyStore {
  let memory = new MemoryKeyStore(readKeysNow(path));
  const take = (records: ApiKeyRecord[]) => {
    memory = new MemoryKeyStore(records);
  };
  /** Applies `change` to the file's records; the store then holds what the file holds. */
  const edit = (change: (records: ApiKeyRecord[]) => ApiKeyRecord[] | undefined): Promise<boolean> =>
    editConfigKeys(
      path,
      (records) => {
        const next = change(records);
        take(next ?? records);
        return next ? { changed: true, records: next, result: true } : { changed: false, records, result: false };
      },
      { create: true },
    );
  const interval = options.watchIntervalMs ?? 1000;
  const store: FileKeyStore = {
    path,
    findByHashSync: (sha256) => memory.findByHashSync(sha256),
    findByHash: async (sha256) => memory.findByHashSync(sha256),
    findById: (id) => memory.findById(id),
    list: () => memory.list(),
    async put(record) {
      await edit((records) => [...records.filter((existing) => existing.id !== record.id), record]);
    },
    disable: (id) =>
      edit((records) =>
        records.some((record) => record.id === id)
          ? records.map((record) => (record.id === id ? { ...record, disabled: true } : record))
          : undefined,
      ),
    delete: (id) =>
      edit((records) => (records.some((record) => record.id === id) ? records.filter((r) => r.id !== id) : undefined)),
    async reload() {
      take(await readConfigKeys(path, { missingOk: true }));
    },
    close() {
      if (interval > 0) unwatchFile(path, onChange);
    },
  };
  function onChange(current: Stats, previous: Stats) {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    store.reload().catch((error: unknown) => options.onError?.(error));
  }
  // Polling, not fs.watch: it sees the rename that replaces the file on each atomic write.
  if (interval > 0) watchFile(path, { interval, persistent: false }, onChange);
  return store;
}
