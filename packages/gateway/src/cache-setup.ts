// The response cache and Anthropic prompt caching from the gateway's options (their stages: @tollgate/cache/stages).
import type { Request } from 'express';
import { anthropicPromptCaching, createResponseCache, MemoryCacheStore, RedisCacheStore } from '@tollgate/cache';
import type { CacheStore, ResponseCacheOptions } from '@tollgate/cache';
import { cacheStages } from '@tollgate/cache/stages';
import type { CacheStages } from '@tollgate/cache/stages';
import type { TollgateStores } from '@tollgate/core';

/** The response cache and prompt caching, and the tiers that opt out or keep answers longer or shorter. */
export interface CacheSetupOptions extends Pick<ResponseCacheOptions, 'scope' | 'maxEntryBytes' | 'costFraction'> {
  /** Where answers are kept. @default "redis" on Redis stores, else "memory" */
  store?: 'memory' | 'redis' | undefined;
  /** The memory store's bound in bytes. */
  maxBytes?: number | undefined;
  /** How long an answer is served: ms or "10m". */
  ttl?: number | string | undefined;
  /** anthropicPromptCaching's breakpoints: true, or its options. */
  promptCaching?: boolean | Parameters<typeof anthropicPromptCaching>[0] | undefined;
  /** Tiers whose requests stay out of the cache. */
  tiersOff: readonly string[];
  /** Tiers whose answers are kept this long instead of `ttl`. */
  tierTtls: Readonly<Record<string, number | string>>;
}

/** The parts of the Redis stores the cache uses: the connection and the key prefix. */
interface RedisConnection {
  readonly prefix: string;
  sendCommand(args: string[]): Promise<unknown>;
}

function cacheStoreOf(options: CacheSetupOptions, stores: TollgateStores): CacheStore {
  const choice = options.store ?? (stores.kind === 'redis' ? 'redis' : 'memory');
  if (choice === 'memory') return new MemoryCacheStore(options.maxBytes ? { maxBytes: options.maxBytes } : {});
  const redis = stores as Partial<RedisConnection> & TollgateStores;
  if (stores.kind !== 'redis' || typeof redis.sendCommand !== 'function') {
    throw new Error(
      'cache.store "redis" needs Redis stores: set redisUrl (or REDIS_URL) or redis.cluster, or use "memory"',
    );
  }
  return new RedisCacheStore({ sendCommand: (args) => redis.sendCommand!(args), prefix: redis.prefix ?? 'tollgate:' });
}

/** Undefined without options (no `cache` in the config): then nothing is mounted. */
export function createGatewayCache(
  options: CacheSetupOptions | undefined,
  stores: TollgateStores,
  log: (line: string) => void,
): CacheStages | undefined {
  if (!options) return undefined;
  let lastWarnedAt = 0;
  const tiersOff = new Set(options.tiersOff);
  const tierTtls = new Map(Object.entries(options.tierTtls));
  const cache = createResponseCache({
    store: cacheStoreOf(options, stores),
    ...(tierTtls.size > 0
      ? { ttl: (req: Request) => tierTtls.get(req.tollgate.identity?.tier ?? '') ?? options.ttl }
      : options.ttl !== undefined
        ? { ttl: options.ttl }
        : {}),
    ...(options.scope !== undefined ? { scope: options.scope } : {}),
    ...(options.maxEntryBytes !== undefined ? { maxEntryBytes: options.maxEntryBytes } : {}),
    ...(options.costFraction !== undefined ? { costFraction: options.costFraction } : {}),
    ...(tiersOff.size > 0 ? { enabled: (req: Request) => !tiersOff.has(req.tollgate.identity?.tier ?? '') } : {}),
    onStoreError: (error, operation) => {
      // A store that is down fails every request: one line a minute says so.
      const now = Date.now();
      if (now - lastWarnedAt < 60_000) return;
      lastWarnedAt = now;
      log(
        `tollgate proxy: the response cache could not ${operation} (served as a miss): ${error instanceof Error ? error.message : String(error)}`,
      );
    },
  });
  const prompt = options.promptCaching;
  return cacheStages(cache, prompt ? [anthropicPromptCaching(prompt === true ? {} : prompt)] : []);
}
