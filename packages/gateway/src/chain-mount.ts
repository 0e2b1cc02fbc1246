// The chain and every route mounted on the gateway's router, phase by phase in their one order: the stages the routes
// share, the exchange's preparation, the provider routes, Batch, the WebSocket modes, MCP and the operator's routes.
import type { ServerResponse } from 'node:http';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { keyRecordsFromConfig } from '@tollgate/auth';
import { apiErrorHandler } from '@tollgate/core';
import type { UsageRecord } from '@tollgate/core';
import { accessLog } from '@tollgate/metering/log';
import { attributionMiddleware, authMiddleware, permissionMiddleware } from './auth-setup.js';
import { countModelAllowlist, tierModelAllowlist } from './count-tokens-route.js';
import { answerMethodNotAllowed, exchangePreparer, unexpectedErrorHandler } from './exchange.js';
import { fusedLimits } from './gateway-parts.js';
import type { BuiltParts } from './gateway-parts.js';
import { createProxyGuardrails } from './guard-setup.js';
import { providerFormBody } from './form-body.js';
import { JSON_BODY_TYPES, providerJsonBody } from './json-body.js';
import { shadowMiddleware, tierPolicyMiddleware, toolCallLimitMiddleware } from './limits-setup.js';
import { createProxyMcp } from './mcp-setup.js';
import type { GatewayMcp } from './mcp-setup.js';
import { mountOperatorRoutes } from './operator-routes.js';
import { watchEventLoop } from './probes.js';
import { CLIENT_SECRET_PATHS } from './realtime-secrets.js';
import { realtimeSocketServer } from './realtime-socket.js';
import { responsesSocketServer } from './responses-socket.js';
import { batchRoutes, gatewayRoutes, realtimeResponseRoute, ROUTE_PATHS, socketHandshakeRoute } from './routes.js';
import type { RouteParts } from './routes.js';
import { BATCH_SWEEP_MS, batchRouteSpecs, batchUpstream, sweepBatches } from './batch/batch-mount.js';
import { batchBookFor } from './batch/batch-book.js';
import { batchHandlers } from './batch/batch-routes.js';
import { socketUpgrades } from './socket-upgrade.js';
import type { SocketUpgrades } from './socket-upgrade.js';

/** The stages every route kind (provider, count, socket, MCP, operator) shares, each made once. */
interface SharedStages {
  /** Auth and shadow mode. */
  auth: RequestHandler[];
  limitsAndBudget: RequestHandler;
  requestLimits: RequestHandler[];
  readProviderBody: RequestHandler;
  readUploadBody: RequestHandler;
  permissions: RequestHandler[];
  attribution: RequestHandler[];
}

function sharedStages(parts: BuiltParts): SharedStages {
  const { options, guarding, budget, observedStores, limitStores, storeFailures } = parts;
  // Shadow mode, where the config asks for it, rides with the caller's identity: every route that limits shadows alike.
  const auth = [
    ...authMiddleware(options.auth, parts.keyLookup, storeFailures('auth')),
    ...shadowMiddleware(options.limits.shadow, (tenantId) => parts.tenants.shadowed(tenantId)),
  ];
  const { limitsAndBudget, requestLimits } = fusedLimits(options, {
    limitStores,
    observedStores,
    storeFailures,
    guarding,
    budget,
  });
  // Bodies of provider routes are read only once the caller is identified (no memory pinned by callers without a key).
  const readProviderBody = providerJsonBody(options.bodyLimit);
  const readUploadBody = providerFormBody(options.uploadLimit);
  const permissions = permissionMiddleware(options.auth);
  const attribution = attributionMiddleware(options.auth);
  return { auth, limitsAndBudget, requestLimits, readProviderBody, readUploadBody, permissions, attribution };
}

/** The config's MCP servers at /mcp/<name>, behind the same keys, guard, limits and budgets (mcp-setup.ts). */
function proxyMcp(parts: BuiltParts, stages: SharedStages): GatewayMcp | undefined {
  const { options, guarding, budget, metering, limitStores, storeFailures } = parts;
  const { auth, readProviderBody, permissions, attribution } = stages;
  const mcp =
    options.mcp &&
    createProxyMcp(options.mcp, {
      ...{ guarding, auth, readBody: readProviderBody, permissions, attribution, budget, metering },
      toolCallLimits: toolCallLimitMiddleware(options.limits, limitStores, storeFailures, guarding.limitScale),
    });
  // Its sessions end first: their calls in flight settle before the budget and the sinks close.
  if (mcp) parts.closers.unshift(() => mcp.close());
  return mcp;
}

/** What every exchange gets first, unless the app it is mounted in did it already (createProxyApp does). */
function mountPreparation(router: Router, parts: BuiltParts) {
  const preparedBy = Symbol('tollgate.gateway');
  const prepare = exchangePreparer(
    preparedBy,
    parts.logging ? accessLog(parts.logger) : undefined,
    parts.metrics?.countResponse,
    parts.log,
  );
  router.use(function prepareExchange(req: Request, res: Response, next: NextFunction) {
    if (req.tollgate?.get('gateway.preparedBy') !== preparedBy) prepare(req, res as ServerResponse);
    next();
  });
  return prepare;
}

/**
 * The provider routes first: they carry nearly all the traffic, and every route before them is a path match per
 * request. Then the token counts (free: no token limit, budget or record). Each is a profile of the one stage list.
 */
function mountProviderRoutes(router: Router, parts: BuiltParts, stages: SharedStages): RouteParts {
  const { options, deps, guarding, metering, metrics, providers } = parts;
  const { auth, readProviderBody, readUploadBody, permissions, attribution, requestLimits, limitsAndBudget } = stages;
  const routeParts: RouteParts = {
    ...{ guarding, auth, readProviderBody, readUploadBody, permissions, attribution, requestLimits, limitsAndBudget },
    providers,
    tierPolicy: tierPolicyMiddleware(options.limits.tierPolicy),
    countModels: (route) => countModelAllowlist(options.limits.tierPolicy, route),
    guardrails: createProxyGuardrails(options.guardrails, metrics, deps.guardrails),
    responseCache: parts.responseCache,
    meter: metering.middleware,
    pricing: parts.pricing,
  };
  const routes = gatewayRoutes(routeParts);
  // One route per path, so the metrics' route label (`req.route.path`) names the path a request came by.
  for (const { paths, handlers } of routes) for (const path of paths) router.post(path, ...handlers);
  return routeParts;
}

/** The Batch API, where an OpenAI upstream serves it: its jobs charged whole and settled from their output. */
function mountBatchRoutes(router: Router, parts: BuiltParts, routeParts: RouteParts): void {
  const { options, deps, metering } = parts;
  const upstream = batchUpstream(options.routing.upstreams, deps.env);
  if (!upstream) return;
  const batchParts = {
    ...{ upstream, book: deps.batchBook ?? batchBookFor(parts.stores), pricing: parts.pricing, budget: parts.budget },
    modelAllowed: tierModelAllowlist(options.limits.tierPolicy, (req) => req.tollgate.get('gateway.batchModel')),
    deliver: (record: UsageRecord) => metering.deliverRecord(record),
  };
  const batch = batchHandlers(batchParts);
  const specs = batchRouteSpecs(batch);
  for (const { method, path, handlers } of batchRoutes(routeParts, specs)) router[method](path, ...handlers);
  // The jobs nobody polls, settled in the background; stopped before the budget and the sinks close.
  const stopSweep = sweepBatches(batch, deps.batchSweepMs ?? BATCH_SWEEP_MS, parts.log);
  parts.closers.unshift(async () => stopSweep());
}

/**
 * The WebSocket modes, one upgrade dispatcher by path. The Responses API's: its upgrade passes the handshake profile,
 * each message the provider route above. Realtime's (docs/realtime.md): the same handshake and the tier's models,
 * then each response its own route, held and billed through the meter's Realtime charge.
 */
function mountSocketRoutes(router: Router, parts: BuiltParts, routeParts: RouteParts): SocketUpgrades {
  const { options, providers, metering, log } = parts;
  const responsesSocket = responsesSocketServer({ bodyLimit: options.bodyLimit, log });
  const realtime = realtimeSocketServer({
    ...{ providers, pricing: parts.pricing, log },
    charge: metering.chargeRealtimeResponse,
  });
  const sockets = socketUpgrades([responsesSocket, realtime]);
  const handshake = socketHandshakeRoute(routeParts);
  router.get(handshake.path, ...handshake.handlers, handshake.admit);
  const realtimeHandshake = socketHandshakeRoute(routeParts, realtime.path);
  const realtimeModels = tierModelAllowlist(options.limits.tierPolicy, (req) =>
    typeof req.query.model === 'string' ? req.query.model : undefined,
  );
  router.get(
    realtime.path,
    ...realtimeHandshake.handlers,
    realtimeModels,
    realtime.checkModel,
    realtimeHandshake.admit,
  );
  router.post(realtime.path, ...realtimeResponseRoute(routeParts, realtime.path, realtime.stages).handlers);
  for (const path of CLIENT_SECRET_PATHS)
    router.post(path, ...realtimeResponseRoute(routeParts, path, realtime.mintStages).handlers);
  // Its sockets close first: their responses in flight settle before the budget and the sinks close.
  parts.closers.unshift(() => sockets.close());
  return sockets;
}

/** The chain and every route on `router`, from the gateway's parts; what the controls change while it runs. */
export function mountChain(router: Router, parts: BuiltParts) {
  const held = { configKeys: keyRecordsFromConfig(parts.options.keys), draining: false };
  const stages = sharedStages(parts);
  const mcp = proxyMcp(parts, stages);
  const prepare = mountPreparation(router, parts);
  const routeParts = mountProviderRoutes(router, parts, stages);
  mountBatchRoutes(router, parts, routeParts);
  const sockets = mountSocketRoutes(router, parts, routeParts);
  if (mcp) router.use('/mcp', mcp.router);
  router.use(express.json({ limit: parts.options.bodyLimit, type: JSON_BODY_TYPES }));
  const loop = watchEventLoop();
  parts.closers.push(() => loop.close());
  mountOperatorRoutes(router, {
    ...parts,
    auth: stages.auth,
    limitsAndBudget: stages.limitsAndBudget,
    configKeys: () => held.configKeys,
    draining: () => held.draining,
    loop,
  });
  router.all([...ROUTE_PATHS], answerMethodNotAllowed);
  router.use(apiErrorHandler());
  router.use(unexpectedErrorHandler(parts.logging, parts.log));
  return { keys: parts.keyLookup, held, mcp, sockets, prepare };
}
