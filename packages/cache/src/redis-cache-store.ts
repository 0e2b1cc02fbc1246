// Cached answers in Redis, shared by every process: one string key per answer under the stores' prefix, with a TTL.
import { TollgateError } from '@tollgate/core';
import type { CacheStore } from './cache-store.js';

interface RedisCacheStoreOptions {
  /**
   * Sends one command and resolves with its reply: `createRedisStores().sendCommand`, so the cache
   * shares the stores' connection and deadline instead of opening a client of its own.
   */
  sendCommand: (args: string[]) => Promise<unknown>;
  /** Put in front of every key: the stores' `prefix`. @default 'tollgate:' */
  prefix?: string;
}

/** Answers kept in Redis: every process reads what any of them stored. */
export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis';
  private readonly sendCommand: (args: string[]) => Promise<unknown>;
  private readonly prefix: string;

  constructor(options: RedisCacheStoreOptions) {
    if (typeof options?.sendCommand !== 'function') {
      throw new TollgateError(
        'ERR_TG_CACHE_INVALID_OPTION',
        "RedisCacheStore needs sendCommand: the stores' own (createRedisStores().sendCommand)",
      );
    }
    this.sendCommand = options.sendCommand;
    // Each entry is its own key, so the answers spread over a cluster's shards.
    this.prefix = `${options.prefix ?? 'tollgate:'}cache:`;
  }

  async get(key: string): Promise<string | undefined> {
    const reply = await this.sendCommand(['GET', this.prefix + key]);
    return typeof reply === 'string' ? reply : undefined;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.sendCommand(['SET', this.prefix + key, value, 'PX', String(Math.max(1, Math.round(ttlMs)))]);
  }
}
