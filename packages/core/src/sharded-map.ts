// A map of many string keys that never grows by rehashing all of them at once.

/** Maps a ShardedMap is split over (a power of two). */
const SHARDS = 64;

/**
 * A Map from strings, split over 64 Maps by a hash of the whole key. A Map grows by rehashing everything it holds in
 * one step: about 12 ms at 65,536 entries and 60 ms at 262,144 on Node 24 here, a stall of the event loop that no
 * slicing of the work around it can split (a budget rebuild of 100,000 scopes, a ledger of that many). A sixty-fourth
 * of the keys grows in a sixty-fourth of that. Iteration goes map by map, not in the order keys were set.
 */
export class ShardedMap<V> {
  readonly #maps: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map<string, V>());

  /** FNV-1a of the key's UTF-16 code units, its high bits folded in: keys that differ anywhere spread. */
  #mapOf(key: string): Map<string, V> {
    let hash = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
    return this.#maps[(hash ^ (hash >>> 16)) & (SHARDS - 1)]!;
  }

  get size(): number {
    let size = 0;
    for (const map of this.#maps) size += map.size;
    return size;
  }

  /** How many keys each of its maps holds (how evenly the hash spreads them). */
  shardSizes(): number[] {
    return this.#maps.map((map) => map.size);
  }

  get(key: string): V | undefined {
    return this.#mapOf(key).get(key);
  }

  has(key: string): boolean {
    return this.#mapOf(key).has(key);
  }

  set(key: string, value: V): this {
    this.#mapOf(key).set(key, value);
    return this;
  }

  delete(key: string): boolean {
    return this.#mapOf(key).delete(key);
  }

  clear(): void {
    for (const map of this.#maps) map.clear();
  }

  /** Keys map by map; one deleted meanwhile is not visited, as with a Map. */
  *keys(): IterableIterator<string> {
    for (const map of this.#maps) yield* map.keys();
  }

  *values(): IterableIterator<V> {
    for (const map of this.#maps) yield* map.values();
  }

  *entries(): IterableIterator<[string, V]> {
    for (const map of this.#maps) yield* map.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }
}
