// The chain's order, written once: the named stages a request passes through, and every route kind as a profile of
// them (the stages it skips). Routes are composed here and nowhere else, so a new route kind cannot miss a stage or
// run two in another order: it names what it skips, and the composer refuses a stage nobody builds.
import type { RequestHandler } from 'express';

/** Every stage, in the one order a request meets them (docs/architecture.md, "The stages"). */
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

/**
 * The order inside `limitsAndBudget`, for every assembly of the chain: request limits, token limits, concurrency,
 * then the budget (fused by combineLimits: the cheap refusals first, and a refusal gives back what those before took).
 */
export function limitsInOrder(limits: {
  requests: readonly RequestHandler[];
  tokens: readonly RequestHandler[];
  concurrency: readonly RequestHandler[];
  budget: readonly RequestHandler[];
}): RequestHandler[] {
  return [...limits.requests, ...limits.tokens, ...limits.concurrency, ...limits.budget];
}

/** A route kind: the stages it does not run. The order is never its own: it is STAGES'. */
export interface Profile {
  readonly kind: string;
  readonly skips: readonly Stage[];
}

/** The skips of a profile that runs only `runs`: every other stage of the list. */
function allBut(...runs: readonly Stage[]): readonly Stage[] {
  return STAGES.filter((stage) => !runs.includes(stage));
}

/** What an MCP exchange runs of the chain: no provider call's body checks, estimate, cache or fused limits. */
const MCP_SKIPS: readonly Stage[] = ['validate', 'tierPolicy', 'guardrails', 'cacheLookup', 'meter', 'cacheAround'];

/** Every route kind the gateway serves. */
export const PROFILES: Readonly<
  Record<
    | 'provider'
    | 'count'
    | 'mcpMessage'
    | 'mcpSession'
    | 'toolCall'
    | 'socketHandshake'
    | 'realtimeResponse'
    | 'batch'
    | 'callerQuery',
    Profile
  >
> = {
  /** A provider call: every stage. */
  provider: { kind: 'provider call', skips: [] },
  /** A token count: free (no token limit, budget, usage record or cache), so nothing is estimated or guarded by prompt. */
  count: { kind: 'token count', skips: ['declare', 'guardrails', 'cacheLookup', 'meter', 'cacheAround'] },
  /**
   * An MCP message (POST /mcp/<server>): the caller and its body; the tool calls it carries run the `toolCall`
   * profile's stages for each call.
   */
  mcpMessage: { kind: 'MCP message', skips: [...MCP_SKIPS, 'guardAfterEstimate', 'limitsAndBudget'] },
  /** An MCP session's stream or its end (GET and DELETE /mcp/<server>): no body. */
  mcpSession: { kind: 'MCP session', skips: [...MCP_SKIPS, 'bodyGuard', 'guardAfterEstimate', 'limitsAndBudget'] },
  /**
   * One tool call inside an MCP message: what is checked before it is sent on (the caller is known already). Its
   * `meter` is the tool's price, which the MCP package charges through the meter's hook at this point.
   */
  toolCall: { kind: 'tool call', skips: allBut('meter', 'guardAfterEstimate', 'limitsAndBudget') },
  /**
   * The upgrade of a Responses WebSocket (GET /v1/responses): the caller, once per connection. Each `response.create`
   * on it then runs the `provider` profile's stages as a POST of its own (responses-socket.ts).
   */
  socketHandshake: {
    kind: 'WebSocket handshake',
    skips: allBut('route', 'guardAdmit', 'auth', 'permissions'),
  },
  /**
   * One response of a Realtime session (GET /v1/realtime upgraded): the caller again (a revoked key stops here), its
   * worst case metered and held against limits and budgets before it goes upstream (realtime-socket.ts). The session's
   * frames are relayed as they are: no body checks, prompt guardrails or cache.
   */
  realtimeResponse: {
    kind: 'Realtime response',
    skips: ['validate', 'declare', 'tierPolicy', 'guardrails', 'cacheLookup', 'cacheAround'],
  },
  /**
   * A Batch API call (/v1/files, /v1/batches): the caller, its body and its request limits. Its call checks each
   * line's model against the tier and charges a job's worst case to the budgets itself (docs/batch.md): a job
   * outlives its request, so it is no estimate held for one.
   */
  batch: {
    kind: 'Batch call',
    skips: ['validate', 'declare', 'tierPolicy', 'guardrails', 'cacheLookup', 'meter', 'cacheAround'],
  },
  /**
   * What a caller asks of the gateway with its own key, no provider call (GET /v1/models, POST /v1/outcomes): the
   * address checks, the caller, then the route's own answer.
   */
  callerQuery: { kind: 'caller query', skips: allBut('guardAdmit', 'auth', 'call') },
};

/**
 * What each stage contributes to a route: its handlers (none where the config leaves the stage out, e.g. no cache).
 * `route` is the route being built, whatever the caller describes it with.
 */
export type StageBuilders<Route> = { readonly [S in Stage]?: (route: Route) => readonly RequestHandler[] };

/** A composed route: its handlers, and the stage each came from (the same length). */
export interface ComposedRoute {
  readonly kind: string;
  readonly handlers: RequestHandler[];
  readonly stages: Stage[];
}

/**
 * The stage the composer placed each handler at, and the routes a handler runs inside it (MCP's): written when routes
 * are composed, read by the test that holds every mounted route to its profile.
 */
const placedAt = new WeakMap<RequestHandler, Stage>();
const composedInside = new WeakMap<RequestHandler, readonly ComposedRoute[]>();

/** The stage `handler` was composed at; undefined for a handler no route composed. */
export function stageOf(handler: RequestHandler): Stage | undefined {
  return placedAt.get(handler);
}

/** Notes that `handler` runs `routes` inside it (a package that runs the stages it is handed around its own). */
export function runsComposed<H extends RequestHandler>(handler: H, routes: readonly ComposedRoute[]): H {
  composedInside.set(handler, routes);
  return handler;
}

/** The routes `handler` runs inside it; undefined for one that runs none. */
export function routesInside(handler: RequestHandler): readonly ComposedRoute[] | undefined {
  return composedInside.get(handler);
}

/**
 * The one composer: the stages of `profile`, in STAGES' order, each built for `route`. A stage the profile runs
 * and `builders` does not build is a programming error, thrown at start, never a silent gap in the chain.
 */
export function composeRoute<Route>(profile: Profile, builders: StageBuilders<Route>, route: Route): ComposedRoute {
  const handlers: RequestHandler[] = [];
  const stages: Stage[] = [];
  for (const stage of STAGES) {
    if (profile.skips.includes(stage)) continue;
    const build = builders[stage];
    if (!build) throw new Error(`tollgate: the ${profile.kind} route has no "${stage}" stage (skip it or build it)`);
    for (const handler of build(route)) {
      handlers.push(handler);
      stages.push(stage);
      if (!placedAt.has(handler)) placedAt.set(handler, stage);
    }
  }
  return { kind: profile.kind, handlers, stages };
}

/** The handlers `route` runs at `stages`, in its order: a stretch of it for a caller that interleaves its own. */
export function stageHandlers(route: ComposedRoute, stages: readonly Stage[]): RequestHandler[] {
  return route.handlers.filter((_handler, index) => stages.includes(route.stages[index]!));
}
