// tollgate(parts): the chain in code, without a JSON config. Each part is a package's own options (tollgate-parts.ts);
// the routes are mounted by the one assembly (compose-chain.ts) that createGateway mounts too, from the parts
// partsFromConfig makes of a config.
import express from 'express';
import { apiErrorHandler, requestContext } from '@tollgate/core';
import { composeChain } from './compose-chain.js';
import { answerMethodNotAllowed } from './exchange.js';
import { mountChainRoutes } from './route-mount.js';
import { ROUTE_PATHS } from './routes.js';
import type { TollgateParts, TollgateRouter } from './tollgate-parts.js';

/**
 * The routes of every adapter (provider calls, token counts), and those `parts` ask for (MCP, Batch, the WebSocket
 * modes), composed from the stage list, from the packages' own options. `app.use(tollgate({ ... }))`; errors are
 * answered in the API's shape.
 */
export function tollgate(parts: TollgateParts = {}): TollgateRouter {
  const router = express.Router({ caseSensitive: true, strict: true }) as unknown as TollgateRouter;
  router.use(requestContext());
  const chain = composeChain(parts);
  const mounted = mountChainRoutes(router, chain);
  router.all([...ROUTE_PATHS], answerMethodNotAllowed);
  router.use(apiErrorHandler());
  Object.defineProperty(router, 'stores', { value: chain.stores, enumerable: true });
  const { sockets } = mounted;
  if (sockets) router.attachSockets = (server, app) => sockets.attach(server, app);
  router.close = () => mounted.close();
  return router;
}
