// Cached answers in this process's memory: an LRU bounded by the bytes it holds, each entry with its own lifetime.
import { LRUCache } from 'lru-cache';
import { TollgateError } from '@tollgate/core';
import type { CacheStore } from './cache-store.js';

export interface MemoryCacheStoreOptions {
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

  constructor(options: MemoryCacheStoreOptions = {}) {
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new TollgateError('ERR_TG_CACHE_INVALID_OPTION', 'MemoryCacheStore option maxBytes must be a positive integer');
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
    return this.lru.get(key)?.toString('utf8');
  }

  /** The value as stored, as bytes: the response cache sends them as they are, never decoding them. */
  getBytes(key: string): Buffer | undefined {
    return this.lru.get(key);
  }

  set(key: string, value: string, ttlMs: number): void {
    this.setMarked(key, '', value, ttlMs);
  }

  /** `set` of `mark + value`, encoded one after the other rather than joined first (the response cache's entries). */
  setMarked(key: string, mark: string, value: string, ttlMs: number): void {
    const markBytes = mark.length === 0 ? 0 : Buffer.byteLength(mark, 'utf8');
    const size = markBytes + Buffer.byteLength(value, 'utf8');
    // lru-cache refuses (and skips) an entry larger than maxSize by itself; the check is ours to make it silent.
    if (size + key.length > this.lru.maxSize) return;
    const bytes = Buffer.allocUnsafe(size);
    if (markBytes > 0) bytes.write(mark, 0, 'utf8');
    bytes.write(value, markBytes, 'utf8');
    this.lru.set(key, bytes, { ttl: ttlMs });
  }

  /** Entries held now (expired ones not yet dropped included). */
  get size(): number {
    return this.lru.size;
  }

  async close(): Promise<void> {
    this.lru.clear();
  }
}
