// The config's `mcpServers`, and the tools its tiers and tenants list, as @tollgate/mcp's options.
import { parseDuration, usdToNano } from '@tollgate/core';
import type { McpGatewayOptions, McpServerOptions } from '@tollgate/mcp';
import { defaultTierOf } from './auth-options.js';
import { ConfigError } from './error.js';
import type { GatewayConfig } from './schema.js';

/** One configured server: its headers read from the environment (a missing one stops the start), its prices in nano-USD. */
function serverOptions(name: string, server: NonNullable<GatewayConfig['mcpServers']>[string], env: NodeJS.ProcessEnv) {
  const headers: Record<string, string> = {};
  const unset: string[] = [];
  for (const [header, variable] of Object.entries(server.headers ?? {})) {
    const value = env[variable];
    if (value) headers[header] = value;
    else unset.push(`mcpServers.${name}.headers.${header} names ${variable}, which is not set in the environment`);
  }
  if (unset.length > 0) throw new ConfigError(unset);
  const prices = Object.entries(server.tools ?? {}).map(([tool, { usdPerCall }]) => [tool, usdToNano(usdPerCall)]);
  const options: McpServerOptions = { url: server.url, headers, nanoUsdPerCall: Object.fromEntries(prices) };
  if (server.callTimeout !== undefined) options.callTimeoutMs = parseDuration(server.callTimeout);
  if (server.sessionIdleTimeout !== undefined) options.sessionIdleTimeoutMs = parseDuration(server.sessionIdleTimeout);
  return options;
}

/** The config's servers and the `tools` its tiers and tenants list (a key's own list rides on its identity). */
export function mcpOptions(
  config: GatewayConfig,
  env: NodeJS.ProcessEnv,
): Omit<McpGatewayOptions, 'stages'> | undefined {
  if (!config.mcpServers) return undefined;
  // Every server's unset variables at once, in one error.
  const unset: string[] = [];
  const servers = Object.entries(config.mcpServers).flatMap(([name, server]) => {
    try {
      return [[name, serverOptions(name, server, env)] as const];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      unset.push(...error.issues);
      return [];
    }
  });
  if (unset.length > 0) throw new ConfigError(unset);
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
