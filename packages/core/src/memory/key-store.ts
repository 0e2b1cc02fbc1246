// In-memory API key store: records by id plus an index from key hash to id.
import type { ApiKeyRecord, KeyStore } from '../stores.js';

/** Hex is case-insensitive; auth looks keys up by lowercase hex, so the index is lowercase whatever was put. */
function hashIndex(sha256: string): string {
  return sha256.toLowerCase();
}

/** Key store for one process. Records are copied in and out so callers cannot change stored state by accident. */
export class MemoryKeyStore implements KeyStore {
  readonly #byId = new Map<string, ApiKeyRecord>();
  readonly #idByHash = new Map<string, string>();

  constructor(records: readonly ApiKeyRecord[] = []) {
    for (const record of records) this.#put(record);
  }

  #put(record: ApiKeyRecord): void {
    const previous = this.#byId.get(record.id);
    if (previous && this.#idByHash.get(hashIndex(previous.sha256)) === record.id) this.#idByHash.delete(hashIndex(previous.sha256));
    // A hash resolves to one key: taking it over from another id leaves that id unreachable by hash.
    this.#byId.set(record.id, structuredClone(record));
    this.#idByHash.set(hashIndex(record.sha256), record.id);
  }

  async findByHash(sha256: string): Promise<ApiKeyRecord | undefined> {
    const id = this.#idByHash.get(hashIndex(sha256));
    return id === undefined ? undefined : this.findById(id);
  }

  async findById(id: string): Promise<ApiKeyRecord | undefined> {
    const record = this.#byId.get(id);
    return record && structuredClone(record);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    this.#put(record);
  }

  async disable(id: string): Promise<boolean> {
    const record = this.#byId.get(id);
    if (!record) return false;
    record.disabled = true;
    return true;
  }

  async delete(id: string): Promise<boolean> {
    const record = this.#byId.get(id);
    if (!record) return false;
    this.#byId.delete(id);
    if (this.#idByHash.get(hashIndex(record.sha256)) === id) this.#idByHash.delete(hashIndex(record.sha256));
    return true;
  }

  /** Every record, sorted by id. */
  async list(): Promise<ApiKeyRecord[]> {
    return [...this.#byId.values()].map((record) => structuredClone(record)).sort((a, b) => a.id.localeCompare(b.id));
  }
}
