// The MCP route's stages: the chain's, composed from the one stage list by the MCP profiles (stages.ts), handed to
// @tollgate/mcp, which runs them around its own (the JSON-RPC framing, the server's lookup, the message).
// @tollgate/mcp (and the MCP SDK under it) is an optional peer, imported only when the config has `mcpServers`.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { StageContribution } from '@tollgate/core/stages';
import { optionalPeerError } from '@tollgate/core/options';
import type { McpGateway, McpGatewayOptions, McpStages } from '@tollgate/mcp';
import type { GatewayMetering } from './metering-setup.js';
import { composeRoute, runsComposed, stageHandlers } from './stages.js';
import type { ComposedRoute, GatewayRoute, GatewayStages } from './stages.js';

/**
 * The MCP package's own steps, where the list has `route` (the JSON-RPC framing), `declare` (the server the path
 * names), `meter` (the tool's price, through the meter's hook) and `call` (the message): nothing composed there.
 */
const theMcpPackages = () => [];
const MCP_OWN_STAGES: StageContribution<RequestHandler, GatewayRoute> = {
  route: theMcpPackages,
  declare: theMcpPackages,
  meter: theMcpPackages,
  call: theMcpPackages,
};

/**
 * The MCP message and tool-call profiles of the chain's stages, cut where the MCP package runs its own steps between
 * them. A tool call's `limitsAndBudget`: the guard's repeat count, the tool-call limits and the budget, fused.
 */
export function mcpStages(
  chainStages: GatewayStages,
  chargeToolCall: GatewayMetering['chargeToolCall'],
): McpStages & { composed: readonly ComposedRoute[] } {
  const stages = [...chainStages, MCP_OWN_STAGES];
  const message = composeRoute(stages, { kind: 'mcpMessage', body: 'json' });
  const toolCall = composeRoute(stages, { kind: 'toolCall' });
  return {
    admit: stageHandlers(message, ['guardAdmit', 'auth']),
    readBody: stageHandlers(message, ['bodyGuard']),
    permissions: stageHandlers(message, ['permissions', 'attribution']),
    meter: chargeToolCall,
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
export function createGatewayMcp(
  options: Omit<McpGatewayOptions, 'stages'>,
  chainStages: GatewayStages,
  chargeToolCall: GatewayMetering['chargeToolCall'],
): GatewayMcp {
  const { composed, ...stages } = mcpStages(chainStages, chargeToolCall);
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
