// The chain's order, composed: every route kind as a profile of the one stage list (@tollgate/core/stages: the stages
// it skips), and the one composer, which builds each stage from what the packages register for it. A new route kind
// cannot miss a stage or run two in another order: it names what it skips, and the composer refuses a stage nobody
// builds.
import type { RequestHandler } from 'express';
import { STAGES } from '@tollgate/core/stages';
import type { RouteKind, Stage, StageContribution, StageRoute } from '@tollgate/core/stages';
import type { CallDeclaration } from '@tollgate/providers';

/** A route as the gateway composes it: what every stage sees, and what the route itself runs at its stages. */
export interface GatewayRoute extends StageRoute {
  /** Route params the adapter reads. @default req.params */
  readonly params?: CallDeclaration['params'];
  /** At `route`: passes a request the route does not serve on to the next route at its path. */
  readonly match?: RequestHandler;
  /** At `auth`, first: what the route reads of its own path and headers (a key in its API's header). */
  readonly before?: RequestHandler;
  /** At `meter`: the charge of a route that charges its own way (a Realtime response). */
  readonly charge?: RequestHandler;
  /** At `call`: the route's own answer (a count, a Batch call, a caller's query, a Realtime relay). */
  readonly answer?: RequestHandler;
}

/**
 * The stages every route is composed from: the packages' contributions in the order they were registered (a stage
 * several fill runs theirs in that order, as fastify runs the plugins of one hook).
 */
export type GatewayStages = readonly StageContribution<RequestHandler, GatewayRoute>[];

/** What the route itself runs: registered first, so its own key header is read before auth. */
export const ROUTE_OWN_STAGES: StageContribution<RequestHandler, GatewayRoute> = {
  route: (route) => (route.match ? [route.match] : []),
  auth: (route) => (route.before ? [route.before] : []),
  meter: (route) => (route.charge ? [route.charge] : undefined),
  call: (route) => (route.answer ? [route.answer] : undefined),
};

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
export const PROFILES: Readonly<Record<RouteKind, Profile>> = {
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

/** What `stages` build for `stage` on `route`, in their order; undefined when none builds it for that kind of route. */
function built(stages: GatewayStages, stage: Stage, route: GatewayRoute): readonly RequestHandler[] | undefined {
  let handlers: readonly RequestHandler[] | undefined;
  for (const contribution of stages) {
    const own = contribution[stage]?.(route);
    if (own !== undefined) handlers = handlers ? [...handlers, ...own] : own;
  }
  return handlers;
}

/**
 * The one composer, run at start: the stages of `route`'s profile, in STAGES' order, each built by the contributions
 * registered for it. A stage the profile runs and nobody builds is a programming error, never a silent gap.
 */
export function composeRoute(stages: GatewayStages, route: GatewayRoute): ComposedRoute {
  const profile = PROFILES[route.kind];
  const handlers: RequestHandler[] = [];
  const placed: Stage[] = [];
  for (const stage of STAGES) {
    if (profile.skips.includes(stage)) continue;
    const own = built(stages, stage, route);
    if (!own) throw new Error(`tollgate: the ${profile.kind} route has no "${stage}" stage (skip it or build it)`);
    for (const handler of own) {
      handlers.push(handler);
      placed.push(stage);
      if (!placedAt.has(handler)) placedAt.set(handler, stage);
    }
  }
  return { kind: profile.kind, handlers, stages: placed };
}

/** The handlers `route` runs at `stages`, in its order: a stretch of it for a caller that interleaves its own. */
export function stageHandlers(route: ComposedRoute, stages: readonly Stage[]): RequestHandler[] {
  return route.handlers.filter((_handler, index) => stages.includes(route.stages[index]!));
}
