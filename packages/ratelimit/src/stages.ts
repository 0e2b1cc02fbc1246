// @tollgate/ratelimit/stages: the limits' stages of the chain: the tier's rules before the estimate, then every limit
// and the budget fused in one store round trip (`limitsAndBudget`), as a call, a count or a tool call runs them.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { TollgateStores } from '@tollgate/core';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import { combineLimits } from './combine-limits.js';
import { concurrencyLimit } from './concurrency-limit.js';
import type { ConcurrencyLimitOptions } from './concurrency-limit.js';
import type { LimitLayerOptions } from './limit-layers.js';
import { tieredRateLimit } from './tiered-rate-limit.js';
import type { TieredRateLimitOptions } from './tiered-rate-limit.js';
import { tierPolicy } from './tier-policy.js';
import type { TierPolicyOptions } from './tier-policy.js';
import { tokenRateLimit } from './token-rate-limit.js';
import type { TokenRateLimitOptions } from './token-rate-limit.js';
import type { StoresWithCommands } from './types.js';

/** What the limits' stages are made of: the limiters' options, and the pieces other packages fuse into them. */
export interface LimitStageParts<Route extends StageRoute> {
  /** `limits` for the request, token and tool-call counters (behind a lease or in blocks), `timed` for concurrency. */
  stores: { limits: TollgateStores; timed: TollgateStores };
  /** Each tier's models and output cap. @default every model */
  policy?: TierPolicyOptions | undefined;
  /** A count's tier rule: the models the caller may count for, read from the count's request. */
  countModels: (route: Route) => RequestHandler;
  limits?: {
    requests?: Omit<TieredRateLimitOptions, 'stores'> | undefined;
    tokens?: Omit<TokenRateLimitOptions, 'stores'> | undefined;
    concurrency?: Omit<ConcurrencyLimitOptions, 'stores'> | undefined;
  };
  /** MCP tool calls, counted apart from the request limits. @default none */
  toolCalls?: Omit<TieredRateLimitOptions, 'stores'> | undefined;
  /** A guard's repeat count (it rides with the request limits) and its throttle on each caller's own layers. */
  guard: { limitChecks: readonly RequestHandler[]; limitScale: ((req: Request) => number) | undefined };
  /** The budget's reserve, fused last. @default none */
  budget?: RequestHandler | undefined;
  /** A response cache's choice between a call's limits and a hit's (the request limits only). @default none */
  cacheLimits?: ((limits: RequestHandler, hitLimits: RequestHandler) => RequestHandler[]) | undefined;
}

/** The limits' stages, and the call's fused limits (the dashboard reads its quotas through them). */
export interface LimitStages<Route extends StageRoute> {
  readonly stages: StageContribution<RequestHandler, Route>;
  readonly limitsAndBudget: RequestHandler;
}

/** The layers with a guard's throttle on each caller's own (tier) layers: the global ceiling is nobody's own. */
function scaled(layers: readonly LimitLayerOptions[], limitScale: (req: Request) => number): LimitLayerOptions[] {
  return layers.map((layer) => (layer.by === 'global' ? layer : { ...layer, limitScale }));
}

/** What passes where no limit is configured. */
function noLimits(_req: Request, _res: Response, next: NextFunction): void {
  next();
}

/** One handler for `handlers` in the order given: their store calls share one round trip. */
function fused(handlers: readonly RequestHandler[]): RequestHandler {
  return handlers.length > 0 ? combineLimits(...handlers) : noLimits;
}

/**
 * Every limiter once, fused in the one order (request limits, token limits, concurrency, then the budget: the cheap
 * refusals first, and a refusal gives back what those before took): a call's, a count's, a tool call's.
 */
function fuseLimits<Route extends StageRoute>(parts: LimitStageParts<Route>) {
  const { guard, stores } = parts;
  const limits = parts.limits ?? {};
  const counted = { stores: stores.limits as StoresWithCommands };
  const throttled = <O extends { layers?: LimitLayerOptions[] | undefined }>(options: O): O =>
    options.layers && guard.limitScale ? { ...options, layers: scaled(options.layers, guard.limitScale) } : options;
  const requests = [
    ...guard.limitChecks,
    ...(limits.requests ? [tieredRateLimit({ ...throttled(limits.requests), ...counted })] : []),
  ];
  const budget = parts.budget ? [parts.budget] : [];
  const toolCalls = parts.toolCalls;
  return {
    requests: requests.length > 0 ? combineLimits(...requests) : undefined,
    call: fused([
      ...requests,
      ...(limits.tokens ? [tokenRateLimit({ ...throttled(limits.tokens), ...counted })] : []),
      ...(limits.concurrency ? [concurrencyLimit({ ...limits.concurrency, stores: stores.timed })] : []),
      ...budget,
    ]),
    // A tool call's cost is its price: no token estimate, token limit or request limit.
    toolCall: fused([
      ...guard.limitChecks,
      ...(toolCalls ? [tieredRateLimit({ ...throttled(toolCalls), ...counted })] : []),
      ...budget,
    ]),
  };
}

/** `tierPolicy` (a call's, a count's) and `limitsAndBudget` (a call's, a count's or a Batch call's, a tool call's). */
export function limitStages<Route extends StageRoute>(parts: LimitStageParts<Route>): LimitStages<Route> {
  const limits = fuseLimits(parts);
  const policy = tierPolicy(parts.policy ?? {});
  // A count and a Batch call are no estimate held: the request limits only, no token limit, slot or budget.
  const requestLimits = limits.requests ? [limits.requests] : [];
  const callLimits = parts.cacheLimits ? parts.cacheLimits(limits.call, limits.requests ?? noLimits) : [limits.call];
  const toolCallLimits = [limits.toolCall];
  const byKind: Partial<Record<StageRoute['kind'], readonly RequestHandler[]>> = {
    provider: callLimits,
    realtimeResponse: callLimits,
    count: requestLimits,
    batch: requestLimits,
    toolCall: toolCallLimits,
  };
  return {
    stages: {
      tierPolicy: (route) =>
        route.kind === 'provider' ? [policy] : route.kind === 'count' ? [parts.countModels(route)] : undefined,
      limitsAndBudget: (route) => byKind[route.kind],
    },
    limitsAndBudget: limits.call,
  };
}
