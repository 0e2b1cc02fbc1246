// @tollgate/cache/stages: the response cache's stages of the chain: its lookup before the estimate, its choice of
// limits (a hit passes the request limits only), its answer, then prompt caching.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import type { createResponseCache } from './response-cache.js';

/** A response cache as the chain runs it. */
export interface CacheStages {
  /** `cacheLookup` and `cacheAround`. */
  readonly stages: StageContribution<RequestHandler, StageRoute>;
  /**
   * The call's fused limits as the cache runs them (inside `limitsAndBudget`): the lookup starts first; a hit the
   * memory store already answered passes `hitLimits` only, anything else `limits` whole (a Redis hit gives back its
   * reservation at its settle).
   */
  limits(limits: RequestHandler, hitLimits: RequestHandler): RequestHandler[];
  close(): Promise<void>;
}

/** No response cache: its stages run nothing. */
export const NO_CACHE_STAGES: StageContribution<RequestHandler, StageRoute> = {
  cacheLookup: () => [],
  cacheAround: () => [],
};

/** A response cache's stages, with prompt caching after its answer. */
export function cacheStages(
  cache: ReturnType<typeof createResponseCache>,
  promptCaching: readonly RequestHandler[] = [],
): CacheStages {
  const lookup = [cache.lookupBeforeEstimate];
  const around = [cache.answer, ...promptCaching];
  return {
    stages: { cacheLookup: () => lookup, cacheAround: () => around },
    limits: (limits, hitLimits) => [cache.lookup, cache.chooseLimits({ hit: hitLimits, miss: limits })],
    close: () => cache.close(),
  };
}
