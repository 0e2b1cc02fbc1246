// Cached answers in this process's memory: an LRU bounded by the bytes it holds, each entry with its own lifetime.
import { LRUCache } from 'lru-cache';
import { TollgateError } from '@tollgate/core';
import type { CacheStore } from './cache-store.js';

interface MemoryCacheStoreOptions {
  /**
   * The most bytes the store holds (answers as UTF-8, and their keys); the least recently used
   * entries go first.
   * @default 64 MiB
   */
  maxBytes?: number;
}

/**
 * Answers kept in memory: fast, and each process has its own. Each is kept as a Buffer, outside
 * the JavaScript heap: tens of megabytes of strings in the heap made every garbage collection of
 * the process slower (bench/: a miss cost about twice as much CPU with strings).
 */
export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory';
  readonly answersAtOnce = true;
  private readonly lru: LRUCache<string, Buffer>;
  /** lru-cache's per-call options, one object each, reused (docs/performance.md). */
  private readonly getOptions: LRUCache.GetOptions<string, Buffer, unknown> = { status: undefined };
  private readonly setOptions: LRUCache.SetOptions<string, Buffer, unknown> = { ttl: 0, status: undefined };

  constructor(options: MemoryCacheStoreOptions = {}) {
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new TollgateError(
        'ERR_TG_CACHE_INVALID_OPTION',
        'MemoryCacheStore option maxBytes must be a positive integer',
      );
    this.lru = new LRUCache<string, Buffer>({
      maxSize: maxBytes,
      sizeCalculation: (value, key) => value.length + key.length,
      // Past its lifetime an entry is never served; it is dropped when it is next read or pushed out.
      ttlAutopurge: false,
      // Read the clock on each lookup: the default (1 ms) caches it behind a timer armed per lookup.
      ttlResolution: 0,
    });
  }

  get(key: string): string | undefined {
    return this.getBytes(key)?.toString('utf8');
  }

  /** The value as stored, as bytes: the response cache sends them as they are, never decoding them. */
  getBytes(key: string): Buffer | undefined {
    // lru-cache writes the status it made (with a diagnostics subscriber) into the options: each call starts without one.
    this.getOptions.status = undefined;
    return this.lru.get(key, this.getOptions);
  }

  set(key: string, value: string, ttlMs: number): void {
    this.setBytes(key, Buffer.from(value, 'utf8'), ttlMs);
  }

  /** `set` of a value already encoded (the response cache's entries): kept as it is, not copied. */
  setBytes(key: string, value: Buffer, ttlMs: number): void {
    // lru-cache refuses (and skips) an entry larger than maxSize by itself; the check is ours to make it silent.
    if (value.length + key.length > this.lru.maxSize) return;
    this.setOptions.ttl = ttlMs;
    this.setOptions.status = undefined;
    this.lru.set(key, value, this.setOptions);
  }

  /** Entries held now (expired ones not yet dropped included). */
  get size(): number {
    return this.lru.size;
  }

  async close(): Promise<void> {
    this.lru.clear();
  }
}
