// The config's `cache` section, with each tier's `cache`, as the gateway's response cache takes it.
import type { CacheSetupOptions } from '../cache-setup.js';
import type { GatewayConfig } from './schema.js';

/** The response cache the config asks for; undefined without `cache` (nothing is mounted). */
export function cacheOptions(config: GatewayConfig): CacheSetupOptions | undefined {
  const cache = config.cache;
  if (!cache) return undefined;
  const tiers = Object.entries(config.tiers ?? {});
  return {
    ...cache,
    tiersOff: tiers.filter(([, tier]) => tier.cache === false).map(([name]) => name),
    tierTtls: Object.fromEntries(
      tiers.flatMap(([name, tier]) =>
        typeof tier.cache === 'object' && tier.cache.ttl !== undefined ? [[name, tier.cache.ttl] as const] : [],
      ),
    ),
  };
}
