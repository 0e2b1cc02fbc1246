// The chain's order is written once (stages.ts): every route kind the gateway mounts runs the stage list less the
// stages its profile skips, in the list's order, and a stage nobody builds stops the start.
import { describe, expect, it } from '@jest/globals';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createMemoryStores, createPricing } from '@tollgate/core';
import { combineLimits, tieredRateLimit } from '@tollgate/ratelimit';
import { composeRoute, PROFILES, STAGES } from '../src/stages.js';
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
    requestLimits: [
      tieredRateLimit({
        stores: createMemoryStores(),
        layers: [{ name: 'global', by: 'global', limit: 10, window: '1m' }],
      }),
    ],
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
      toolCallLimits: parts.requestLimits,
      budget,
      metering: { chargeToolCall: () => undefined } as unknown as GatewayMetering,
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
