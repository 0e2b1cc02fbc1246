// Every route of the chain on a router, from its parts (compose-chain.ts): the provider routes and token counts, the
// Batch API, the WebSocket modes and MCP, each a profile of the one stage list; and the close of what they run.
import type { Router } from 'express';
import type { UsageRecord } from '@tollgate/core';
import { budgetGuard } from '@tollgate/budget';
import type { Chain } from './compose-chain.js';
import { tierModelAllowlist } from './count-tokens-route.js';
import { createGatewayMcp } from './mcp-setup.js';
import type { GatewayMcp } from './mcp-setup.js';
import { CLIENT_SECRET_PATHS } from './realtime-secrets.js';
import { realtimeSocketServer } from './realtime-socket.js';
import { responsesSocketServer } from './responses-socket.js';
import { batchRoutes, gatewayRoutes, realtimeResponseRoute, socketHandshakeRoute } from './routes.js';
import { BATCH_SWEEP_MS, batchRouteSpecs, batchUpstream, sweepBatches } from './batch/batch-mount.js';
import { batchBookFor } from './batch/batch-book.js';
import { batchHandlers } from './batch/batch-routes.js';
import { socketUpgrades } from './socket-upgrade.js';
import type { SocketUpgrades } from './socket-upgrade.js';

/** What the mounted routes run beside the requests, and the close of all the chain made. */
export interface MountedChain {
  /** The WebSocket modes, with `sockets`. */
  sockets: SocketUpgrades | undefined;
  /** The MCP servers, with `mcp`. */
  mcp: GatewayMcp | undefined;
  /** Ends the sockets, the Batch sweep and the MCP sessions, then closes the parts (their work settled first). */
  close(): Promise<void>;
}

type Closer = () => Promise<void> | void;

const operatorLog = (line: string) => console.error(line);

/**
 * The provider routes first: they carry nearly all the traffic, and every route before them is a path match per
 * request. Then the token counts (free: no token limit, budget or record). One route per path, so the metrics' route
 * label (`req.route.path`) names the path a request came by.
 */
function mountProviderRoutes(router: Router, chain: Chain): void {
  for (const { paths, handlers } of gatewayRoutes(chain.stages, chain.made))
    for (const path of paths) router.post(path, ...handlers);
}

/** The Batch API, where an OpenAI upstream serves it: its jobs charged whole and settled from their output. */
function mountBatchRoutes(router: Router, chain: Chain): Closer | undefined {
  const { parts, made } = chain;
  const upstream = parts.batch && batchUpstream(parts.providers?.upstreams, parts.providers?.env);
  if (!parts.batch || !upstream) return undefined;
  const batch = batchHandlers({
    ...{ upstream, book: parts.batch.book ?? batchBookFor(chain.stores), pricing: made.pricing },
    // Without a budget, a job is charged to none (its records are still written).
    budget: made.budget ?? budgetGuard({ ledger: chain.stores.ledger, pricing: made.pricing }),
    modelAllowed: tierModelAllowlist(parts.policy ?? {}, (req) => req.tollgate.get('gateway.batchModel')),
    deliver: (record: UsageRecord) => made.metering.deliverRecord(record),
  });
  for (const { method, path, handlers } of batchRoutes(chain.stages, batchRouteSpecs(batch)))
    router[method](path, ...handlers);
  // The jobs nobody polls, settled in the background.
  return sweepBatches(batch, parts.batch.sweepMs ?? BATCH_SWEEP_MS, parts.log ?? operatorLog);
}

/**
 * The WebSocket modes, one upgrade dispatcher by path. The Responses API's: its upgrade passes the handshake profile,
 * each message the provider route above. Realtime's (docs/realtime.md): the same handshake and the tier's models,
 * then each response its own route, held and billed through the meter's Realtime charge.
 */
function mountSocketRoutes(router: Router, chain: Chain): SocketUpgrades {
  const { parts, made, stages } = chain;
  const log = parts.log ?? operatorLog;
  const responsesSocket = responsesSocketServer({ bodyLimit: parts.bodyLimit ?? '1mb', log });
  const realtime = realtimeSocketServer({
    ...{ providers: made.providers, pricing: made.pricing, log },
    charge: made.metering.chargeRealtimeResponse,
  });
  const sockets = socketUpgrades([responsesSocket, realtime]);
  const handshake = socketHandshakeRoute(stages);
  router.get(handshake.path, ...handshake.handlers, handshake.admit);
  const realtimeHandshake = socketHandshakeRoute(stages, realtime.path);
  const realtimeModels = tierModelAllowlist(parts.policy ?? {}, (req) =>
    typeof req.query.model === 'string' ? req.query.model : undefined,
  );
  router.get(
    realtime.path,
    ...realtimeHandshake.handlers,
    realtimeModels,
    realtime.checkModel,
    realtimeHandshake.admit,
  );
  router.post(realtime.path, ...realtimeResponseRoute(stages, realtime.path, realtime.stages).handlers);
  for (const path of CLIENT_SECRET_PATHS)
    router.post(path, ...realtimeResponseRoute(stages, path, realtime.mintStages).handlers);
  return sockets;
}

/** The MCP servers at /mcp/<name>, behind the same guard, keys, limits and budgets (mcp-setup.ts). */
function mountMcp(router: Router, chain: Chain): GatewayMcp | undefined {
  const { parts, made } = chain;
  if (!parts.mcp) return undefined;
  const { toolCalls: _toolCalls, ...options } = parts.mcp;
  const mcp = createGatewayMcp(options, chain.stages, made.metering.chargeToolCall);
  router.use('/mcp', mcp.router);
  return mcp;
}

/** Every route of the chain on `router`, in their order; the close ends their work before the parts close. */
export function mountChainRoutes(router: Router, chain: Chain): MountedChain {
  mountProviderRoutes(router, chain);
  const stopSweep = mountBatchRoutes(router, chain);
  const sockets = chain.parts.sockets ? mountSocketRoutes(router, chain) : undefined;
  const mcp = mountMcp(router, chain);
  let closing: Promise<void> | undefined;
  return {
    sockets,
    mcp,
    close: () =>
      (closing ??= (async () => {
        // Sockets, Batch and MCP first: their work in flight settles before the budget and the sinks close.
        await sockets?.close();
        await stopSweep?.();
        await mcp?.close();
        await chain.made.close();
      })()),
  };
}
