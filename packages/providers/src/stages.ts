// @tollgate/providers/stages: the adapters' stage of the chain: a body checked for its API before it costs anything.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import { validateCountRequest, validateProviderRequest } from './request-validation.js';

/** `validate`: a call's body by its adapter's checks, a count's by its count's; nothing for another kind of route. */
export function providerStages(): StageContribution<RequestHandler, StageRoute> {
  return {
    validate: (route) => {
      if (route.api === undefined) return undefined;
      if (route.kind === 'provider') return [validateProviderRequest(route.api)];
      return route.kind === 'count' ? [validateCountRequest(route.api)] : undefined;
    },
  };
}
