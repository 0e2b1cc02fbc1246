// Opens the stores the proxy shares: Redis or a Redis Cluster when given (many processes), memory otherwise (one process).
import { createMemoryStores } from '@tollgate/core';
import { withTimeout } from '@tollgate/core/store-contracts';
import type { TollgateStores } from '@tollgate/core';

/**
 * Each middleware answers a slow store by its own deadline (limits 1 s, auth and budget 2 s). The
 * Redis connection waits longer, so a command that still lands after a middleware gave up is seen
 * landing, and what it counted is given back instead of holding a limit for the rest of the window.
 */
const REDIS_TIMEOUT_MS = 5000;
/** /healthz and the start check answer within this, however slow Redis is. */
const HEALTH_TIMEOUT_MS = 1000;

interface StoreChoice {
  redisUrl?: string;
  /** Node URLs of a Redis Cluster, when there is no `redisUrl`. */
  redisCluster?: string[];
  /** Key prefix on Redis, so several deployments (or test runs) share one server. @default "tollgate:" */
  redisPrefix?: string;
  /** Directory for budget settles that cannot reach Redis before shutdown (sent first at the next start). */
  settleSpool?: string;
}

/** Opens the stores and, on Redis, checks that it answers: a proxy that cannot count must not start. */
export async function createStores(choice: StoreChoice): Promise<TollgateStores> {
  const cluster = choice.redisUrl ? undefined : choice.redisCluster;
  if (!choice.redisUrl && !cluster) return createMemoryStores();
  // Imported here, not at the top: a gateway on memory stores never loads Redis's client (docs/performance.md).
  const { createRedisStores } = await import('@tollgate/redis');
  const stores = createRedisStores({
    // On a cluster the global budget goes out in blocks (blockStores, `redis.blocks`), so the global slot's shard does not cap the cluster (bench §10).
    ...(cluster ? { cluster } : { url: choice.redisUrl }),
    ...(choice.redisPrefix ? { prefix: choice.redisPrefix } : {}),
    ...(choice.settleSpool ? { settleSpool: choice.settleSpool } : {}),
    timeoutMs: REDIS_TIMEOUT_MS,
  });
  if (!(await storesAnswer(stores))) {
    await stores.close().catch(() => undefined);
    throw new Error(
      cluster
        ? `the Redis Cluster does not answer at ${cluster.map(redactUrl).join(', ')}`
        : `Redis does not answer at ${redactUrl(choice.redisUrl!)}`,
    );
  }
  return stores;
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** True when the stores answer (Redis: PING; memory: always). */
export async function storesAnswer(stores: TollgateStores): Promise<boolean> {
  const ping = (stores as { ping?: () => Promise<boolean> }).ping;
  if (typeof ping !== 'function') return true;
  return withTimeout(ping.call(stores), HEALTH_TIMEOUT_MS, 'ping').catch(() => false);
}
