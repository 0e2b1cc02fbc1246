// In-memory API key store: records by id plus an index from key hash to id.
import { compareKeyIds, pageOfSorted, soonestExpiring } from '../key-pages.js';
import type { ApiKeyRecord, KeyChange, KeyChangeOutcome, KeyPage, KeyPageQuery, KeyStore } from '../stores.js';

/** Hex is case-insensitive; auth looks keys up by lowercase hex, so the index is lowercase whatever was put. */
function hashIndex(sha256: string): string {
  return sha256.toLowerCase();
}

/** A deep copy, frozen all the way down: handed out as is, so a caller cannot change stored state by accident. */
function frozenCopy(record: ApiKeyRecord): ApiKeyRecord {
  return deepFreeze(structuredClone(record));
}

/** Freezes `value` and everything it holds (records handed out as they are stored, never copied per lookup). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * Key store for one process. Records are copied once on the way in and stored frozen; lookups (one
 * per authenticated request) hand out the frozen record itself instead of a fresh copy each time.
 */
export class MemoryKeyStore implements KeyStore {
  readonly #byId = new Map<string, ApiKeyRecord>();
  readonly #idByHash = new Map<string, string>();
  /** Every record in id order, sorted again at the first page after a write. */
  #sorted: ApiKeyRecord[] | undefined;

  constructor(records: readonly ApiKeyRecord[] = []) {
    for (const record of records) this.#put(record);
  }

  #put(record: ApiKeyRecord): void {
    const previous = this.#byId.get(record.id);
    if (previous && this.#idByHash.get(hashIndex(previous.sha256)) === record.id)
      this.#idByHash.delete(hashIndex(previous.sha256));
    // A hash resolves to one key: taking it over from another id leaves that id unreachable by hash.
    this.#byId.set(record.id, frozenCopy(record));
    this.#sorted = undefined;
    this.#idByHash.set(hashIndex(record.sha256), record.id);
  }

  findByHashSync(sha256: string): ApiKeyRecord | undefined {
    const id = this.#idByHash.get(hashIndex(sha256));
    return id === undefined ? undefined : this.#byId.get(id);
  }

  async findByHash(sha256: string): Promise<ApiKeyRecord | undefined> {
    return this.findByHashSync(sha256);
  }

  async findById(id: string): Promise<ApiKeyRecord | undefined> {
    return this.#byId.get(id);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    this.#put(record);
  }

  async disable(id: string): Promise<boolean> {
    const record = this.#byId.get(id);
    if (!record) return false;
    this.#byId.set(id, frozenCopy({ ...record, disabled: true }));
    this.#sorted = undefined;
    return true;
  }

  /** One process, no await between the read and the write: atomic as it is. */
  async change(id: string, decide: (record: ApiKeyRecord) => KeyChange | undefined): Promise<KeyChangeOutcome> {
    const current = this.#byId.get(id);
    if (!current) return 'missing';
    const change = decide(current);
    if (!change) return 'declined';
    if (change.add && this.#byId.has(change.add.id)) return 'taken';
    if (change.add) this.#put(change.add);
    this.#put(current.disabled === true ? { ...change.record, disabled: true } : change.record);
    return 'done';
  }

  async delete(id: string): Promise<boolean> {
    const record = this.#byId.get(id);
    if (!record) return false;
    this.#byId.delete(id);
    this.#sorted = undefined;
    if (this.#idByHash.get(hashIndex(record.sha256)) === id) this.#idByHash.delete(hashIndex(record.sha256));
    return true;
  }

  /** Every record, sorted by id. */
  async list(): Promise<ApiKeyRecord[]> {
    return [...this.#byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async expiring(from: number, until: number, limit: number): Promise<ApiKeyRecord[]> {
    return soonestExpiring(this.#byId.values(), from, until, limit);
  }

  async page(query: KeyPageQuery): Promise<KeyPage> {
    this.#sorted ??= [...this.#byId.values()].sort((a, b) => compareKeyIds(a.id, b.id));
    return pageOfSorted(this.#sorted, query);
  }
}
