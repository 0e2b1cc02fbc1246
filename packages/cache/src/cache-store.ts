// Where cached answers live: an interface with a memory (lru-cache) and a Redis implementation.

/**
 * A store of cached answers, each a string under a key, with a lifetime. `get` may answer at once
 * (memory) or later (Redis); a store that fails rejects, and the cache treats that as a miss.
 */
export interface CacheStore {
  /** 'memory' or 'redis', for logs. */
  readonly kind: string;
  /**
   * `get` always answers at once, never with a promise (memory): the cache may then look a
   * request up before the meter's estimate, so a hit is never estimated. @default false
   */
  readonly answersAtOnce?: boolean;
  get(key: string): string | undefined | Promise<string | undefined>;
  /** Keeps `value` under `key` for `ttlMs`; an entry larger than the store takes is dropped, never an error. */
  set(key: string, value: string, ttlMs: number): void | Promise<void>;
  /** Releases what the store holds (timers, memory); never a connection it was given. */
  close?(): Promise<void>;
}
