// The gateway's routes as profiles of the one stage list (stages.ts): provider calls and token counts, each stage
// built once here from the gateway's parts, its variant by the route's kind where a count differs from a call.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { providerAdapters } from '@tollgate/providers/routes';
import type { GatewayCache } from './cache-setup.js';
import { answerTokenCount, COUNT_ROUTES } from './count-tokens-route.js';
import type { GatewayGuard } from './guard-setup.js';
import type { ProviderRouter } from '@tollgate/router/upstreams';
import { validateCountRequest, validateProviderRequest } from './request-validation.js';
import { providerRouteStages, routePaths } from './route-methods.js';
import type { RouteStages } from './route-methods.js';
import { RESPONSES_SOCKET_PATH } from './responses-socket.js';
import { admitSocketHandshake, matchSocketHandshake } from './socket-upgrade.js';
import { composeRoute, PROFILES } from './stages.js';
import type { ComposedRoute, StageBuilders } from './stages.js';

/** One route the gateway mounts: its path, the API it speaks, what it is (a call or a count), what its path adds. */
export interface RouteSpec extends RouteStages {
  readonly kind: 'provider' | 'count';
  readonly path: string;
  /** Every path it answers: `path`, then the adapter's aliases of it. */
  readonly paths: readonly string[];
  readonly api: ProviderApi;
}

/** Every API whose adapter names a route, at its path, with what its path and headers add (`route.methods`...). */
export const PROVIDER_ROUTES: readonly RouteSpec[] = providerAdapters().flatMap((adapter) =>
  adapter.route
    ? [{ kind: 'provider' as const, ...routePaths(adapter.route), api: adapter.api, ...providerRouteStages(adapter) }]
    : [],
);

/** Every path the provider and count routes answer (another method there is a 405). */
export const ROUTE_PATHS: readonly string[] = [
  ...new Set([...PROVIDER_ROUTES, ...COUNT_ROUTES].flatMap(({ paths }) => paths)),
];

/** What the routes' stages are built from: the gateway's parts, each made once and shared by every route. */
export interface RouteParts {
  guarding: GatewayGuard;
  /** Auth and shadow mode. */
  auth: readonly RequestHandler[];
  readProviderBody: RequestHandler;
  /** The body reader of a route whose API takes multipart uploads (`requestForm`). */
  readUploadBody: RequestHandler;
  permissions: readonly RequestHandler[];
  attribution: readonly RequestHandler[];
  /** A call's tier rules (models and output cap). */
  tierPolicy: RequestHandler;
  /** A count's: the models the caller may count for, by the same rule. */
  countModels: (route: RouteSpec) => RequestHandler;
  guardrails: readonly RequestHandler[];
  responseCache: GatewayCache | undefined;
  meter: readonly RequestHandler[];
  /**
   * The request limits and the guard's repeat count, fused (combineLimits): all a count, a cached answer and a Batch
   * call pass; undefined where none is configured.
   */
  requestLimits: RequestHandler | undefined;
  /** Every limit and the budget, fused (combineLimits): what a call passes. */
  limitsAndBudget: RequestHandler;
  pricing: Pricing;
  providers: ProviderRouter;
}

/** What a cache hit passes where no request limit is configured. */
function noRequestLimits(_req: Request, _res: Response, next: NextFunction): void {
  next();
}

/** Every stage of the provider and count routes. The order is not here: it is STAGES'. */
function routeStages(parts: RouteParts): StageBuilders<RouteSpec> {
  const { guarding, responseCache: cache } = parts;
  const { requestLimits } = parts;
  const countLimits = requestLimits ? [requestLimits] : [];
  const callLimits = cache
    ? cache.limits(parts.limitsAndBudget, requestLimits ?? noRequestLimits)
    : [parts.limitsAndBudget];
  const none: readonly RequestHandler[] = [];
  return {
    route: (route) => (route.match ? [route.match] : none),
    guardAdmit: () => guarding.beforeAuth,
    auth: (route) => (route.before ? [route.before, ...parts.auth] : parts.auth),
    bodyGuard: (route) =>
      guarding.afterAuth(
        adapterFor(route.api).requestForm === 'multipart' ? parts.readUploadBody : parts.readProviderBody,
      ),
    validate: (route) => [
      route.kind === 'count' ? validateCountRequest(route.api) : validateProviderRequest(route.api),
    ],
    declare: (route) => [parts.providers.declareCall(route.api, route.params)],
    permissions: () => parts.permissions,
    attribution: () => parts.attribution,
    tierPolicy: (route) => [route.kind === 'count' ? parts.countModels(route) : parts.tierPolicy],
    guardrails: () => parts.guardrails,
    cacheLookup: () => (cache ? [cache.beforeEstimate] : none),
    meter: () => parts.meter,
    guardAfterEstimate: () => guarding.afterEstimate,
    // A count is free: the request limits only, no token limit, slot or budget.
    limitsAndBudget: (route) => (route.kind === 'count' ? countLimits : callLimits),
    cacheAround: () => cache?.around ?? none,
    call: (route) => [
      route.kind === 'count'
        ? answerTokenCount(route, parts.pricing, parts.providers)
        : parts.providers.handler(route.api),
    ],
  };
}

/**
 * The provider routes, then the token counts (a route whose path names its count method passes the count on), each composed from
 * its profile: the routes the gateway mounts, in the order it mounts them.
 */
export function gatewayRoutes(parts: RouteParts): (ComposedRoute & Pick<RouteSpec, 'path' | 'paths'>)[] {
  const stages = routeStages(parts);
  return [
    ...PROVIDER_ROUTES.map((route) => ({
      ...{ path: route.path, paths: route.paths },
      ...composeRoute(PROFILES.provider, stages, route),
    })),
    ...COUNT_ROUTES.map((count) => {
      const route: RouteSpec = { kind: 'count', ...count };
      return { path: route.path, paths: route.paths, ...composeRoute(PROFILES.count, stages, route) };
    }),
  ];
}

/**
 * The handshake of a WebSocket mode at `path` (the Responses API's, Realtime's), a profile of the same stage list: GET
 * there, served only for an upgrade the dispatcher handed to the app (every other GET there goes on to the 405). The
 * caller's key is read as the OpenAI routes read it.
 */
export function socketHandshakeRoute(
  parts: RouteParts,
  path: string = RESPONSES_SOCKET_PATH,
): ComposedRoute & Pick<RouteSpec, 'path'> & { admit: RequestHandler } {
  const responses = PROVIDER_ROUTES.find((route) => route.path === RESPONSES_SOCKET_PATH);
  if (!responses) throw new Error(`tollgate: no provider route at ${RESPONSES_SOCKET_PATH}`);
  const composed = composeRoute(PROFILES.socketHandshake, routeStages(parts), {
    ...responses,
    path,
    paths: [path],
    match: matchSocketHandshake,
  });
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
export function realtimeResponseRoute(parts: RouteParts, path: string, own: RealtimeResponseStages): ComposedRoute {
  const responses = PROVIDER_ROUTES.find((route) => route.path === RESPONSES_SOCKET_PATH);
  if (!responses) throw new Error(`tollgate: no provider route at ${RESPONSES_SOCKET_PATH}`);
  const shared = routeStages(parts);
  return composeRoute(
    PROFILES.realtimeResponse,
    { ...shared, meter: () => [own.charge], call: () => [own.call] },
    { ...responses, path, paths: [path], match: own.match },
  );
}

/** One route of the Batch API: its method and path, how its body is read, and its call. */
export interface BatchRouteSpec {
  readonly method: 'get' | 'post';
  readonly path: string;
  readonly body: 'form' | 'json' | 'none';
  readonly call: RequestHandler;
}

/** A route with no body to read. */
function readNoBody(_req: Request, _res: Response, next: NextFunction): void {
  next();
}

/** The Batch API's routes (docs/batch.md), each the `batch` profile of the one stage list. */
export function batchRoutes(
  parts: RouteParts,
  specs: readonly BatchRouteSpec[],
): (ComposedRoute & Pick<BatchRouteSpec, 'method' | 'path'>)[] {
  const { guarding } = parts;
  const requestLimits = parts.requestLimits ? [parts.requestLimits] : [];
  const none: readonly RequestHandler[] = [];
  const readers = { form: parts.readUploadBody, json: parts.readProviderBody, none: readNoBody };
  const stages: StageBuilders<BatchRouteSpec> = {
    route: () => none,
    guardAdmit: () => guarding.beforeAuth,
    auth: () => parts.auth,
    bodyGuard: (spec) => guarding.afterAuth(readers[spec.body]),
    permissions: () => parts.permissions,
    attribution: () => parts.attribution,
    guardAfterEstimate: () => guarding.afterEstimate,
    limitsAndBudget: () => requestLimits,
    call: (spec) => [spec.call],
  };
  return specs.map((spec) => ({
    method: spec.method,
    path: spec.path,
    ...composeRoute(PROFILES.batch, stages, spec),
  }));
}
