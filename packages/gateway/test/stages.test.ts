// The chain's order is written once (stages.ts): every route kind the gateway mounts runs the stage list less the
// stages its profile skips, in the list's order, and a stage nobody builds stops the start.
import { describe, expect, it } from '@jest/globals';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createMemoryStores, createPricing } from '@tollgate/core';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { composeRoute, PROFILES, routesInside, stageOf, STAGES } from '../src/stages.js';
import type { Profile, Stage } from '../src/stages.js';
import { batchRoutes, gatewayRoutes, PROVIDER_ROUTES, socketHandshakeRoute } from '../src/routes.js';
import { batchRouteSpecs } from '../src/batch/batch-mount.js';
import { batchHandlers } from '../src/batch/batch-routes.js';
import { memoryBatchBook } from '../src/batch/batch-book.js';
import type { RouteParts } from '../src/routes.js';
import type { GatewayGuard } from '../src/guard-setup.js';
import type { ProviderRouter } from '@tollgate/router/upstreams';
import type { GatewayCache } from '../src/cache-setup.js';
import { mcpStages } from '../src/mcp-setup.js';
import type { GatewayMetering } from '../src/metering-setup.js';
import type { BudgetGuard } from '@tollgate/budget';
import { budgetGuard } from '@tollgate/budget';
import { createGateway } from '../src/app.js';
import { tollgate } from '../src/compose.js';
import { validateConfig } from '../src/config/index.js';
import { COUNT_ROUTES } from '../src/count-tokens-route.js';
import { answerMethodNotAllowed } from '../src/exchange.js';
import { CLIENT_SECRET_PATHS } from '../src/realtime-secrets.js';

/** A handler named for the stage it stands for, so the composed route says where each of its handlers came from. */
function named(name: string): RequestHandler {
  const handler = (_req: Request, _res: Response, next: NextFunction) => next();
  Object.defineProperty(handler, 'name', { value: name });
  return handler;
}

/** Every part present (a gateway with a guard, a cache, guardrails, limits and a budget), each handler named. */
function everyPart(): RouteParts {
  const guarding = {
    beforeAuth: [named('guardAdmit')],
    afterAuth: () => [named('bodyGuard')],
    afterEstimate: [named('guardAfterEstimate')],
  } as unknown as GatewayGuard;
  const providers = {
    declareCall: () => named('declare'),
    handler: () => named('call'),
  } as unknown as ProviderRouter;
  const responseCache = {
    beforeEstimate: named('cacheLookup'),
    limits: () => [named('limitsAndBudget')],
    around: [named('cacheAround')],
  } as unknown as GatewayCache;
  return {
    guarding,
    auth: [named('auth')],
    readProviderBody: named('read body'),
    readUploadBody: named('read upload'),
    permissions: [named('permissions')],
    attribution: [named('attribution')],
    tierPolicy: named('tierPolicy'),
    countModels: () => named('tierPolicy'),
    guardrails: [named('guardrails')],
    responseCache,
    meter: [named('meter')],
    requestLimits: combineLimits(
      tieredRateLimit({
        stores: createMemoryStores(),
        layers: [{ name: 'global', by: 'global', limit: 10, window: '1m' }],
      }),
    ),
    limitsAndBudget: named('limitsAndBudget'),
    pricing: createPricing(),
    providers,
  };
}

/** The stages a route ran, each once, in the order it ran them. */
function stagesRun(stages: readonly Stage[]): Stage[] {
  return stages.filter((stage, index) => index === 0 || stages[index - 1] !== stage);
}

const expected = (profile: Profile, optional: readonly Stage[] = []) =>
  STAGES.filter((stage) => !profile.skips.includes(stage) && !optional.includes(stage));

describe('the stage list', () => {
  const routes = gatewayRoutes(everyPart());

  it('mounts every provider route with every stage, in the list order (the route stage where the path needs one)', () => {
    const providerRoutes = routes.filter((route) => route.kind === PROFILES.provider.kind);
    expect(providerRoutes.map((route) => route.path)).toEqual(PROVIDER_ROUTES.map((route) => route.path));
    expect(providerRoutes.length).toBeGreaterThan(5);
    for (const route of providerRoutes) {
      const hasOwnMatch = PROVIDER_ROUTES.find((spec) => spec.path === route.path)!.match !== undefined;
      expect(stagesRun(route.stages)).toEqual(expected(PROFILES.provider, hasOwnMatch ? [] : ['route']));
      // The stub parts keep their names: the handler at each place is the stage's own.
      route.handlers.forEach((handler, index) => {
        if ((STAGES as readonly string[]).includes(handler.name)) expect(route.stages[index]).toBe(handler.name);
      });
      expect(route.handlers.at(-1)!.name).toBe('call');
    }
  });

  it('mounts the token counts as the count profile: no declaration, guardrails, cache, meter', () => {
    const counts = routes.filter((route) => route.kind === PROFILES.count.kind);
    expect(counts.length).toBeGreaterThanOrEqual(2);
    for (const route of counts) {
      expect(stagesRun(route.stages)).toEqual(expected(PROFILES.count, ['route']));
      for (const skipped of PROFILES.count.skips) expect(route.stages).not.toContain(skipped);
      // A count is free: the request limits, never the fused limits and budget.
      const limits = route.handlers[route.stages.indexOf('limitsAndBudget')]!;
      expect(limits.name).not.toBe('limitsAndBudget');
    }
  });

  it('mounts the Batch API as the batch profile: no estimate, the request limits only, its own call last', () => {
    const specs = batchRouteSpecs(
      batchHandlers({
        upstream: { baseUrl: 'http://127.0.0.1:9/v1', apiKey: undefined },
        book: memoryBatchBook(),
        pricing: createPricing(),
        budget: budgetGuard(),
        modelAllowed: named('model allowed'),
        deliver: () => undefined,
      }),
    );
    const batch = batchRoutes(everyPart(), specs);
    expect(batch.map((route) => `${route.method} ${route.path}`)).toEqual([
      'post /v1/files',
      'get /v1/files/:id',
      'get /v1/files/:id/content',
      'post /v1/batches',
      'get /v1/batches/:id',
      'post /v1/batches/:id/cancel',
    ]);
    for (const route of batch) {
      expect(route.kind).toBe(PROFILES.batch.kind);
      expect(stagesRun(route.stages)).toEqual(expected(PROFILES.batch, ['route']));
      for (const skipped of PROFILES.batch.skips) expect(route.stages).not.toContain(skipped);
      const limits = route.handlers[route.stages.indexOf('limitsAndBudget')]!;
      expect(limits.name).not.toBe('limitsAndBudget');
      expect(route.stages.at(-1)).toBe('call');
    }
  });

  it('composes the Responses WebSocket handshake as its profile: the caller only, then the upgrade admitted', () => {
    const handshake = socketHandshakeRoute(everyPart());
    expect(handshake.path).toBe('/v1/responses');
    expect(handshake.kind).toBe(PROFILES.socketHandshake.kind);
    expect(stagesRun(handshake.stages)).toEqual(['route', 'guardAdmit', 'auth', 'permissions']);
    expect(handshake.handlers.map((handler) => handler.name)).toEqual([
      'matchSocketHandshake',
      'guardAdmit',
      'auth',
      'permissions',
    ]);
    expect(handshake.admit.name).toBe('admitSocketHandshake');
  });

  it('hands the MCP route its stretches of the MCP profiles: admission, body, permissions; per tool call the checks', () => {
    const parts = everyPart();
    const stores = createMemoryStores();
    const budget = budgetGuard({ ledger: stores.ledger, global: { usd: 1, period: 'day' } }) as unknown as BudgetGuard;
    const stages = mcpStages({
      guarding: { ...parts.guarding, limitChecks: [] } as GatewayGuard,
      auth: parts.auth,
      readBody: parts.readProviderBody,
      permissions: parts.permissions,
      attribution: parts.attribution,
      toolCallLimits: combineLimits(budget),
      chargeToolCall: (() => undefined) as unknown as GatewayMetering['chargeToolCall'],
    });
    const names = (handlers: readonly RequestHandler[]) => handlers.map((handler) => handler.name);
    // The MCP package runs: its framing (route), admit, readBody (POST), the server (declare), permissions, the message.
    expect(names(stages.admit)).toEqual(['guardAdmit', 'auth']);
    expect(names(stages.readBody)).toEqual(['bodyGuard']);
    expect(names(stages.permissions!)).toEqual(['permissions', 'attribution']);
    // A tool call: its price (the meter hook), suspensions, then the tool-call limits and the budget fused.
    expect(stages.limitAndReserve).toHaveLength(2);
    expect(stages.limitAndReserve[0]!.name).toBe('guardAfterEstimate');
    expect(() => combineLimits(stages.limitAndReserve[1]!)).not.toThrow();
  });

  it('composes each profile in the list order, never an order of its own', () => {
    const builders = Object.fromEntries(STAGES.map((stage) => [stage, () => [named(stage)]]));
    for (const profile of Object.values(PROFILES)) {
      const route = composeRoute(profile, builders, undefined);
      expect(route.handlers.map((handler) => handler.name)).toEqual(expected(profile));
      expect(route.stages).toEqual(expected(profile));
    }
  });

  it('refuses a stage a profile runs and nobody builds', () => {
    const builders = Object.fromEntries(
      STAGES.filter((stage) => stage !== 'permissions').map((stage) => [stage, () => [named(stage)]]),
    );
    expect(() => composeRoute(PROFILES.provider, builders, undefined)).toThrow(
      'the provider call route has no "permissions" stage',
    );
    // A profile that skips it composes without it.
    expect(composeRoute(PROFILES.toolCall, builders, undefined).stages).toEqual([
      'meter',
      'guardAfterEstimate',
      'limitsAndBudget',
    ]);
  });
});

/** A mounted route: its path, its method, the handlers Express runs for it. */
interface MountedRoute {
  path: string;
  method: string;
  handlers: RequestHandler[];
}

type RouterLayer = {
  route?: { path: string; methods: Record<string, boolean>; stack: { handle: RequestHandler }[] };
  handle: RequestHandler;
};

/** The routes on `router`'s stack, one per method, and the handlers mounted with `use` (MCP's among them). */
function walk(router: { stack: RouterLayer[] }): { routes: MountedRoute[]; used: RequestHandler[] } {
  const routes = router.stack.flatMap((layer) =>
    layer.route
      ? Object.keys(layer.route.methods).map((method) => ({
          path: String(layer.route!.path),
          method,
          handlers: layer.route!.stack.map((entry) => entry.handle),
        }))
      : [],
  );
  return { routes, used: router.stack.filter((layer) => !layer.route).map((layer) => layer.handle) };
}

/**
 * Each chain route's profiles by method and path, in the order they are mounted: every route a gateway mounts from the
 * stage list (a path that names its count method in its path serves a call, then the count).
 */
function profilesByRoute(): Map<string, Profile[]> {
  const profiles = new Map<string, Profile[]>();
  const add = (method: 'get' | 'post', paths: readonly string[], profile: Profile) => {
    for (const path of paths)
      profiles.set(`${method} ${path}`, [...(profiles.get(`${method} ${path}`) ?? []), profile]);
  };
  for (const route of PROVIDER_ROUTES) add('post', route.paths, PROFILES.provider);
  for (const count of COUNT_ROUTES) add('post', count.paths, PROFILES.count);
  add('post', ['/v1/files', '/v1/batches', '/v1/batches/:id/cancel'], PROFILES.batch);
  add('get', ['/v1/files/:id', '/v1/files/:id/content', '/v1/batches/:id'], PROFILES.batch);
  add('get', ['/v1/responses', '/v1/realtime'], PROFILES.socketHandshake);
  add('post', ['/v1/realtime', ...CLIENT_SECRET_PATHS], PROFILES.realtimeResponse);
  add('get', ['/v1/models'], PROFILES.callerQuery);
  add('post', ['/v1/outcomes'], PROFILES.callerQuery);
  return profiles;
}

/** The operator's own routes: no caller's profile (the admin key, or nothing to guard). */
const OPERATOR_ROUTES = ['get /healthz', 'get /livez', 'get /readyz', 'get /metrics'];

/**
 * Every route on the stack held to its profile: the stages its handlers were composed at are exactly the profile's,
 * in the list's order (`route` only where the path reads itself), nothing uncomposed before them; the handlers after
 * them (a socket's admission) composed by no stage. Returns the routes held, and those of the list not mounted.
 */
function holdToProfiles(router: { stack: RouterLayer[] }): { held: string[]; unmounted: string[] } {
  const profiles = profilesByRoute();
  const held: string[] = [];
  for (const route of walk(router).routes) {
    const name = `${route.method} ${route.path}`;
    if (route.handlers.length === 1 && route.handlers[0] === answerMethodNotAllowed) continue;
    if (OPERATOR_ROUTES.includes(name)) continue;
    const profile = profiles.get(name)?.shift();
    if (!profile) throw new Error(`${name} is mounted with no profile`);
    const stages = route.handlers.map((handler) => stageOf(handler));
    const firstUncomposed = stages.indexOf(undefined);
    const placed = stages.slice(0, firstUncomposed === -1 ? stages.length : firstUncomposed) as Stage[];
    const composedAfter = stages.slice(placed.length).filter((stage) => stage !== undefined);
    const optional: Stage[] = placed.includes('route') ? [] : ['route'];
    expect({ name, stages: stagesRun(placed), composedAfter }).toEqual({
      name,
      stages: expected(profile, optional),
      composedAfter: [],
    });
    held.push(name);
  }
  const unmounted = [...profiles].flatMap(([name, left]) => left.map(() => name));
  return { held, unmounted };
}

/**
 * Every route of `router` held to its profile, all the list's but `unmounted` mounted, and the MCP route's stages (as
 * the `use`d handler that runs them holds them) a message's, then a tool call's profile. Returns the routes held.
 */
function holdEveryRoute(router: { stack: RouterLayer[] }, unmounted: readonly string[]): string[] {
  const routes = holdToProfiles(router);
  expect(routes.unmounted).toEqual(unmounted);
  const inside = walk(router).used.flatMap((handler) => routesInside(handler) ?? []);
  expect(inside.map((route) => route.kind)).toEqual([PROFILES.mcpMessage.kind, PROFILES.toolCall.kind]);
  expect(inside.map((route) => stagesRun(route.stages))).toEqual([
    expected(PROFILES.mcpMessage, ['route', 'declare', 'meter', 'call']),
    expected(PROFILES.toolCall, ['meter']),
  ]);
  return routes.held;
}

describe('every mounted route is its profile', () => {
  const guard = {
    authFailures: { max: 5, windowSeconds: 60, block: '1m' },
    repeatedRequests: { max: 5, windowSeconds: 60 },
  };
  const openai = { baseUrl: 'http://127.0.0.1:9/v1', apiKeyEnv: 'TG_TEST_OPENAI_KEY' };
  const tiers = { pro: { requestsPerMinute: 60, tokensPerMinute: 100_000, maxConcurrent: 4, toolCallsPerMinute: 5 } };

  it('holds createGateway with everything on: MCP, Batch, the sockets, the operator routes, /v1/models and /v1/outcomes', async () => {
    const gateway = createGateway(
      validateConfig({
        upstreams: { openai },
        adminKeySha256: 'a'.repeat(64),
        requiredScope: 'chat',
        keys: [{ id: 'k', sha256: 'b'.repeat(64), tier: 'pro', scopes: ['chat'] }],
        tiers,
        global: { budget: { usd: 10, period: 'day' } },
        guard,
        guardrails: { maxPromptChars: 10_000 },
        cache: { store: 'memory' },
        mcpServers: { search: { url: 'http://127.0.0.1:9/mcp' } },
        log: { level: 'silent' },
      }),
      { env: { TG_TEST_OPENAI_KEY: 'sk-test' }, log: () => undefined },
    );
    try {
      // Every route of the list is mounted and held, the caller's queries included.
      const held = holdEveryRoute(gateway as unknown as { stack: RouterLayer[] }, []);
      expect(held).toEqual(expect.arrayContaining(['get /v1/models', 'post /v1/outcomes', 'post /v1/batches']));
    } finally {
      await gateway.close();
    }
  });

  it('holds tollgate() with everything on to the same profiles', async () => {
    const stores = createMemoryStores();
    const layers = [{ name: 'tenant', by: 'tenant' as const, limit: 60, window: '1m' }];
    const composed = tollgate({
      stores,
      scope: 'chat',
      guard,
      guardrails: { maxPromptChars: 10_000 },
      cache: {},
      limits: { requests: { layers }, tokens: { layers }, concurrency: { limit: 4 } },
      budget: { global: { usd: 10, period: 'day' } },
      providers: { upstreams: { openai: { ...openai, api: 'openai' } }, env: { TG_TEST_OPENAI_KEY: 'sk-test' } },
      mcp: { servers: { search: { url: 'http://127.0.0.1:9/mcp' } }, toolCalls: { layers } },
      batch: {},
      sockets: true,
    });
    try {
      // Every route of the list but the caller's queries (createGateway's operator routes).
      const held = holdEveryRoute(composed as unknown as { stack: RouterLayer[] }, [
        'get /v1/models',
        'post /v1/outcomes',
      ]);
      expect(held).toEqual(expect.arrayContaining(['post /v1/batches', 'get /v1/realtime', 'post /v1/realtime']));
    } finally {
      await composed.close();
      await stores.close();
    }
  });
});
