// The chain's order is written once (stages.ts): every route kind the gateway mounts runs the stage list less the
// stages its profile skips, in the list's order, and a stage nobody builds stops the start.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createMemoryStores, createPricing } from '@tollgate/core';
import { STAGES } from '@tollgate/core/stages';
import type { RouteKind, Stage, StageContribution } from '@tollgate/core/stages';
import { combineLimits } from '@tollgate/ratelimit';
import { guardStages } from '@tollgate/guard/stages';
import { meterStages } from '@tollgate/metering/stages';
import { providerStages } from '@tollgate/providers/stages';
import { limitStages } from '@tollgate/ratelimit/stages';
import { routerStages } from '@tollgate/router/stages';
import { composeRoute, PROFILES, ROUTE_OWN_STAGES, routesInside, stageOf } from '../src/stages.js';
import type { GatewayRoute, GatewayStages, Profile } from '../src/stages.js';
import { batchRoutes, gatewayRoutes, PROVIDER_ROUTES, socketHandshakeRoute } from '../src/routes.js';
import type { CountAnswers } from '../src/routes.js';
import { batchRouteSpecs } from '../src/batch/batch-mount.js';
import { batchHandlers } from '../src/batch/batch-routes.js';
import { memoryBatchBook } from '../src/batch/batch-book.js';
import type { ProviderRouter } from '@tollgate/router/upstreams';
import { mcpStages } from '../src/mcp-setup.js';
import type { GatewayMetering } from '../src/metering-setup.js';
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

const providers = {
  declareCall: () => named('declare'),
  handler: () => named('call'),
} as unknown as ProviderRouter;

/** What a count answers from: a price table and the (stub) upstreams. */
const COUNTS: CountAnswers = { pricing: createPricing(), providers };

/**
 * Every package's stages as the chain registers them, everything on (a guard, a cache, guardrails, limits and a
 * budget), each made of handlers named for their stage where the package takes them made.
 */
function everyStage(): GatewayStages {
  const stores = createMemoryStores();
  const limits = limitStages<GatewayRoute>({
    stores: { limits: stores, timed: stores },
    countModels: () => named('tierPolicy'),
    limits: { requests: { layers: [{ name: 'global', by: 'global', limit: 10, window: '1m' }] } },
    guard: { limitChecks: [], limitScale: undefined },
    budget: budgetGuard({ ledger: stores.ledger, global: { usd: 1, period: 'day' } }),
    cacheLimits: () => [named('limitsAndBudget')],
  });
  const auth: StageContribution<RequestHandler> = {
    auth: () => [named('auth')],
    permissions: () => [named('permissions')],
    attribution: () => [named('attribution')],
  };
  return [
    ROUTE_OWN_STAGES,
    guardStages({
      guardAdmit: [named('guardAdmit')],
      readBody: () => named('bodyGuard'),
      guardAfterEstimate: [named('guardAfterEstimate')],
      guardrails: { maxPromptChars: 10_000 },
    }),
    auth,
    providerStages(),
    routerStages(providers),
    limits.stages,
    { cacheLookup: () => [named('cacheLookup')], cacheAround: () => [named('cacheAround')] },
    meterStages([named('meter')]),
  ];
}

/** The stages a route ran, each once, in the order it ran them. */
function stagesRun(stages: readonly Stage[]): Stage[] {
  return stages.filter((stage, index) => index === 0 || stages[index - 1] !== stage);
}

const expected = (profile: Profile, optional: readonly Stage[] = []) =>
  STAGES.filter((stage) => !profile.skips.includes(stage) && !optional.includes(stage));

describe('the stage list', () => {
  const routes = gatewayRoutes(everyStage(), COUNTS);

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
    const batch = batchRoutes(everyStage(), specs);
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
    const handshake = socketHandshakeRoute(everyStage());
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
    const stages = mcpStages(everyStage(), (() => undefined) as unknown as GatewayMetering['chargeToolCall']);
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
    const stages = [Object.fromEntries(STAGES.map((stage) => [stage, () => [named(stage)]]))];
    for (const [kind, profile] of Object.entries(PROFILES)) {
      const route = composeRoute(stages, { kind: kind as RouteKind });
      expect(route.kind).toBe(profile.kind);
      expect(route.handlers.map((handler) => handler.name)).toEqual(expected(profile));
      expect(route.stages).toEqual(expected(profile));
    }
  });

  it('runs the contributions to one stage in the order they were registered; undefined adds nothing', () => {
    const every = Object.fromEntries(STAGES.map((stage) => [stage, () => [named(stage)]]));
    const later = { auth: () => [named('later auth')], call: () => undefined };
    const route = composeRoute([every, later], { kind: 'callerQuery' });
    expect(route.handlers.map((handler) => handler.name)).toEqual(['guardAdmit', 'auth', 'later auth', 'call']);
    expect(route.stages).toEqual(['guardAdmit', 'auth', 'auth', 'call']);
  });

  it('refuses a stage a profile runs and nobody builds', () => {
    const stages = [
      Object.fromEntries(
        STAGES.filter((stage) => stage !== 'permissions').map((stage) => [stage, () => [named(stage)]]),
      ),
    ];
    expect(() => composeRoute(stages, { kind: 'provider' })).toThrow(
      'the provider call route has no "permissions" stage',
    );
    // A profile that skips it composes without it.
    expect(composeRoute(stages, { kind: 'toolCall' }).stages).toEqual([
      'meter',
      'guardAfterEstimate',
      'limitsAndBudget',
    ]);
  });

  it('refuses a stage every contribution leaves to another kind of route: a count with no answer of its own', () => {
    const count = COUNT_ROUTES[0]!;
    expect(() => composeRoute(everyStage(), { kind: 'count', ...count, body: 'json' })).toThrow(
      'the token count route has no "call" stage',
    );
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

/** Every source file of the packages, with its package's name. */
function packageSources(): { pkg: string; file: string; text: string }[] {
  const root = new URL('../../', import.meta.url);
  return readdirSync(root).flatMap((pkg) => {
    const src = new URL(`${pkg}/src/`, root);
    const files = (() => {
      try {
        return readdirSync(src, { recursive: true, encoding: 'utf8' });
      } catch {
        return [];
      }
    })();
    return files
      .filter((file) => file.endsWith('.ts'))
      .map((file) => ({ pkg, file, text: readFileSync(new URL(file, src), 'utf8') }));
  });
}

describe('stages contributed by their packages', () => {
  it("keeps each package out of the others' stages: only the gateway registers them", () => {
    const sources = packageSources();
    const contributors = sources.filter(({ file }) => file === 'stages.ts').map(({ pkg }) => pkg);
    expect(contributors).toEqual(
      expect.arrayContaining([
        'auth',
        'cache',
        'core',
        'gateway',
        'guard',
        'metering',
        'providers',
        'ratelimit',
        'router',
      ]),
    );
    const reaching = sources.flatMap(({ pkg, file, text }) =>
      [...text.matchAll(/from '@tollgate\/([a-z-]+)\/stages'/g)]
        .map((match) => match[1]!)
        .filter((owner) => owner !== 'core' && owner !== pkg && pkg !== 'gateway')
        .map((owner) => `${pkg}/src/${file} imports @tollgate/${owner}/stages`),
    );
    expect(reaching).toEqual([]);
  });
});

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
