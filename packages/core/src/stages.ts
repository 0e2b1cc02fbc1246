// @tollgate/core/stages: the chain's stage contract, which every package contributes to without depending on the
// gateway that composes it (docs/architecture.md, "The stages"): the one order, the route a stage is built for, and
// the shape of a package's contribution.
import type { ProviderApi } from './provider-api.js';

/** Every stage, in the one order a request meets them. */
export const STAGES = [
  // The route's own reading of its path: a request it does not serve goes on to the next route at that path.
  'route',
  // Before anything is read: a blocked address is refused, failed authentications are counted per address.
  'guardAdmit',
  // Who is calling (API key, JWT), and whether its requests are shadowed; the route's own key header first.
  'auth',
  // Once the caller is known: load shedding by tier, then the body, read only now and under a deadline.
  'bodyGuard',
  // The body's shape for the route's API: a malformed request is a 400 before it costs anything.
  'validate',
  // The call declared once (API, model, params): every later stage keys off it.
  'declare',
  // The scope the gateway requires.
  'permissions',
  // Who the call is for (end user, feature, tags): refused here when required and missing.
  'attribution',
  // The tier's models and output cap, clamped before the estimate so every reservation is a true upper bound.
  'tierPolicy',
  // Prompts checked and masked before the cache key, the estimate, the limits and the budget read them.
  'guardrails',
  // A memory cache answers here: scope, models and tier rules apply to a hit, the estimate does not.
  'cacheLookup',
  // The estimate of what the call may cost, and the usage read from its answer.
  'meter',
  // Suspended keys and tenants refused (no I/O).
  'guardAfterEstimate',
  // Request, token and concurrency limits and the budget, fused: one store round trip, a refusal gives back the rest.
  'limitsAndBudget',
  // A cached answer served, and what the call answers stored; prompt caching marked.
  'cacheAround',
  // The upstream call (or the route's own answer).
  'call',
] as const;

export type Stage = (typeof STAGES)[number];

/** Every kind of route the chain is composed for: each is a profile of STAGES (the stages it skips). */
export type RouteKind =
  | 'provider'
  | 'count'
  | 'mcpMessage'
  | 'mcpSession'
  | 'toolCall'
  | 'socketHandshake'
  | 'realtimeResponse'
  | 'batch'
  | 'callerQuery';

/** What a stage is built for: the kind of route, the API it speaks, how its body is read. */
export interface StageRoute {
  readonly kind: RouteKind;
  /** The provider API of a provider call, a token count or a WebSocket mode. */
  readonly api?: ProviderApi;
  /** How the body is read once the caller is known: JSON, a multipart form, or not at all. */
  readonly body?: 'json' | 'form' | 'none';
}

/**
 * What a package contributes to the chain: for each stage it fills, the handlers it runs there on `route`, made once
 * when the routes are composed. `undefined` says the contribution has nothing for that kind of route (another fills
 * it, or nobody does: then a profile that runs the stage stops the start); `[]` says it has, and the options leave it
 * out (no cache, no scope required).
 */
export type StageContribution<Handler, Route extends StageRoute = StageRoute> = {
  readonly [S in Stage]?: (route: Route) => readonly Handler[] | undefined;
};
