// The one assembly of the chain: its parts made once from tollgate()'s parts (or taken as a deployment made them),
// each package's stages registered once from them, and every route mounted from those (route-mount.ts). tollgate()
// and createGateway both mount through it.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { authStages } from '@tollgate/auth/stages';
import { budgetGuard } from '@tollgate/budget';
import { createResponseCache } from '@tollgate/cache';
import { cacheStages, NO_CACHE_STAGES } from '@tollgate/cache/stages';
import { createMemoryStores, createPricing } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { guardStages } from '@tollgate/guard/stages';
import { meter, realtimeMeter, toolMeter, usageDeliverer } from '@tollgate/metering';
import { meterStages } from '@tollgate/metering/stages';
import { createMockProvider } from '@tollgate/providers/mock';
import { providerStages } from '@tollgate/providers/stages';
import { limitStages } from '@tollgate/ratelimit/stages';
import { routerStages } from '@tollgate/router/stages';
import { createProviderRouter } from '@tollgate/router/upstreams';
import type { TollgateGuardParts, TollgateMadeParts, TollgateParts } from './tollgate-parts.js';
import { countModelAllowlist } from './count-tokens-route.js';
import { DEFAULT_UPLOAD_LIMIT, providerFormBody } from './form-body.js';
import { createGatewayGuard, noGatewayGuard } from './guard-setup.js';
import { providerJsonBody } from './json-body.js';
import { shadowMiddleware } from './limits-setup.js';
import { ROUTE_OWN_STAGES } from './stages.js';
import type { GatewayStages } from './stages.js';

/** tollgate()'s parts with the stores they run on (theirs, or memory stores the chain made). */
type StoredParts = TollgateParts & { stores: TollgateStores };

/** What the routes are mounted from: the parts made once, the stages built from them, and the close of both. */
export interface Chain {
  readonly parts: StoredParts;
  readonly stores: TollgateStores;
  readonly made: Omit<TollgateMadeParts, 'budget'> & { budget: TollgateMadeParts['budget'] | undefined };
  /** The packages' stages, registered in order: every route kind is composed from them. */
  readonly stages: GatewayStages;
  /** Every limit and the budget, fused (a call's `limitsAndBudget`): the dashboard reads its quotas through them. */
  readonly limitsAndBudget: RequestHandler;
}

/** The guard as the gateway runs it, from the composer's options: a check not given is off. */
function composedGuard(guard: TollgateGuardParts, stores: TollgateStores) {
  const log = guard.log ?? ((line: string) => console.warn(line));
  return createGatewayGuard(
    {
      enabled: true,
      spendAnomaly: guard.spendAnomaly ?? false,
      repeatedRequests: guard.repeatedRequests ?? false,
      authFailures: guard.authFailures ?? false,
      abuse: guard.abuse ?? false,
      ...(guard.shedding ? { shedding: guard.shedding } : {}),
      bodyTimeout: guard.bodyTimeout ?? '10s',
      webhooks: guard.webhooks ?? [],
    },
    { stores, log },
  );
}

/** The parts made from the packages' options, in the order their dependencies ask: the guard, the meter, the budget. */
function makeParts(parts: TollgateParts, stores: TollgateStores): Chain['made'] {
  const pricing = createPricing({ models: { ...parts.providers?.models } });
  const mock = parts.providers?.upstreams ? undefined : createMockProvider();
  const providers = createProviderRouter({ ...parts.providers } as Parameters<typeof createProviderRouter>[0], {
    pricing,
    ...(mock ? { mock } : {}),
    ...(parts.providers?.env ? { env: parts.providers.env } : {}),
  });
  const guard = parts.guard ? composedGuard(parts.guard, stores) : noGatewayGuard();
  // The guard learns spend from every record: the calls', the tool calls', Realtime's and Batch's.
  const onUsage = parts.meter?.onUsage ?? guard.onUsage;
  const destination = { ...(parts.meter?.sinks ? { sinks: parts.meter.sinks } : {}), ...(onUsage ? { onUsage } : {}) };
  const metering = {
    meter: [meter({ pricing, ...parts.meter, ...(onUsage ? { onUsage } : {}) })],
    chargeToolCall: toolMeter(destination),
    chargeRealtimeResponse: realtimeMeter(pricing, destination),
    deliverRecord: usageDeliverer(parts.meter?.spool, parts.meter?.sinks ?? []),
  };
  const budget =
    parts.budget &&
    budgetGuard({
      pricing,
      // Budget events reach the guard's alerts, and a ledger that failed is one too.
      ...(guard.budgetHooks ? { onEvent: guard.budgetHooks.onEvent, renderError: guard.budgetHooks.renderError } : {}),
      ...parts.budget,
      ledger: stores.ledger,
    });
  const cache = parts.cache ? cacheStages(createResponseCache(parts.cache)) : undefined;
  return {
    ...{ storeViews: { timed: stores, limits: stores }, guard, pricing, providers, metering, budget, cache },
    close: async () => {
      await providers.close();
      await cache?.close();
      await guard.close();
      if (!parts.stores) await stores.close();
    },
  };
}

/** A route with no body to read. */
function readNoBody(_req: Request, _res: Response, next: NextFunction): void {
  next();
}

/** Who is calling, and shadow mode riding with the identity: every route that limits shadows alike. */
function authStagesOf(parts: StoredParts) {
  const { shadow } = parts;
  return authStages({
    keys: { keys: parts.stores.keys, ...parts.auth },
    withIdentity: shadowMiddleware(
      shadow === true
        ? { all: true, tiers: [], tenants: [] }
        : { all: false, tiers: shadow?.tiers ?? [], tenants: shadow?.tenants ?? [] },
      shadow === true ? undefined : shadow?.tenantShadowed,
    ),
    scope: parts.scope,
    attribution: parts.attribution,
  });
}

/**
 * Every package's stages, registered once, in the order a stage several fill runs them (the route's own key header
 * before auth). A new stage's contribution is one line here.
 */
function registerStages(parts: StoredParts, made: Chain['made']) {
  const { guard, storeViews } = made;
  const policy = parts.policy ?? {};
  // Bodies are read only once the caller is identified (no memory pinned by callers without a key).
  const readers = {
    json: providerJsonBody(parts.bodyLimit ?? '1mb'),
    form: providerFormBody(parts.uploadLimit ?? DEFAULT_UPLOAD_LIMIT),
    none: readNoBody,
  };
  const limits = limitStages({
    stores: storeViews,
    policy,
    countModels: (route) => countModelAllowlist(policy, route),
    limits: parts.limits,
    toolCalls: parts.mcp?.toolCalls,
    guard,
    budget: made.budget,
    cacheLimits: made.cache?.limits,
  });
  const stages: GatewayStages = [
    ROUTE_OWN_STAGES,
    guardStages({ ...guard, readBody: (route) => readers[route.body ?? 'json'], guardrails: parts.guardrails }),
    authStagesOf(parts),
    providerStages(),
    routerStages(made.providers),
    limits.stages,
    made.cache?.stages ?? NO_CACHE_STAGES,
    meterStages(made.metering.meter),
  ];
  return { stages, limitsAndBudget: limits.limitsAndBudget };
}

/** The chain of `parts`: each part made (or taken from `parts.made`), and the packages' stages registered. */
export function composeChain(given: TollgateParts): Chain {
  const stores = given.stores ?? createMemoryStores();
  const parts: StoredParts = { ...given, stores };
  const made = given.made ?? makeParts(given, stores);
  return { parts, stores, made, ...registerStages(parts, made) };
}
