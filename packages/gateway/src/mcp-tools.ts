// Which MCP tools a caller may call (the `tools` its tier, tenant or key lists) and what one call costs (`usdPerCall`).
import { usdToNano } from '@tollgate/core';
import { isNameAllowed, resolveTierModels } from '@tollgate/core/kit';
import type { Identity } from '@tollgate/core';
import type { ProxyConfig } from './config/index.js';
import { defaultTierOf } from './config/index.js';

export interface ToolPolicy {
  /**
   * True when the caller's tier, its tenant or its key lists the tool (`server/tool`) in `tools`: any of them
   * grants it. A tier the config does not know gets the default tier's list, as for models; nothing lists a tool
   * by default.
   */
  allows(identity: Identity, tool: string): boolean;
  /** What one call of `server`'s `name` costs in nano-USD: its `usdPerCall`, 0 for a tool without a price. */
  priceOf(server: string, name: string): number;
}

export function toolPolicy(config: ProxyConfig): ToolPolicy {
  const tiers =
    config.tiers && Object.fromEntries(Object.entries(config.tiers).map(([name, tier]) => [name, tier.tools]));
  const defaultTier = defaultTierOf(config);
  // The tier lists' rule is the model allowlists' (core resolveTierModels), where no list means none here.
  const toolsOfTier = resolveTierModels(tiers, defaultTier ? { defaultTier } : {});
  const tenants = config.tenants ?? {};
  const prices = new Map<string, number>();
  for (const [server, entry] of Object.entries(config.mcpServers ?? {}))
    for (const [name, tool] of Object.entries(entry.tools ?? {}))
      prices.set(`${server}/${name}`, usdToNano(tool.usdPerCall));
  return {
    allows(identity, tool) {
      const tenant =
        identity.tenantId !== undefined && Object.hasOwn(tenants, identity.tenantId)
          ? tenants[identity.tenantId]
          : undefined;
      return [toolsOfTier(identity.tier), tenant?.tools, identity.tools].some(
        (patterns) => patterns !== undefined && isNameAllowed(tool, patterns),
      );
    },
    priceOf(server, name) {
      return prices.get(`${server}/${name}`) ?? 0;
    },
  };
}
