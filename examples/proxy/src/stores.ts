// Opens the stores the proxy shares: Redis when a URL is given (many processes), memory otherwise (one process).
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';

export interface StoreChoice {
  redisUrl?: string;
  /** Key prefix on Redis, so several deployments (or test runs) share one server. @default "tollgate:" */
  redisPrefix?: string;
}

/** Opens the stores and, on Redis, checks that it answers: a proxy that cannot count must not start. */
export async function createStores(choice: StoreChoice): Promise<TollgateStores> {
  if (!choice.redisUrl) return createMemoryStores();
  const stores = createRedisStores({ url: choice.redisUrl, ...(choice.redisPrefix ? { prefix: choice.redisPrefix } : {}), timeoutMs: 1000 });
  if (!(await stores.ping())) {
    await stores.close().catch(() => undefined);
    throw new Error(`Redis does not answer at ${redactUrl(choice.redisUrl)}`);
  }
  return stores;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
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
  return typeof ping === 'function' ? ping.call(stores) : true;
}
