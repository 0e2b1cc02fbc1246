// The MCP route's stages: the gateway's own, composed from the one stage list by the MCP profiles (stages.ts), handed
// to @tollgate/mcp, which runs them around its own (the JSON-RPC framing, the server's lookup, the message).
import type { RequestHandler } from 'express';
import type { BudgetGuard } from '@tollgate/budget';
import { createMcpGateway } from '@tollgate/mcp';
import type { McpGateway, McpGatewayOptions, McpStages } from '@tollgate/mcp';
import { combineLimits } from '@tollgate/ratelimit';
import type { ProxyGuard } from './guard-setup.js';
import type { ProxyMetering } from './metering-setup.js';
import { composeRoute, PROFILES, stageHandlers } from './stages.js';
import type { StageBuilders } from './stages.js';

/** What the MCP route shares with the provider routes. */
export interface McpStageParts {
  guarding: ProxyGuard;
  /** Auth, as the provider routes run it. */
  identify: readonly RequestHandler[];
  /** The body reader the provider routes use (read after auth, under the guard's deadline). */
  readBody: RequestHandler;
  permissions: readonly RequestHandler[];
  attribution: readonly RequestHandler[];
  /** `toolCallsPerMinute` of the tiers (counted apart from the request limits). */
  toolCallLimits: readonly RequestHandler[];
  budget: BudgetGuard;
  metering: ProxyMetering;
}

/**
 * The stages, built once. The MCP package places its own where the list has `route` (the JSON-RPC framing), `declare`
 * (the server the path names), `meter` (the tool's price, through the meter's hook) and `call` (the message).
 */
function mcpStageBuilders(parts: McpStageParts): StageBuilders<undefined> {
  const { guarding } = parts;
  const theMcpPackages = () => [];
  return {
    route: theMcpPackages,
    'guard admit': () => guarding.beforeAuth,
    auth: () => parts.identify,
    'body guard': () => guarding.afterAuth(parts.readBody),
    declare: theMcpPackages,
    permissions: () => parts.permissions,
    attribution: () => parts.attribution,
    meter: theMcpPackages,
    'guard after estimate': () => guarding.afterEstimate,
    // No token estimate, token limit or request limit: a call's cost is its price; one store round trip.
    'limits and budget': () => [combineLimits(...guarding.limitChecks, ...parts.toolCallLimits, parts.budget)],
    call: theMcpPackages,
  };
}

/** The MCP message and tool-call profiles, cut where the MCP package runs its own steps between them. */
export function mcpStages(parts: McpStageParts): McpStages {
  const builders = mcpStageBuilders(parts);
  const message = composeRoute(PROFILES.mcpMessage, builders, undefined);
  return {
    admit: stageHandlers(message, ['guard admit', 'auth']),
    readBody: stageHandlers(message, ['body guard']),
    permissions: stageHandlers(message, ['permissions', 'attribution']),
    meter: parts.metering.chargeToolCall,
    limitAndReserve: composeRoute(PROFILES.toolCall, builders, undefined).handlers,
  };
}

/** The MCP gateway of the config's servers (mount its router at `/mcp`). */
export function createProxyMcp(options: Omit<McpGatewayOptions, 'stages'>, parts: McpStageParts): McpGateway {
  return createMcpGateway({ ...options, stages: mcpStages(parts) });
}
