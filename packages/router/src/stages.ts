// @tollgate/router/stages: the router's stages of the chain: the call declared for its API, then sent upstream.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import type { CallDeclaration } from '@tollgate/providers';
import type { ProviderRouter } from './upstreams/provider-routing.js';

/** A route the router calls for: a provider call, with the route params its adapter reads. */
type CalledRoute = StageRoute & { readonly params?: CallDeclaration['params'] };

/** `declare` and `call` on a provider call (another kind of route declares nothing and answers itself). */
export function routerStages(
  providers: Pick<ProviderRouter, 'declareCall' | 'handler'>,
): StageContribution<RequestHandler, CalledRoute> {
  const called = (route: CalledRoute) => route.kind === 'provider' && route.api !== undefined;
  return {
    declare: (route) => (called(route) ? [providers.declareCall(route.api!, route.params)] : undefined),
    call: (route) => (called(route) ? [providers.handler(route.api!)] : undefined),
  };
}
