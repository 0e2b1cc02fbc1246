// tollgate(parts): the chain in code, without a JSON config. Each part is a package's own options (apiKeyAuth's,
// tierPolicy's, meter's, budgetGuard's...); the provider and count routes are composed from the same stage list and
// builders as the gateway's (routes.ts), so a route built here runs the stages in the gateway's order.
import express from 'express';
import type { RequestHandler, Router } from 'express';
import { apiKeyAuth, attribution, requireScope } from '@tollgate/auth';
import type { ApiKeyAuthOptions, AttributionOptions } from '@tollgate/auth';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuardOptions } from '@tollgate/budget';
import { createResponseCache } from '@tollgate/cache';
import type { ResponseCacheOptions } from '@tollgate/cache';
import { apiErrorHandler, createMemoryStores, createPricing, requestContext } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { promptGuardrails } from '@tollgate/guard';
import type { GuardOptions, LoadShedderOptions, PromptGuardrailsOptions, WebhookOptions } from '@tollgate/guard';
import { meter } from '@tollgate/metering';
import type { MeterOptions } from '@tollgate/metering';
import { combineLimits, concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import type {
  ConcurrencyLimitOptions,
  LimitLayerOptions,
  StoresWithCommands,
  TieredRateLimitOptions,
  TierPolicyOptions,
  TokenRateLimitOptions,
} from '@tollgate/ratelimit';
import { countModelAllowlist } from './count-tokens-route.js';
import { createMockProvider } from '@tollgate/providers/mock';
import { createProviderRouter } from '@tollgate/router/upstreams';
import { gatewayRoutes, ROUTE_PATHS } from './routes.js';
import type { RouteParts } from './routes.js';
import { createProxyGuard, noProxyGuard } from './guard-setup.js';
import { scaled, shadowMiddleware } from './limits-setup.js';
import type { ShadowPlan } from './limits-setup.js';
import { cacheStages } from './cache-setup.js';
import { answerMethodNotAllowed } from './exchange.js';
import { DEFAULT_UPLOAD_LIMIT, providerFormBody } from './form-body.js';
import { providerJsonBody } from './json-body.js';
import { limitsInOrder } from './stages.js';

/** The guard's checks in `tollgate()`: each off unless given (as @tollgate/guard's `createGuard` takes it). */
export interface TollgateGuardParts extends Pick<
  GuardOptions,
  'spendAnomaly' | 'repeatedRequests' | 'authFailures' | 'abuse'
> {
  /** Lower tiers get 503 first when the process is saturated. @default none */
  shedding?: Omit<LoadShedderOptions, 'renderError'>;
  /** How long a body may take to arrive once the caller is identified: ms or "10s". @default '10s' */
  bodyTimeout?: number | string;
  /** Where each alert is POSTed. @default none (alerts are logged only) */
  webhooks?: WebhookOptions[];
  /** Where each alert is logged, one JSON line. @default console.warn */
  log?: (line: string) => void;
}

/** What `tollgate()` is built from: each part the options of the package that owns it, all but none required. */
export interface TollgateParts {
  /** @default in-memory stores, closed by `close()` */
  stores?: TollgateStores;
  /** @tollgate/auth `apiKeyAuth`. @default `{ keys: stores.keys }` */
  auth?: Partial<ApiKeyAuthOptions>;
  /**
   * Shadow mode: every limit and budget counted, none refusing (what each would have refused is logged and marked on
   * the answer), for every caller (`true`) or those of these tiers and tenants. @default none
   */
  shadow?: true | { tiers?: readonly string[]; tenants?: readonly string[] };
  /** @tollgate/auth `requireScope`: the scope every caller must hold. @default none */
  scope?: string;
  /** @tollgate/auth `attribution`: who each call is for. @default from the key only */
  attribution?: AttributionOptions;
  /** @tollgate/ratelimit `tierPolicy`: each tier's models and output cap. @default every model */
  policy?: TierPolicyOptions;
  /** @tollgate/guard `promptGuardrails`. @default none */
  guardrails?: PromptGuardrailsOptions;
  /**
   * @tollgate/guard's checks at their stages: address blocks and auth floods before auth (`guardAdmit`), shedding and
   * the body deadline after it (`bodyGuard`), suspended keys and tenants after the estimate, repeated requests with the
   * request limits; the meter's records feed its spend and abuse models, budget events reach its alerts. @default none
   */
  guard?: TollgateGuardParts;
  /** @tollgate/metering `meter`. @default priced by the built-in catalogue, no sink */
  meter?: MeterOptions;
  /** @tollgate/ratelimit's limiters, on `stores`, fused with the budget in one round trip. @default none */
  limits?: {
    requests?: Omit<TieredRateLimitOptions, 'stores'>;
    tokens?: Omit<TokenRateLimitOptions, 'stores'>;
    concurrency?: Omit<ConcurrencyLimitOptions, 'stores'>;
  };
  /** @tollgate/budget `budgetGuard`, on `stores.ledger`. @default none */
  budget?: Omit<BudgetGuardOptions, 'ledger'>;
  /** @tollgate/cache `createResponseCache`. @default none */
  cache?: ResponseCacheOptions;
  /** Where calls go: the config's `upstreams` and `models` sections. @default the built-in mock provider */
  providers?: Pick<Parameters<typeof createProviderRouter>[0], 'upstreams' | 'models'> & { env?: NodeJS.ProcessEnv };
  /** The largest request body. @default '1mb' */
  bodyLimit?: string | number;
  /** The most bytes of a multipart upload (transcriptions), read whole before the call. @default '25mb' */
  uploadLimit?: string | number;
}

/** What `tollgate()` returns: an Express router to mount, and the close of what it made. */
export interface TollgateRouter extends Router {
  readonly stores: TollgateStores;
  /** Ends the upstream calls, then closes what `tollgate()` made (the stores too, when it made them). */
  close(): Promise<void>;
}

/**
 * The provider and count routes of every adapter, composed from the stage list, from the packages' own options.
 * `app.use(tollgate({ ... }))`; errors are answered in the API's shape.
 */
export function tollgate(parts: TollgateParts = {}): TollgateRouter {
  const stores = parts.stores ?? createMemoryStores();
  const pricing = createPricing({ models: { ...parts.providers?.models } });
  const mock = parts.providers?.upstreams ? undefined : createMockProvider();
  const providers = createProviderRouter({ ...parts.providers } as Parameters<typeof createProviderRouter>[0], {
    pricing,
    ...(mock ? { mock } : {}),
    ...(parts.providers?.env ? { env: parts.providers.env } : {}),
  });
  const guarding = parts.guard ? composedGuard(parts.guard, stores) : noProxyGuard();
  const withStores = { stores: stores as StoresWithCommands };
  // The guard's repeat count rides with the request limits (one store round trip); its throttle scales their layers.
  const throttled = <O extends { layers?: LimitLayerOptions[] | undefined }>(options: O): O =>
    options.layers && guarding.limitScale
      ? { ...options, layers: scaled(options.layers, guarding.limitScale) }
      : options;
  const requestLimits = [
    ...guarding.limitChecks,
    ...(parts.limits?.requests ? [tieredRateLimit({ ...throttled(parts.limits.requests), ...withStores })] : []),
  ];
  const budgetOptions = parts.budget && {
    pricing,
    ...(guarding.budgetHooks ? { alerts: guarding.budgetHooks } : {}),
    ...parts.budget,
    ledger: stores.ledger,
  };
  const limiters = limitsInOrder({
    requests: requestLimits,
    tokens: parts.limits?.tokens ? [tokenRateLimit({ ...throttled(parts.limits.tokens), stores })] : [],
    concurrency: parts.limits?.concurrency ? [concurrencyLimit({ ...parts.limits.concurrency, stores })] : [],
    budget: budgetOptions ? [budgetGuard(budgetOptions)] : [],
  });
  const shadow: ShadowPlan =
    parts.shadow === true
      ? { all: true, tiers: [], tenants: [] }
      : { all: false, tiers: parts.shadow?.tiers ?? [], tenants: parts.shadow?.tenants ?? [] };
  const pass: RequestHandler = (_req, _res, next) => next();
  const cache = parts.cache ? cacheStages(createResponseCache(parts.cache)) : undefined;
  const policy = parts.policy ?? {};
  const routeParts: RouteParts = {
    guarding,
    auth: [apiKeyAuth({ keys: stores.keys, ...parts.auth }), ...shadowMiddleware(shadow)],
    readProviderBody: providerJsonBody(parts.bodyLimit ?? '1mb'),
    readUploadBody: providerFormBody(parts.uploadLimit ?? DEFAULT_UPLOAD_LIMIT),
    permissions: parts.scope ? [requireScope(parts.scope)] : [],
    attribution: [attribution(parts.attribution ?? {})],
    tierPolicy: tierPolicy(policy),
    countModels: (route) => countModelAllowlist(policy, route),
    guardrails: parts.guardrails ? [promptGuardrails(parts.guardrails)] : [],
    responseCache: cache,
    meter: [meter({ pricing, ...(guarding.onUsage ? { onUsage: guarding.onUsage } : {}), ...parts.meter })],
    requestLimits,
    limitsAndBudget: limiters.length > 0 ? combineLimits(...limiters) : pass,
    pricing,
    providers,
  };
  const router = express.Router({ caseSensitive: true, strict: true }) as unknown as TollgateRouter;
  router.use(requestContext());
  for (const { paths, handlers } of gatewayRoutes(routeParts)) for (const path of paths) router.post(path, ...handlers);
  router.all([...ROUTE_PATHS], answerMethodNotAllowed);
  router.use(apiErrorHandler());
  Object.defineProperty(router, 'stores', { value: stores, enumerable: true });
  router.close = async () => {
    await providers.close();
    await cache?.close();
    await guarding.close();
    if (!parts.stores) await stores.close();
  };
  return router;
}

/** The guard as the gateway runs it, from the composer's options: a check not given is off. */
function composedGuard(guard: TollgateGuardParts, stores: TollgateStores) {
  const log = guard.log ?? ((line: string) => console.warn(line));
  return createProxyGuard(
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
