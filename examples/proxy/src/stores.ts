// Opens the stores the proxy shares: Redis when a URL is given (many processes), memory otherwise (one process).
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';

export interface StoreChoice {
  redisUrl?: string;
  /** Key prefix on Redis, so several deployments (or test runs) share one server. @default "tollgate:" */
  redisPrefix?: string;
}

export async function createStores(choice: StoreChoice): Promise<TollgateStores> {
  if (choice.redisUrl) throw new Error('Redis stores are not wired yet');
  return createMemoryStores();
}
