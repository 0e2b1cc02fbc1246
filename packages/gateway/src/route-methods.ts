// What a provider route reads of its own path and headers beyond its adapter's body: a method named beside the model
// (the adapter's `route.methods`), the count method passed on to its own route, a key in the header its SDKs use.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { ProviderAdapter } from '@tollgate/providers';
import type { RouteMethods } from '@tollgate/providers/routes';
import { MAX_MODEL_LENGTH } from '@tollgate/providers/routes';
import type { GatewayRoute } from './stages.js';

/** The path a route of the adapter is known by, and every path it answers: that one, then its aliases. */
export function routePaths(route: NonNullable<ProviderAdapter['route']>): { path: string; paths: readonly string[] } {
  return { path: route.path, paths: [route.path, ...(route.aliases ?? [])] };
}

/** What a route adds at its stages for its adapter's path and headers. */
export type RouteStages = Pick<GatewayRoute, 'match' | 'before' | 'params'>;

/** The method of the API's token count when it shares the API's path (`countTokens` with no path of its own). */
function sharedCountMethod(adapter: ProviderAdapter): string | undefined {
  return adapter.countTokens && adapter.countTokens.path === undefined ? adapter.countTokens.method : undefined;
}

/** The methods a route serves of its path's: its own, and every method the path has (for the 404's message). */
interface ServedMethods {
  methods: RouteMethods;
  served: readonly string[];
  all: readonly string[];
}

function servedMethods(
  adapter: ProviderAdapter,
  served: (methods: RouteMethods) => readonly string[],
): ServedMethods | undefined {
  const methods = adapter.route?.methods;
  if (!methods) return undefined;
  const count = sharedCountMethod(adapter);
  return { methods, served: served(methods), all: count === undefined ? methods.calls : [...methods.calls, count] };
}

/** Why the route refuses a request: a method it does not serve, a model too long, a query the API refuses. */
function pathRefusal(req: Request, { methods, served, all }: ServedMethods): ApiError | undefined {
  const target = methods.read(req.params);
  if (!target || !served.includes(target.action))
    return new ApiError(
      'not_found',
      `No route ${req.method} ${req.path.slice(0, 200)}: the methods are ${all.join(', ')}.`,
    );
  if (target.model.length > MAX_MODEL_LENGTH)
    return new ApiError('invalid_request', `The model must be at most ${MAX_MODEL_LENGTH} characters.`, {
      param: 'model',
    });
  const problem = methods.checkQuery?.(target.action, req.query as Record<string, unknown>);
  return problem ? new ApiError('invalid_request', problem.message, { param: problem.param }) : undefined;
}

/**
 * Before auth. A method of the path the route does not serve is a 404, never passed on. The caller's tollgate key may
 * come in the headers the API's SDKs use (`keyHeaders`): it is read as `x-api-key`, so two different keys in one
 * request are refused by auth like any other disagreement.
 */
function acceptRouteRequest(adapter: ProviderAdapter, path: ServedMethods | undefined): RequestHandler | undefined {
  const keyHeaders = adapter.route?.keyHeaders ?? [];
  if (!path && keyHeaders.length === 0) return undefined;
  return function acceptRouteTarget(req: Request, res: Response, next: NextFunction): void {
    const refusal = path ? pathRefusal(req, path) : undefined;
    if (refusal) {
      renderApiError(refusal, req, res);
      return;
    }
    for (const header of keyHeaders) {
      const key = req.headers[header];
      if (typeof key !== 'string') continue;
      const apiKey = req.headers['x-api-key'];
      req.headers['x-api-key'] = apiKey === undefined || apiKey === key ? key : `${String(apiKey)}, ${key}`;
    }
    next();
  };
}

/** The params the adapter reads (`model`, `action`) from the path's, for providerCall(). */
function callParams(path: ServedMethods | undefined): Pick<RouteStages, 'params'> {
  if (!path) return {};
  const { methods } = path;
  return {
    params: function readRouteParams(req: Request) {
      return methods.read(req.params) ?? {};
    },
  };
}

/** `before` when there is one. */
function beforeStage(before: RequestHandler | undefined): Pick<RouteStages, 'before'> {
  return before ? { before } : {};
}

/**
 * The stages of the API's own route. When its token count shares the path (a method of it), a count goes on to the
 * count route, mounted after it at the same path (`next('route')`), before anything else runs for it.
 */
export function providerRouteStages(adapter: ProviderAdapter): RouteStages {
  const path = servedMethods(adapter, (methods) => methods.calls);
  const count = sharedCountMethod(adapter);
  const match =
    path && count !== undefined
      ? function passCountOn(req: Request, _res: Response, next: NextFunction): void {
          next(path.methods.read(req.params)?.action === count ? 'route' : undefined);
        }
      : undefined;
  return { ...(match ? { match } : {}), ...beforeStage(acceptRouteRequest(adapter, path)), ...callParams(path) };
}

/** The stages of the API's token-count route: at the API's own path, it serves the count method only. */
export function countRouteStages(adapter: ProviderAdapter): RouteStages {
  const count = sharedCountMethod(adapter);
  const path = count === undefined ? undefined : servedMethods(adapter, () => [count]);
  return { ...beforeStage(acceptRouteRequest(adapter, path)), ...callParams(path) };
}
