// The config's `mcpServers` as @tollgate/mcp's options, and the chain's stages the MCP route runs (its profile).
import type { RequestHandler } from 'express';
import { parseDuration, usdToNano } from '@tollgate/core';
import { combineLimits } from '@tollgate/ratelimit';
import type { BudgetGuard } from '@tollgate/budget';
import { createMcpGateway } from '@tollgate/mcp';
import type { McpGateway, McpGatewayOptions, McpServerOptions, McpStages } from '@tollgate/mcp';
import type { TollgateStores } from '@tollgate/core';
import { ConfigError } from './config.js';
import type { ProxyConfig } from './config.js';
import type { ProxyGuard } from './guard-setup.js';
import { defaultTierOf, toolCallLimitMiddleware } from './limits-setup.js';
import type { StoreFailureHandlers } from './limits-setup.js';
import type { ProxyMetering } from './metering-setup.js';

/** What the MCP gateway shares with the provider routes. */
export interface McpGatewayParts {
  /** Auth, as the provider routes run it. */
  identify: RequestHandler[];
  /** The required scope and the attribution (end user, feature, tags), after auth. */
  permissions: RequestHandler[];
  guarding: ProxyGuard;
  /** The body reader the provider routes use (read after auth, under the guard's deadline). */
  readBody: RequestHandler;
  limitStores: TollgateStores;
  storeFailures: StoreFailureHandlers;
  budget: BudgetGuard;
  metering: ProxyMetering;
  env: NodeJS.ProcessEnv;
}

/** One configured server: its headers read from the environment (a missing one stops the start), its prices in nano-USD. */
function serverOptions(name: string, server: NonNullable<ProxyConfig['mcpServers']>[string], env: NodeJS.ProcessEnv) {
  const headers: Record<string, string> = {};
  for (const [header, variable] of Object.entries(server.headers ?? {})) {
    const value = env[variable];
    if (!value)
      throw new ConfigError(
        `mcpServers.${name}.headers.${header} names ${variable}, which is not set in the environment`,
      );
    headers[header] = value;
  }
  const prices = Object.entries(server.tools ?? {}).map(([tool, { usdPerCall }]) => [tool, usdToNano(usdPerCall)]);
  const options: McpServerOptions = { url: server.url, headers, nanoUsdPerCall: Object.fromEntries(prices) };
  if (server.callTimeout !== undefined) options.callTimeoutMs = parseDuration(server.callTimeout);
  if (server.sessionIdleTimeout !== undefined) options.sessionIdleTimeoutMs = parseDuration(server.sessionIdleTimeout);
  return options;
}

/** The config's servers and the `tools` its tiers and tenants list (a key's own list rides on its identity). */
export function mcpOptionsOf(config: ProxyConfig, env: NodeJS.ProcessEnv): Omit<McpGatewayOptions, 'stages'> {
  const servers = Object.entries(config.mcpServers ?? {}).map(([name, server]) => [
    name,
    serverOptions(name, server, env),
  ]);
  const tiers =
    config.tiers && Object.fromEntries(Object.entries(config.tiers).map(([name, tier]) => [name, tier.tools]));
  const tenants = Object.fromEntries(
    Object.entries(config.tenants ?? {}).map(([name, tenant]) => [name, tenant.tools]),
  );
  const defaultTier = defaultTierOf(config);
  return {
    servers: Object.fromEntries(servers),
    tools: { ...(tiers ? { tiers } : {}), tenants, ...(defaultTier ? { defaultTier } : {}) },
  };
}

/**
 * The MCP route's profile of the chain: the provider routes' guard, auth, scope and body reading; for a tools/call the
 * tool meter, then suspensions and the limits with `toolCallsPerMinute` and the budget reservation fused by
 * combineLimits (one store round trip). No token estimate, no token limit, no request limit: a call's cost is its price.
 */
export function mcpStages(config: ProxyConfig, parts: McpGatewayParts): McpStages {
  const { guarding, limitStores, storeFailures, budget, metering } = parts;
  const toolCallLimits = toolCallLimitMiddleware(config, limitStores, storeFailures, guarding.limitScale);
  return {
    admit: [...guarding.beforeAuth, ...parts.identify, ...parts.permissions],
    readBody: guarding.afterAuth(parts.readBody),
    meter: metering.chargeToolCall,
    limitAndReserve: [...guarding.afterEstimate, combineLimits(...guarding.limitChecks, ...toolCallLimits, budget)],
  };
}

/** The MCP gateway of the config's `mcpServers` (mount its router at `/mcp`). */
export function createProxyMcp(config: ProxyConfig, parts: McpGatewayParts): McpGateway {
  return createMcpGateway({ ...mcpOptionsOf(config, parts.env), stages: mcpStages(config, parts) });
}
