// The MCP route's stages: the gateway's own, composed from the one stage list by the MCP profiles (stages.ts), handed
// to @tollgate/mcp, which runs them around its own (the JSON-RPC framing, the server's lookup, the message).
// @tollgate/mcp (and the MCP SDK under it) is an optional peer, imported only when the config has `mcpServers`.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { optionalPeerError } from '@tollgate/core/options';
import type { McpGateway, McpGatewayOptions, McpStages } from '@tollgate/mcp';
import type { GatewayGuard } from './guard-setup.js';
import type { GatewayMetering } from './metering-setup.js';
import { composeRoute, PROFILES, runsComposed, stageHandlers } from './stages.js';
import type { ComposedRoute, StageBuilders } from './stages.js';

/** What the MCP route shares with the provider routes. */
interface McpStageParts {
  guarding: GatewayGuard;
  /** Auth, as the provider routes run it. */
  auth: readonly RequestHandler[];
  /** The body reader the provider routes use (read after auth, under the guard's deadline). */
  readBody: RequestHandler;
  permissions: readonly RequestHandler[];
  attribution: readonly RequestHandler[];
  /**
   * The guard's repeat count, the tool-call limits (counted apart from the request limits) and the budget, fused once
   * with the chain's other limits (compose-chain.ts).
   */
  toolCallLimits: RequestHandler;
  /** Prices a tool call: its record goes to the meter's sinks. */
  chargeToolCall: GatewayMetering['chargeToolCall'];
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
    guardAdmit: () => guarding.beforeAuth,
    auth: () => parts.auth,
    bodyGuard: () => guarding.afterAuth(parts.readBody),
    declare: theMcpPackages,
    permissions: () => parts.permissions,
    attribution: () => parts.attribution,
    meter: theMcpPackages,
    guardAfterEstimate: () => guarding.afterEstimate,
    // No token estimate, token limit or request limit: a call's cost is its price; one store round trip.
    limitsAndBudget: () => [parts.toolCallLimits],
    call: theMcpPackages,
  };
}

/** The MCP message and tool-call profiles, cut where the MCP package runs its own steps between them. */
export function mcpStages(parts: McpStageParts): McpStages & { composed: readonly ComposedRoute[] } {
  const builders = mcpStageBuilders(parts);
  const message = composeRoute(PROFILES.mcpMessage, builders, undefined);
  const toolCall = composeRoute(PROFILES.toolCall, builders, undefined);
  return {
    admit: stageHandlers(message, ['guardAdmit', 'auth']),
    readBody: stageHandlers(message, ['bodyGuard']),
    permissions: stageHandlers(message, ['permissions', 'attribution']),
    meter: parts.chargeToolCall,
    limitAndReserve: toolCall.handlers,
    composed: [message, toolCall],
  };
}

/** The config's MCP servers, while @tollgate/mcp loads: its routes wait for it, `ready` says whether it could. */
export interface GatewayMcp {
  router: RequestHandler;
  /** Rejects with ERR_TG_PROXY_MISSING_PEER when @tollgate/mcp is not installed. */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** The MCP gateway of the config's servers (mount its router at `/mcp`). */
export function createGatewayMcp(options: Omit<McpGatewayOptions, 'stages'>, parts: McpStageParts): GatewayMcp {
  const { composed, ...stages } = mcpStages(parts);
  const loading: Promise<McpGateway> = import('@tollgate/mcp').then(
    ({ createMcpGateway }) => createMcpGateway({ ...options, stages }),
    (error: unknown) => {
      throw optionalPeerError(error, {
        name: '@tollgate/mcp',
        feature: 'mcpServers',
        dependent: '@tollgate/gateway',
        code: 'ERR_TG_PROXY_MISSING_PEER',
      });
    },
  );
  const ready = loading.then(() => undefined);
  // Reported through `ready` (the start waits for it) and to each MCP request, never as an unhandled rejection.
  ready.catch(() => undefined);
  return {
    router: runsComposed(function mcpRoutes(req: Request, res: Response, next: NextFunction) {
      loading.then((mcp) => mcp.router(req, res, next), next);
    }, composed),
    ready,
    close: async () => (await loading.catch(() => undefined))?.close(),
  };
}
