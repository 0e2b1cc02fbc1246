// The one assembly of the chain: its parts made once from tollgate()'s parts (or taken as a deployment made them),
// the limits fused once, the routes' parts built once, and every route mounted from them (route-mount.ts). tollgate()
// and createGateway both mount through it.
import type { RequestHandler } from 'express';
import { apiKeyAuth, attribution, requireScope } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import { createResponseCache } from '@tollgate/cache';
import { createMemoryStores, createPricing } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { promptGuardrails } from '@tollgate/guard';
import { meter, realtimeMeter, toolMeter, usageDeliverer } from '@tollgate/metering';
import { createMockProvider } from '@tollgate/providers/mock';
import { combineLimits, concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import type { LimitLayerOptions, StoresWithCommands } from '@tollgate/ratelimit';
import { createProviderRouter } from '@tollgate/router/upstreams';
import type { TollgateGuardParts, TollgateMadeParts, TollgateParts } from './tollgate-parts.js';
import { cacheStages } from './cache-setup.js';
import { countModelAllowlist } from './count-tokens-route.js';
import { DEFAULT_UPLOAD_LIMIT, providerFormBody } from './form-body.js';
import { createGatewayGuard, noGatewayGuard } from './guard-setup.js';
import { providerJsonBody } from './json-body.js';
import { scaled, shadowMiddleware } from './limits-setup.js';
import type { RouteParts } from './routes.js';
import { limitsInOrder } from './stages.js';

/** tollgate()'s parts with the stores they run on (theirs, or memory stores the chain made). */
type StoredParts = TollgateParts & { stores: TollgateStores };

/** What the routes are mounted from: the parts made once, the stages built from them, and the close of both. */
export interface Chain {
  readonly parts: StoredParts;
  readonly stores: TollgateStores;
  readonly made: Omit<TollgateMadeParts, 'budget'> & { budget: TollgateMadeParts['budget'] | undefined };
  /** The provider and count routes' parts: every other route kind is built from them too. */
  readonly routeParts: RouteParts;
  /** The MCP tool calls' limits and budget, fused: their `limitsAndBudget` stage. */
  readonly toolCallLimits: RequestHandler;
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
    middleware: [meter({ pricing, ...parts.meter, ...(onUsage ? { onUsage } : {}) })],
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

/**
 * Every limiter once, fused by combineLimits in the one order (limitsInOrder: their store calls share one round trip,
 * a refusal gives back what the others took): a call's limits and budget, a count's request limits, a tool call's.
 */
function fuseLimits(parts: TollgateParts, made: Chain['made']) {
  const { guard, budget, storeViews } = made;
  const limits = parts.limits ?? {};
  const limitStores = { stores: storeViews.limits as StoresWithCommands };
  // The guard's throttle shrinks each caller's own layers; its repeat count rides with the request limits.
  const throttled = <O extends { layers?: LimitLayerOptions[] | undefined }>(options: O): O =>
    options.layers && guard.limitScale ? { ...options, layers: scaled(options.layers, guard.limitScale) } : options;
  const requestLimits = [
    ...guard.limitChecks,
    ...(limits.requests ? [tieredRateLimit({ ...throttled(limits.requests), ...limitStores })] : []),
  ];
  const budgets = budget ? [budget] : [];
  const fused = (handlers: RequestHandler[]): RequestHandler =>
    handlers.length > 0 ? combineLimits(...handlers) : (_req, _res, next) => next();
  const toolCalls = parts.mcp?.toolCalls;
  return {
    requestLimits: requestLimits.length > 0 ? combineLimits(...requestLimits) : undefined,
    limitsAndBudget: fused(
      limitsInOrder({
        requests: requestLimits,
        tokens: limits.tokens ? [tokenRateLimit({ ...throttled(limits.tokens), ...limitStores })] : [],
        concurrency: limits.concurrency ? [concurrencyLimit({ ...limits.concurrency, stores: storeViews.timed })] : [],
        budget: budgets,
      }),
    ),
    // A tool call's cost is its price: no token estimate, token limit or request limit.
    toolCallLimits: fused(
      limitsInOrder({
        requests: [
          ...guard.limitChecks,
          ...(toolCalls ? [tieredRateLimit({ ...throttled(toolCalls), ...limitStores })] : []),
        ],
        tokens: [],
        concurrency: [],
        budget: budgets,
      }),
    ),
  };
}

/** The one place the routes' parts are built: every route kind's stages come from these. */
function chainRouteParts(parts: StoredParts, made: Chain['made'], limits: ReturnType<typeof fuseLimits>) {
  const { stores } = parts;
  const shadow = parts.shadow;
  const policy = parts.policy ?? {};
  const routeParts: RouteParts = {
    guarding: made.guard,
    // Shadow mode rides with the caller's identity: every route that limits shadows alike.
    auth: [
      apiKeyAuth({ keys: stores.keys, ...parts.auth }),
      ...shadowMiddleware(
        shadow === true
          ? { all: true, tiers: [], tenants: [] }
          : { all: false, tiers: shadow?.tiers ?? [], tenants: shadow?.tenants ?? [] },
        shadow === true ? undefined : shadow?.tenantShadowed,
      ),
    ],
    // Bodies are read only once the caller is identified (no memory pinned by callers without a key).
    readProviderBody: providerJsonBody(parts.bodyLimit ?? '1mb'),
    readUploadBody: providerFormBody(parts.uploadLimit ?? DEFAULT_UPLOAD_LIMIT),
    permissions: parts.scope ? [requireScope(parts.scope)] : [],
    attribution: [attribution(parts.attribution ?? {})],
    tierPolicy: tierPolicy(policy),
    countModels: (route) => countModelAllowlist(policy, route),
    guardrails: parts.guardrails ? [promptGuardrails(parts.guardrails)] : [],
    responseCache: made.cache,
    meter: made.metering.middleware,
    requestLimits: limits.requestLimits,
    limitsAndBudget: limits.limitsAndBudget,
    pricing: made.pricing,
    providers: made.providers,
  };
  return routeParts;
}

/** The chain of `parts`: each part made (or taken from `parts.made`), the limits fused, the routes' parts built. */
export function composeChain(given: TollgateParts): Chain {
  const stores = given.stores ?? createMemoryStores();
  const parts: StoredParts = { ...given, stores };
  const made = given.made ?? makeParts(given, stores);
  const limits = fuseLimits(parts, made);
  const chain: Chain = {
    parts,
    stores,
    made,
    routeParts: chainRouteParts(parts, made, limits),
    toolCallLimits: limits.toolCallLimits,
  };
  return chain;
}
