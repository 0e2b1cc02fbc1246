// Which MCP tools a caller may call (the `tools` its tier, tenant or key lists) and what one call costs.
import { isNameAllowed, resolveTierModels } from '@tollgate/core/checks';
import type { Identity } from '@tollgate/core';
import type { McpServerOptions, McpToolGrants } from './options.js';

export interface ToolPolicy {
  /**
   * True when the caller's tier, its tenant or its key lists the tool (`server/tool`) in `tools`: any of them
   * grants it. A tier the grants do not know gets the default tier's list, as for models; nothing lists a tool
   * by default.
   */
  allows(identity: Identity, tool: string): boolean;
  /** What one call of `server`'s `name` costs in nano-USD: its price, 0 for a tool without one. */
  priceOf(server: string, name: string): number;
}

export function toolPolicy(grants: McpToolGrants, servers: Record<string, McpServerOptions>): ToolPolicy {
  const { defaultTier } = grants;
  // The tier lists' rule is the model allowlists' (core resolveTierModels), where no list means none here.
  const toolsOfTier = resolveTierModels(grants.tiers, defaultTier ? { defaultTier } : {});
  const tenants = grants.tenants ?? {};
  const prices = new Map<string, number>();
  for (const [server, entry] of Object.entries(servers))
    for (const [name, price] of Object.entries(entry.nanoUsdPerCall ?? {})) prices.set(`${server}/${name}`, price);
  return {
    allows(identity, tool) {
      const tenant =
        identity.tenantId !== undefined && Object.hasOwn(tenants, identity.tenantId)
          ? tenants[identity.tenantId]
          : undefined;
      return [toolsOfTier(identity.tier), tenant, identity.tools].some(
        (patterns) => patterns !== undefined && isNameAllowed(tool, patterns),
      );
    },
    priceOf(server, name) {
      return prices.get(`${server}/${name}`) ?? 0;
    },
  };
}
