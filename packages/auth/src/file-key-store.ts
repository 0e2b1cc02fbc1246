// A key store kept in a JSON file's `keys` array (the config file's format): each change written atomically under the
// file's lock, and the file read again when another process (the `keys` command) changed it.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { TollgateError } from '@tollgate/core';
import { MemoryKeyStore } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyChangeOutcome, KeyStore } from '@tollgate/core/store-contracts';
import { editConfigKeys, parseConfigKeys } from './config-file.js';
import { forgetKeyFileReader, keysWithRemovals, noteKeyFileTaken } from './key-file-readers.js';

/** A changed file that did not validate, and what was taken of it. */
class KeyFileError extends Error {
  constructor(
    override readonly cause: unknown,
    readonly taken: 'removals' | 'nothing',
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** A file's `keys` as JSON reads them, whatever they hold; not readable when the text is not JSON. */
function parsedKeys(text: string): { readable: boolean; keys?: unknown } {
  try {
    const parsed = JSON.parse(text) as unknown;
    return { readable: true, keys: (parsed as { keys?: unknown } | null)?.keys };
  } catch {
    return { readable: false };
  }
}

interface FileKeyStoreOptions {
  /** How often the file is checked for changes made by another process; 0 never checks. @default 1000 */
  watchIntervalMs?: number;
  /**
   * Told when the changed file does not validate: `removals` when its revocations, expiries and deletions were
   * taken anyway (the rest waits for a valid file), `nothing` when it could not be read at all (not JSON).
   */
  onError?: (error: unknown, taken: 'removals' | 'nothing') => void;
  /** Told when a changed file was taken whole. */
  onReload?: () => void;
}

export interface FileKeyStore extends KeyStore {
  readonly path: string;
  /** Reads the file again (done on its own when the file changes). */
  reload(): Promise<void>;
  /** Stops watching the file. */
  close(): void;
}

/** The file's text, read synchronously; a missing file has no keys. */
function readTextNow(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '{}';
    throw new TollgateError('ERR_TG_AUTH_CONFIG_FILE', `cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Keys in `path` (`{ "keys": [...] }`, the config file's format, other fields kept): lookups are answered from memory
 * (synchronously, as the memory store answers them), changes go to the file first, under the lock the `keys` command
 * takes, so a proxy and `tollgate keys --config <path>` can both edit it. A missing file holds no keys and is made by
 * the first change (mode 0600: it lists key hashes). The file is read once here, synchronously: a gateway made with
 * it knows its keys before its first request.
 */
export function fileKeyStore(path: string, options: FileKeyStoreOptions = {}): FileKeyStore {
  const interval = options.watchIntervalMs ?? 1000;
  // A store that watches the file notes what it took of it, for `tollgate keys` to know it reads the file.
  const noteTaken = interval > 0 ? noteKeyFileTaken : () => undefined;
  const first = readTextNow(path);
  let memory = new MemoryKeyStore(parseConfigKeys(first, path));
  noteTaken(path, first, 'whole');
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
    // Under the file's lock: the read and the write are one step.
    async change(id, decide) {
      let outcome: KeyChangeOutcome = 'missing';
      await edit((records) => {
        const index = records.findIndex((record) => record.id === id);
        const current = records[index];
        if (!current) return undefined;
        const change = decide(current);
        outcome = !change ? 'declined' : change.add && records.some((r) => r.id === change.add!.id) ? 'taken' : 'done';
        if (outcome !== 'done') return undefined;
        const next = [...records];
        next[index] = current.disabled === true ? { ...change!.record, disabled: true } : change!.record;
        return change!.add ? [...next, change!.add] : next;
      });
      return outcome;
    },
    delete: (id) =>
      edit((records) => (records.some((record) => record.id === id) ? records.filter((r) => r.id !== id) : undefined)),
    async reload() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        // No file, no keys: a deleted file revokes every key it held.
        text = '{}';
      }
      let records: ApiKeyRecord[];
      try {
        records = parseConfigKeys(text, path);
      } catch (error) {
        // The file does not validate: what it takes away still counts (keysWithRemovals); the rest waits.
        const raw = parsedKeys(text);
        if (raw.readable) {
          take(keysWithRemovals(await memory.list(), raw.keys));
          noteTaken(path, text, 'removals');
        }
        throw new KeyFileError(error, raw.readable ? 'removals' : 'nothing');
      }
      take(records);
      noteTaken(path, text, 'whole');
      options.onReload?.();
    },
    close() {
      if (interval > 0) {
        unwatchFile(path, onChange);
        forgetKeyFileReader(path);
      }
    },
  };
  function onChange(current: Stats, previous: Stats) {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    store
      .reload()
      .catch((error: unknown) =>
        error instanceof KeyFileError
          ? options.onError?.(error.cause, error.taken)
          : options.onError?.(error, 'nothing'),
      );
  }
  // Polling, not fs.watch: it sees the rename that replaces the file on each atomic write.
  if (interval > 0) watchFile(path, { interval, persistent: false }, onChange);
  return store;
}
