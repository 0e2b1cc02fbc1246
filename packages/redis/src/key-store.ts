// API key store on Redis: lookups served from memory while pub/sub reports every change, so a revocation acts everywhere within the pub/sub delivery time.
import { deepFreeze, keyPageStart, soonestExpiring } from '@tollgate/core/store-contracts';
import type {
  ApiKeyRecord,
  KeyChange,
  KeyChangeOutcome,
  KeyPage,
  KeyPageQuery,
  KeyStore,
} from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import type { KeyCache } from './key-cache.js';
import type { LuaScript } from './lua.js';
import * as scripts from './scripts.js';

/** The channel key changes are published on (under the prefix, so deployments sharing a Redis stay apart). */
export function keyChangesChannel(prefix: string): string {
  return `${prefix}{keys}:changes`;
}

/** Reads of a key that another writer changed before `change` could write, before it gives up. */
const MAX_CHANGE_ATTEMPTS = 20;

/** Ids a step of building the id indexes reads (buildKeyIndexes): a short script each, however many keys there are. */
const INDEX_BUILD_STEP = 1000;

/**
 * Keys share the `{keys}` hash tag: a lookup by hash reads the index and the record in one script on Cluster.
 * With a `cache`, `findByHash` answers from memory for keys that exist; every write publishes the
 * change in its own script, and each process's cache drops the record when the message arrives.
 */
export class RedisKeyStore implements KeyStore {
  readonly #base: string;
  readonly #index: string;
  readonly #ids: string;
  /** The ids of keys whose record carries a budget, and the mark that it was gathered from every key once. */
  readonly #budgeted: string;
  readonly #budgetedMark: string;
  /**
   * The indexes that pages and the keys expiring soon read (sorted sets: every id, tenant-and-id, ids by expiry), and
   * the state of their building.
   */
  readonly #byId: string;
  readonly #byTenant: string;
  readonly #byExpiry: string;
  readonly #indexState: string;
  readonly #channel: string;
  readonly #cache: KeyCache | undefined;

  constructor(
    private readonly connection: Connection,
    prefix: string,
    cache?: KeyCache,
  ) {
    this.#base = `${prefix}{keys}:key:`;
    this.#index = `${prefix}{keys}:by-hash`;
    this.#ids = `${prefix}{keys}:ids`;
    this.#budgeted = `${prefix}{keys}:budgeted`;
    this.#budgetedMark = `${prefix}{keys}:budgeted:gathered`;
    this.#byId = `${prefix}{keys}:by-id`;
    this.#byTenant = `${prefix}{keys}:by-tenant`;
    this.#byExpiry = `${prefix}{keys}:by-expiry`;
    // Named anew with the index by expiry: a store indexed by an earlier version is indexed again, once.
    this.#indexState = `${prefix}{keys}:indexes:state`;
    this.#channel = keyChangesChannel(prefix);
    this.#cache = cache;
  }

  #send = (args: string[]) => this.connection.send(args, 'keys');

  #run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.connection.run(script, keys, args, 'keys');
  }

  /** Names this process's cache in its own change messages, so it can skip their echo. */
  get #origin(): string {
    return this.#cache?.origin ?? '';
  }

  /** The in-process cache, when there is one (for health checks and tests). */
  get cache(): KeyCache | undefined {
    return this.#cache;
  }

  /**
   * The record from this process's cache, when it holds the key now (see KeyCache); undefined
   * otherwise. Records found by hash are frozen, as the memory store's: handed out as they are.
   */
  findCachedByHash(hash: string): ApiKeyRecord | undefined {
    // Hex is case-insensitive: the index and the cache hold lowercase, whatever case was put.
    return this.#cache?.get(hash.toLowerCase());
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const cached = this.findCachedByHash(hash);
    if (cached) return cached;
    const sha256 = hash.toLowerCase();
    const token = this.#cache?.begin();
    const reply = (await this.#run(scripts.findKeyByHash, [this.#index], [sha256, this.#base])) as unknown[] | null;
    // Frozen, and so never copied: the record a request gets is the one the cache keeps.
    const record = reply ? deepFreeze(sharingLists(toRecord(reply[0], reply[1]))) : undefined;
    // Unknown hashes are not cached: forged keys must not take memory or push real keys out. Kept under the record's
    // own hash string, not a second copy of it (10,000 keys: 0.8 MB).
    if (record && token !== undefined)
      this.#cache!.store(record.sha256 === sha256 ? record.sha256 : sha256, record, token);
    return record;
  }

  async findById(id: string): Promise<ApiKeyRecord | undefined> {
    const reply = (await this.#send(['HMGET', this.#base + id, 'record', 'disabled'])) as unknown[];
    return reply[0] == null ? undefined : toRecord(reply[0], reply[1]);
  }

  // Writes drop this process's entries before and after, without waiting for their own message.
  async put(record: ApiKeyRecord): Promise<void> {
    const flag = record.disabled === true ? '1' : '0';
    const sha256 = record.sha256.toLowerCase();
    this.#cache?.invalidate(record.id, sha256);
    try {
      await this.#run(
        scripts.putKey,
        [this.#base + record.id, this.#index, this.#ids, this.#budgeted, this.#byId, this.#byTenant, this.#byExpiry],
        [record.id, sha256, JSON.stringify(record), flag, this.#channel, this.#origin],
      );
    } finally {
      this.#cache?.invalidate(record.id, sha256);
    }
  }

  async disable(id: string): Promise<boolean> {
    this.#cache?.invalidate(id, undefined);
    try {
      return (await this.#run(scripts.disableKey, [this.#base + id], [id, this.#channel, this.#origin])) === 1;
    } finally {
      this.#cache?.invalidate(id, undefined);
    }
  }

  /**
   * Read, decide, then one script that writes only while the key is as read (a compare-and-set): a write between
   * (a revoke, another change) makes `decide` run again on what it wrote. The script never clears a revoke.
   */
  async change(id: string, decide: (record: ApiKeyRecord) => KeyChange | undefined): Promise<KeyChangeOutcome> {
    for (let attempt = 0; attempt < MAX_CHANGE_ATTEMPTS; attempt++) {
      const [json, flag] = (await this.#send(['HMGET', this.#base + id, 'record', 'disabled'])) as unknown[];
      if (json == null) return 'missing';
      const change = decide(toRecord(json, flag));
      if (!change) return 'declined';
      const { record, add } = change;
      if (record.id !== id) throw new TypeError(`KeyStore.change: the record of "${id}" cannot change its id`);
      const addArgs = add
        ? [add.id, add.sha256.toLowerCase(), JSON.stringify({ ...add, disabled: undefined })]
        : ['', '', ''];
      this.#cache?.invalidate(id, undefined);
      if (add) this.#cache?.invalidate(add.id, add.sha256.toLowerCase());
      let outcome: unknown;
      try {
        outcome = await this.#run(
          scripts.changeKey,
          [
            ...[this.#base + id, this.#index, this.#ids, this.#base + (add?.id ?? id), this.#budgeted],
            ...[this.#byId, this.#byTenant, this.#byExpiry],
          ],
          [
            ...[id, String(json), flag == null ? '0' : String(flag)],
            ...[JSON.stringify(record), record.disabled === true ? '1' : '0', this.#channel, this.#origin],
            ...addArgs,
          ],
        );
      } finally {
        this.#cache?.invalidate(id, undefined);
      }
      if (outcome !== 'changed') return outcome as KeyChangeOutcome;
    }
    throw new Error(`the key "${id}" kept changing while it was being changed (${MAX_CHANGE_ATTEMPTS} attempts)`);
  }

  async delete(id: string): Promise<boolean> {
    this.#cache?.invalidate(id, undefined);
    try {
      return (
        (await this.#run(
          scripts.deleteKey,
          [this.#base + id, this.#index, this.#ids, this.#budgeted, this.#byId, this.#byTenant, this.#byExpiry],
          [id, this.#channel, this.#origin],
        )) === 1
      );
    } finally {
      this.#cache?.invalidate(id, undefined);
    }
  }

  async list(): Promise<ApiKeyRecord[]> {
    const reply = (await this.#run(scripts.listKeys, [this.#ids], [this.#base])) as unknown[];
    const records: ApiKeyRecord[] = [];
    for (let i = 0; i < reply.length; i += 2) records.push(toRecord(reply[i], reply[i + 1]));
    return records.sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * One page in id order from the id indexes, reading that page's records only. A store written before the indexes
   * existed (or by an earlier version since) has them built first, in short steps (buildKeyIndexes).
   */
  async page(query: KeyPageQuery): Promise<KeyPage> {
    const start = keyPageStart(query);
    if (!start) return { keys: [] };
    const tenant = query.tenantId;
    const args = [
      ...[this.#base, start.from, start.exclusive ? '(' : '[', query.prefix ?? '', query.limit],
      ...[tenant ?? '', tenant === undefined ? '0' : '1'],
    ];
    const keys = [tenant === undefined ? this.#byId : this.#byTenant, this.#ids, this.#byId, this.#indexState];
    const reply = await this.#readIndexed(scripts.pageKeys, keys, args);
    const records: ApiKeyRecord[] = [];
    for (let i = 2; i < reply.length; i += 3) {
      const record = toRecord(reply[i + 1], reply[i + 2]);
      // An earlier version's put may have moved a key to another tenant without telling the index.
      if (tenant === undefined || record.tenantId === tenant) records.push(record);
    }
    return reply[0] === '1' ? { keys: records, next: String(reply[1]) } : { keys: records };
  }

  /** A script that reads the indexes: run once they are built (it answers null before), building them at most twice. */
  async #readIndexed(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const reply = (await this.#run(script, keys, args)) as unknown[] | null;
      if (reply !== null) return reply;
      await this.buildIndexes();
    }
    throw new Error("the key store's indexes kept changing while they were built (writers of an earlier version?)");
  }

  /**
   * The keys whose `expiresAt` lies in [`from`, `until`) (epoch ms), soonest first, at most `limit`: from the index by
   * expiry, reading those records only (built first where it is missing, as `page` does).
   */
  async expiring(from: number, until: number, limit: number): Promise<ApiKeyRecord[]> {
    const keys = [this.#byExpiry, this.#ids, this.#byId, this.#indexState];
    const args = [this.#base, Math.floor(from), Math.ceil(until), limit];
    const reply = await this.#readIndexed(scripts.expiringKeys, keys, args);
    const records: ApiKeyRecord[] = [];
    for (let i = 0; i < reply.length; i += 3) records.push(toRecord(reply[i + 1], reply[i + 2]));
    // Judged again here: an expiry the index could not read is listed whatever it is.
    return soonestExpiring(records, from, until, limit);
  }

  /**
   * Builds the id indexes where they are missing or their count drifted (idempotent: built, it is one short script).
   * `again`: from the start whatever their count (after writers of an earlier version, whose add and delete between
   * two pages leave the count as it was).
   */
  async buildIndexes(options: { again?: boolean } = {}): Promise<void> {
    if (options.again === true) await this.#send(['DEL', this.#indexState]);
    const keys = [this.#ids, this.#byId, this.#byTenant, this.#indexState, this.#byExpiry];
    let built = false;
    while (!built) built = (await this.#run(scripts.buildKeyIndexes, keys, [this.#base, INDEX_BUILD_STEP])) === 1;
  }

  /**
   * The keys whose record carries a budget, from a set the writes keep (gathered from every key at its first use, for
   * keys written before it existed): one script reads a few records, not 100,000.
   */
  async listBudgeted(): Promise<ApiKeyRecord[]> {
    const reply = (await this.#run(
      scripts.listBudgetedKeys,
      [this.#budgeted, this.#budgetedMark, this.#ids],
      [this.#base],
    )) as unknown[];
    const records: ApiKeyRecord[] = [];
    for (let i = 0; i < reply.length; i += 2) {
      const record = toRecord(reply[i], reply[i + 1]);
      // A writer of an earlier version may have taken the budget away without telling the set.
      if (record.budget !== undefined) records.push(record);
    }
    return records.sort((a, b) => a.id.localeCompare(b.id));
  }
}

/** Most distinct lists kept for sharing; past it the table starts again (a record keeps the list it was given). */
const MOST_SHARED_LISTS = 1_000;
const sharedLists = new Map<string, readonly string[]>();

/**
 * The record's scopes, tags, models and tools, each the one frozen copy of that list: keys are made from a few scope sets,
 * and 10,000 cached records each held their own array of the same scopes (0.7 MB; bench/scale.ts).
 */
function sharingLists(record: ApiKeyRecord): ApiKeyRecord {
  for (const field of ['scopes', 'tags', 'models', 'tools'] as const) {
    const list = record[field];
    if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) continue;
    // JSON names a list unambiguously (a joined text would take ["a,b"] for ["a", "b"]).
    const text = JSON.stringify(list);
    let shared = sharedLists.get(text);
    if (shared === undefined) {
      if (sharedLists.size >= MOST_SHARED_LISTS) sharedLists.clear();
      sharedLists.set(text, (shared = Object.freeze(list)));
    }
    record[field] = shared as string[];
  }
  return record;
}

/** The `disabled` flag outside the JSON wins: disable() sets it without rewriting the record. */
function toRecord(json: unknown, disabled: unknown): ApiKeyRecord {
  const record = JSON.parse(String(json)) as ApiKeyRecord;
  if (disabled === '1') record.disabled = true;
  return record;
}
