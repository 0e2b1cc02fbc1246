// createGateway's router, phase by phase in their one order: the exchange's preparation, every route of the chain
// (mounted by the one assembly, compose-chain.ts, from the config's parts), then the operator's routes.
import type { ServerResponse } from 'node:http';
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { keyRecordsFromConfig } from '@tollgate/auth';
import { apiErrorHandler } from '@tollgate/core';
import { accessLog } from '@tollgate/metering/log';
import type { TollgateParts } from './tollgate-parts.js';
import { composeChain } from './compose-chain.js';
import { answerMethodNotAllowed, exchangePreparer, unexpectedErrorHandler } from './exchange.js';
import type { BuiltParts } from './gateway-parts.js';
import { JSON_BODY_TYPES } from './json-body.js';
import { mountOperatorRoutes } from './operator-routes.js';
import { watchEventLoop } from './probes.js';
import { mountChainRoutes } from './route-mount.js';
import { ROUTE_PATHS } from './routes.js';

/** What every exchange gets first, unless the app it is mounted in did it already (createGatewayApp does). */
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
 * The chain of `chainParts` (tollgate()'s parts of the config: partsFromConfig) and the operator's routes on `router`,
 * from the gateway's parts; what the controls change while it runs.
 */
export function mountChain(router: Router, parts: BuiltParts, chainParts: TollgateParts) {
  const held = { configKeys: keyRecordsFromConfig(parts.options.keys), draining: false };
  const chain = composeChain(chainParts);
  const prepare = mountPreparation(router, parts);
  const { mcp, sockets, close } = mountChainRoutes(router, chain);
  router.use(express.json({ limit: parts.options.bodyLimit, type: JSON_BODY_TYPES }));
  const loop = watchEventLoop();
  parts.closers.push(() => loop.close());
  mountOperatorRoutes(router, {
    ...parts,
    stages: chain.stages,
    limitsAndBudget: chain.limitsAndBudget,
    configKeys: () => held.configKeys,
    draining: () => held.draining,
    loop,
  });
  router.all([...ROUTE_PATHS], answerMethodNotAllowed);
  router.use(apiErrorHandler());
  router.use(unexpectedErrorHandler(parts.logging, parts.log));
  return { keys: parts.keyLookup, held, mcp, sockets: sockets!, prepare, close };
}
