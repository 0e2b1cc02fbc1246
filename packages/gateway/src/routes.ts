// The gateway's routes as profiles of the one stage list (stages.ts): provider calls and token counts, the WebSocket
// handshakes, Realtime's responses and the Batch API, each a route described once and composed from the stages the
// packages contribute.
import type { RequestHandler } from 'express';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { providerAdapters } from '@tollgate/providers/routes';
import type { ProviderRouter } from '@tollgate/router/upstreams';
import { answerTokenCount, COUNT_ROUTES } from './count-tokens-route.js';
import { providerRouteStages, routePaths } from './route-methods.js';
import { RESPONSES_SOCKET_PATH } from './responses-socket.js';
import { admitSocketHandshake, matchSocketHandshake } from './socket-upgrade.js';
import { composeRoute } from './stages.js';
import type { ComposedRoute, GatewayRoute, GatewayStages } from './stages.js';

/** One route the gateway mounts: its path, the API it speaks, what it is (a call or a count), what its path adds. */
export interface RouteSpec extends GatewayRoute {
  readonly kind: 'provider' | 'count';
  readonly path: string;
  /** Every path it answers: `path`, then the adapter's aliases of it. */
  readonly paths: readonly string[];
  readonly api: ProviderApi;
}

/** How a route of `api` reads its body: a multipart form for an API that takes uploads, else JSON. */
function bodyOf(api: ProviderApi): 'form' | 'json' {
  return adapterFor(api).requestForm === 'multipart' ? 'form' : 'json';
}

/** Every API whose adapter names a route, at its path, with what its path and headers add (`route.methods`...). */
export const PROVIDER_ROUTES: readonly RouteSpec[] = providerAdapters().flatMap((adapter) =>
  adapter.route
    ? [
        {
          kind: 'provider' as const,
          ...routePaths(adapter.route),
          api: adapter.api,
          body: bodyOf(adapter.api),
          ...providerRouteStages(adapter),
        },
      ]
    : [],
);

/** Every path the provider and count routes answer (another method there is a 405). */
export const ROUTE_PATHS: readonly string[] = [
  ...new Set([...PROVIDER_ROUTES, ...COUNT_ROUTES].flatMap(({ paths }) => paths)),
];

/** What a count answers with when it does not forward: the price table, and the upstreams it may forward to. */
export interface CountAnswers {
  pricing: Pricing;
  providers: ProviderRouter;
}

/**
 * The provider routes, then the token counts (a route whose path names its count method passes the count on), each composed from
 * its profile: the routes the gateway mounts, in the order it mounts them.
 */
export function gatewayRoutes(
  stages: GatewayStages,
  counts: CountAnswers,
): (ComposedRoute & Pick<RouteSpec, 'path' | 'paths'>)[] {
  return [
    ...PROVIDER_ROUTES.map((route) => ({ path: route.path, paths: route.paths, ...composeRoute(stages, route) })),
    ...COUNT_ROUTES.map((count) => {
      const answer = answerTokenCount(count, counts.pricing, counts.providers);
      const route: RouteSpec = { kind: 'count', ...count, body: bodyOf(count.api), answer };
      return { path: route.path, paths: route.paths, ...composeRoute(stages, route) };
    }),
  ];
}

/** The Responses API's route, whose caller and body the WebSocket modes read as it does. */
function responsesRoute(): RouteSpec {
  const responses = PROVIDER_ROUTES.find((route) => route.path === RESPONSES_SOCKET_PATH);
  if (!responses) throw new Error(`tollgate: no provider route at ${RESPONSES_SOCKET_PATH}`);
  return responses;
}

/**
 * The handshake of a WebSocket mode at `path` (the Responses API's, Realtime's), a profile of the same stage list: GET
 * there, served only for an upgrade the dispatcher handed to the app (every other GET there goes on to the 405). The
 * caller's key is read as the OpenAI routes read it.
 */
export function socketHandshakeRoute(
  stages: GatewayStages,
  path: string = RESPONSES_SOCKET_PATH,
): ComposedRoute & Pick<RouteSpec, 'path'> & { admit: RequestHandler } {
  const route = { ...responsesRoute(), kind: 'socketHandshake' as const, path, paths: [path] };
  const composed = composeRoute(stages, { ...route, match: matchSocketHandshake });
  return { ...composed, path, admit: admitSocketHandshake };
}

/** What a Realtime response's route adds to the shared stages: its own match, its meter's charge and its call. */
export interface RealtimeResponseStages {
  match: RequestHandler;
  charge: RequestHandler;
  call: RequestHandler;
}

/**
 * The route each response of a Realtime session passes (POST at the Realtime path, sent in-process by the session):
 * the `realtimeResponse` profile, the shared stages with the session's own match, charge and call.
 */
export function realtimeResponseRoute(stages: GatewayStages, path: string, own: RealtimeResponseStages): ComposedRoute {
  const route = { ...responsesRoute(), kind: 'realtimeResponse' as const, path, paths: [path] };
  return composeRoute(stages, { ...route, match: own.match, charge: own.charge, answer: own.call });
}

/** One route of the Batch API: its method and path, how its body is read, and its call. */
export interface BatchRouteSpec {
  readonly method: 'get' | 'post';
  readonly path: string;
  readonly body: 'form' | 'json' | 'none';
  readonly call: RequestHandler;
}

/** The Batch API's routes (docs/batch.md), each the `batch` profile of the one stage list. */
export function batchRoutes(
  stages: GatewayStages,
  specs: readonly BatchRouteSpec[],
): (ComposedRoute & Pick<BatchRouteSpec, 'method' | 'path'>)[] {
  return specs.map((spec) => ({
    method: spec.method,
    path: spec.path,
    ...composeRoute(stages, { kind: 'batch', body: spec.body, answer: spec.call }),
  }));
}
