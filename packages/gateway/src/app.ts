// createGateway: the whole chain, in its one order, as an Express router built from a validated config; createProxyApp:
// the same as an Express app of its own (what the example proxy and `tollgate-gateway` serve).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import express from 'express';
import type { Express, NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { budgetAdminRouter } from '@tollgate/budget';
import { combineLimits } from '@tollgate/ratelimit';
import { keyRecordsFromConfig } from '@tollgate/auth';
import {
  ApiError,
  apiErrorHandler,
  createMemoryStores,
  createPricing,
  getContext,
  tapResponse,
  renderApiError,
} from '@tollgate/core';
import type { Pricing, ProviderApi, TollgateStores } from '@tollgate/core';
import { preloadTokenizers } from '@tollgate/providers';
import { providerAdapters } from '@tollgate/providers/kit';
import { migrateUsageLedger, serveLedger } from '@tollgate/metering';
import type { SpoolReplay } from '@tollgate/metering';
import type { PromptGuardrailsOptions } from '@tollgate/guard';
import { dashboard } from '@tollgate/dashboard';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { accessLog, createProxyLog, storeFailureReporter } from './access-log.js';
import type { AccessLog, ProxyLog } from './access-log.js';
import { adminKeyAuth } from './admin-auth.js';
import { adminKeysRouter } from './admin-keys-router.js';
import { attributionMiddleware, authMiddleware, createKeyLookup, permissionMiddleware } from './auth-setup.js';
import { createBudgetGuard } from './budget-setup.js';
import { createProxyCache } from './cache-setup.js';
import { servableConfig } from './config.js';
import type { KeyConfig, ProxyConfig } from './config.js';
import {
  concurrencyMiddleware,
  dashboardQuotas,
  requestLimitMiddleware,
  shadowMiddleware,
  tierPolicyMiddleware,
  tokenLimitMiddleware,
} from './limits-setup.js';
import type { StoreFailureHandlers } from './limits-setup.js';
import { COUNT_ROUTES, tokenCountRoutes } from './count-tokens-route.js';
import { JSON_BODY_TYPES, providerJsonBody } from './json-body.js';
import { createProxyGuard, createProxyGuardrails } from './guard-setup.js';
import { createMetering } from './metering-setup.js';
import { createMcpGateway } from './mcp-gateway.js';
import { createMockProvider } from './mock-provider.js';
import type { MockProvider } from './mock-provider.js';
import { modelsRoute } from './models-route.js';
import { ledgerLocation, outcomesRoute } from './outcomes-route.js';
import { createProviderRouter } from './provider-routing.js';
import { registerRoutingMetrics } from './routing-metrics.js';
import { createProxyMetrics } from './proxy-metrics.js';
import { validateProviderRequest } from './request-validation.js';
import { providerRouteStages } from './route-methods.js';
import type { RouteStages } from './route-methods.js';
import { securityHeaders } from './security-headers.js';
import { timeResponse } from './server-timing.js';
import { blockedStores, outageStores } from './outage-setup.js';
import { keepSpend } from './spend-rebuild.js';
import { embeddedLedgerLocation, holdDataDir, keysKeptIn } from './data-dir.js';
import { storesAnswer } from './stores.js';
import { writeKeyNames } from './key-file-checks.js';
import { createConfigFileStates, keysFromChangedConfig } from './config-file-state.js';
import type { ConfigFileReload, ConfigFileStates } from './config-file-state.js';
import { timedStores } from './timed-stores.js';

export interface ProxyDeps {
  /** Shared stores; the caller keeps ownership. @default in-memory stores owned (and closed) by the app */
  stores?: TollgateStores;
  /** The mock served when the config has no `upstreams`. @default a fresh createMockProvider() */
  mock?: MockProvider;
  /** Where upstream keys are read from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Operator log lines (never secrets). @default console.error */
  log?: (line: string) => void;
  /**
   * The access and error log (pino): one line per request, upstream and store failures at error
   * level. The caller keeps ownership. @default pino as the config's `log` says (info, to stderr)
   */
  logger?: Logger;
  /**
   * Prometheus metrics: the usage sink's and the proxy's (responses, refusals, upstream calls,
   * store calls, budgets) at `GET /metrics`. `false` leaves them all out. @default true
   */
  metrics?: boolean;
  /**
   * Times each store call for `tollgate_store_call_duration_seconds` (with metrics on). Memory stores answer
   * in well under a microsecond, less than timing them costs (bench/RESULTS.md §14): they are not timed.
   * @default true for remote stores (Redis), false for memory stores (`stores.kind === 'memory'`)
   */
  timeStoreCalls?: boolean;
  /**
   * Where the span of each provider call goes (OpenTelemetry GenAI conventions); `false` makes none.
   * @default the global tracer provider's: a no-op until an SDK registers one (`pnpm start` does when OTEL_* variables ask)
   */
  tracer?: Tracer | false;
  /**
   * What the config cannot hold, for the prompt guardrails (`promptGuardrails` of @tollgate/guard): a team's own
   * prompt `check` (with its `checkTimeout`) and the `onAnswerText` hook. Given, the guardrails run on every provider
   * route, with the config's `guardrails` rules or none. @default none
   */
  guardrails?: Pick<PromptGuardrailsOptions, 'check' | 'checkTimeout' | 'onAnswerText'>;
}

/** What a gateway holds beside its routes: its stores, and the calls an operator's process makes around them. */
export interface GatewayControls {
  /** The stores the app uses. */
  readonly stores: TollgateStores;
  /**
   * Replaces the config's keys while running (new, rotated, revoked or expired keys count on the
   * next request). Other config changes need a restart.
   */
  reloadKeys(keys: readonly KeyConfig[]): void;
  /**
   * Takes the changed text of the config file at `path` (`tollgate-gateway` re-reads it every second): its keys when
   * the whole file validates (other changes need a restart); when it does not, only what it takes away (revocations,
   * expiries, deletions), said at error level, on /healthz (degraded) and by `tollgate_config_file_valid`.
   */
  reloadConfigFile(text: string, path: string): ConfigFileReload;
  /** Writes out what the usage sinks hold (the usage log and the ledger are batched). */
  flushUsage(): Promise<void>;
  /**
   * Resolves once the usage spool (on with a usage log or a ledger) wrote to the sinks what a proxy
   * that died left in it; started when the app is made. `pnpm start` listens only after it.
   */
  replayUsage(): Promise<SpoolReplay | undefined>;
  /**
   * Resolves once budget spend Redis lost (a restart without persistence) was rebuilt from the
   * SQL usage ledger (at once without Redis or a ledger), and the guard's suspensions, throttles
   * and blocks in force are loaded. `pnpm start` listens only after it.
   */
  spendReady(): Promise<void>;
  /**
   * Ends the upstream calls still running (after a short grace), then flushes and closes the sinks
   * and releases what the app owns (stores it created, upstream connections, timers).
   */
  close(): Promise<void>;
}

/**
 * The gateway as an Express router: `app.use(createGateway(config))` serves the provider routes, `/healthz`,
 * `/metrics`, `/v1/models`, the admin routes and the dashboard, with the whole chain in its one order. Its routes
 * match case-sensitively and strictly (`/v1/messages/` is not `/v1/messages`). The host app's `trust proxy` setting
 * says which client address the guard sees (createProxyApp sets it from the config's `trustProxy`).
 */
export interface Gateway extends Router, GatewayControls {
  /**
   * What every exchange gets first (the context, security headers, the end's observer).
   * The router does it itself; an app that calls it before Express swaps the prototypes of `req` and `res` saves
   * V8 a new hidden class per field (createProxyApp does).
   */
  prepare(req: IncomingMessage, res: ServerResponse): void;
}

/** The gateway as an Express app of its own. */
export interface ProxyApp extends Express, GatewayControls {}

/** Express's entry point, called with Node's own request and response for each exchange. */
interface ExpressHandle {
  handle(req: IncomingMessage, res: ServerResponse, done?: (error?: unknown) => void): void;
}

interface ProviderRoute extends RouteStages {
  path: string;
  api: ProviderApi;
}

/** Every API whose adapter names a route, at its path, with what its path and headers add (`route.methods`...). */
const PROVIDER_ROUTES: readonly ProviderRoute[] = providerAdapters().flatMap((adapter) =>
  adapter.route ? [{ path: adapter.route.path, api: adapter.api, ...providerRouteStages(adapter) }] : [],
);

/** What Express's router and the body reader set on each request, and Express on each response. */
interface ExpressFields {
  next?: unknown;
  baseUrl?: string;
  originalUrl?: string;
  _parsedUrl?: unknown;
  route?: unknown;
  params?: unknown;
  body?: unknown;
}

/**
 * Gives a request and its response, before Express swaps their prototypes, the fields Express sets on
 * them after, each with the value its readers take an absent field for (Node's own defaults for the
 * status): Express then writes to fields the objects already have, instead of adding them one by one
 * to objects whose prototype changed, a new hidden class each (docs/performance.md).
 */
function presetExpressFields(req: IncomingMessage & ExpressFields, res: ServerResponse & { locals?: object }): void {
  // Through another Express app already (this one mounted in it): the fields are there, with their values.
  if (req.originalUrl !== undefined) return;
  req.next = undefined;
  req.baseUrl = undefined;
  req.originalUrl = undefined;
  req._parsedUrl = undefined;
  req.route = undefined;
  req.params = undefined;
  req.body = undefined;
  res.locals = Object.create(null) as object;
  res.statusCode = 200;
  (res as { statusMessage?: string }).statusMessage = undefined;
}

/** A provider path asked with another method than POST. */
function answerMethodNotAllowed(req: Request, res: Response): void {
  const message = `${req.method} is not allowed on ${req.path.slice(0, 200)}: use POST.`;
  renderApiError(new ApiError('method_not_allowed', message, { headers: { allow: 'POST' } }), req, res);
}

/**
 * What every exchange gets first, before Express swaps the prototypes of req and res: a property set on them after
 * that costs V8 a new hidden class each time, before it almost nothing (docs/performance.md). Express's own fields,
 * the context, the response's tap (its write and end) and its timed writeHead (Server-Timing) are set here, and
 * helmet's headers; `preparedBy` marks the exchanges this gateway prepared.
 */
function exchangePreparer(
  preparedBy: symbol,
  access: AccessLog | undefined,
  countResponse: ((req: Request, res: Response) => void) | undefined,
  log: (line: string) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  const setSecurityHeaders = securityHeaders();
  // A 'close' listener shared by every response (it is called with the response as `this`): none made per exchange.
  const observeEnd =
    access || countResponse
      ? function observeEnd(this: ServerResponse) {
          const res = this as Response;
          try {
            countResponse?.(res.req, res);
            access?.end(res.req, res);
          } catch (error) {
            // The log and the counts are never the request's business.
            log(
              `tollgate proxy: observing a response failed: ${error instanceof Error ? error.message : String(error)}`,
            );
          }
        }
      : undefined;
  return function prepare(req: IncomingMessage, res: ServerResponse): void {
    // Each piece of the chain (context, meter, limits, slots, budget, upstream call) watches the response's
    // end: more 'close' listeners than Node's default of 10 are expected here, not a leak to warn about.
    res.setMaxListeners(32);
    const context = getContext(req, res);
    context.set('gateway.preparedBy', preparedBy);
    tapResponse(req, res);
    timeResponse(context, res);
    setSecurityHeaders(res);
    if (observeEnd) {
      // One listener for the access line and the counts. on, not once: 'close' comes once per response.
      res.on('close', observeEnd);
    }
  };
}

/**
 * The stores as each part uses them: timed for the metrics (the middlewares; the app's own checks, health and the
 * spend marker, use the stores themselves), and, for the limits and the budget, behind a lease (or failOpen) when the
 * config says what to do while Redis is out, and in blocks on Redis.
 */
function layeredStores(
  config: ProxyConfig,
  stores: TollgateStores,
  metrics: ReturnType<typeof createProxyMetrics> | undefined,
  deps: ProxyDeps,
  log: (line: string) => void,
) {
  const timeStoreCalls = deps.timeStoreCalls ?? stores.kind !== 'memory';
  const observedStores = metrics && timeStoreCalls ? timedStores(stores, metrics.storeTimer) : stores;
  const leased = outageStores(config.storeOutage, observedStores, log);
  const blocked = blockedStores(config.redis?.blocks, leased ?? observedStores);
  return { observedStores, leased, blocked, limitStores: blocked ?? leased ?? observedStores };
}

/** The gateway's parts, which its routes are built from. */
interface GatewayParts {
  config: ProxyConfig;
  stores: TollgateStores;
  observedStores: TollgateStores;
  limitStores: TollgateStores;
  storeFailures: StoreFailureHandlers;
  pricing: Pricing;
  providers: ReturnType<typeof createProviderRouter>;
  blocked: ReturnType<typeof blockedStores>;
  metering: ReturnType<typeof createMetering>;
  guarding: ReturnType<typeof createProxyGuard>;
  budget: ReturnType<typeof createBudgetGuard>;
  responseCache: ReturnType<typeof createProxyCache>;
  identify: RequestHandler[];
  configKeys: () => ReturnType<typeof keyRecordsFromConfig>;
  /** The files the gateway re-reads, and whether their last change was taken whole. */
  configFiles: ConfigFileStates;
  /** The chain's limiters, combined: the dashboard reads their quotas. */
  limits: RequestHandler;
}

/** What the chain after auth is built from. */
type ChainParts = Pick<
  GatewayParts,
  'limitStores' | 'observedStores' | 'storeFailures' | 'guarding' | 'budget' | 'metering' | 'responseCache'
> & { guardrails: RequestHandler[] };

/**
 * The provider routes' chain after auth: body checks, scope, attribution and tier rules, prompt guardrails, the estimate, then the limits and the
 * budget fused by combineLimits (their Redis calls share one round trip; a refusal by one gives back what the others
 * took). Built once and shared by the provider routes, so one limiter instance counts all of them.
 */
function limitAndReserveChain(
  config: ProxyConfig,
  parts: ChainParts,
): { chain: RequestHandler[]; limits: RequestHandler; requestLimits: RequestHandler[] } {
  const { limitStores, observedStores, storeFailures, guarding, budget, metering, responseCache, guardrails } = parts;
  const requestLimits = [
    ...guarding.limitChecks,
    ...requestLimitMiddleware(config, limitStores, storeFailures, guarding.limitScale),
  ];
  const limits = combineLimits(
    ...requestLimits,
    ...tokenLimitMiddleware(config, limitStores, storeFailures, guarding.limitScale),
    ...concurrencyMiddleware(config, observedStores, storeFailures),
    budget,
  );
  const chain = [
    ...permissionMiddleware(config),
    // Who the call is for (key, headers, the declared call's body): refused here when required and missing.
    ...attributionMiddleware(config),
    tierPolicyMiddleware(config),
    // Prompts checked (and masked) before the cache's key, the estimate, the limits and the budget read them.
    ...guardrails,
    // A memory cache looks up here: scope, models and tier rules apply to a hit, the estimate does not (cache-setup.ts).
    ...(responseCache ? [responseCache.beforeEstimate] : []),
    ...metering.middleware,
    ...guarding.afterEstimate,
    // With a response cache, a hit passes the request limits only (cache-setup.ts).
    ...(responseCache ? responseCache.around(limits, requestLimits) : [limits]),
  ];
  return { chain, limits, requestLimits };
}

/** What the operator routes are built from. */
type OperatorParts = Pick<
  GatewayParts,
  | 'config'
  | 'stores'
  | 'observedStores'
  | 'pricing'
  | 'providers'
  | 'blocked'
  | 'metering'
  | 'guarding'
  | 'budget'
  | 'identify'
  | 'configKeys'
  | 'limits'
  | 'configFiles'
>;

/** Health, metrics, models, outcomes, and (with an admin key) the admin API and the dashboard. */
function mountOperatorRoutes(router: Router, parts: OperatorParts): void {
  const { config, stores, observedStores, pricing, providers, blocked, metering, guarding, budget, identify } = parts;
  const configKeys = parts.configKeys;
  // Healthy only once the encoding of current models is loaded: before, their estimates run several times high (a
  // byte bound). Older models' encoding loads when one is first asked for.
  let tokenizersReady = false;
  void preloadTokenizers(['o200k_base']).then(() => (tokenizersReady = true));
  // 503 only when this process cannot serve (starting, its store out): an upstream that does not answer is every
  // process's, so it is reported as `degraded` with a 200 that keeps the load balancer sending the routes that work.
  router.get('/healthz', async function reportHealth(_req: Request, res: Response) {
    const storeOk = await storesAnswer(stores);
    const unavailable = providers.unavailable();
    const upstreamsOk = unavailable.upstreams.length === 0 && unavailable.modelGroups.length === 0;
    const serving = storeOk && tokenizersReady;
    const filesFailing = parts.configFiles.failing();
    res.status(serving ? 200 : 503).json({
      status: !tokenizersReady ? 'starting' : serving && upstreamsOk && filesFailing.length === 0 ? 'ok' : 'degraded',
      ...(upstreamsOk ? {} : { unavailable }),
      ...(filesFailing.length === 0 ? {} : { configFiles: filesFailing }),
      store: stores.kind,
      storeOk,
      tokenizers: tokenizersReady ? 'ready' : 'loading',
      ...(stores.kind === 'redis' ? { redis: storeOk ? 'ok' : 'down' } : {}),
      upstreams: providers.names,
      ...(providers.routes ? { routing: providers.routes.health() } : {}),
      ...(blocked ? { blocks: blocked.blocks.open() } : {}),
    });
  });
  // Metrics name tenants and their spend: behind the admin key, open only when the config says so, else not served.
  const adminOnly = config.adminKeySha256 ? [...guarding.beforeAuth, adminKeyAuth(config.adminKeySha256)] : [];
  if (metering.metricsHandler && config.metrics?.public) router.get('/metrics', metering.metricsHandler);
  else if (metering.metricsHandler && config.adminKeySha256)
    router.get('/metrics', ...adminOnly, metering.metricsHandler);

  router.get('/v1/models', ...guarding.beforeAuth, ...identify, modelsRoute(config, pricing));
  // Outcomes (for cost per outcome) behind the caller's own key: attached to its tenant's requests only.
  router.post(
    '/v1/outcomes',
    ...identify,
    outcomesRoute({ ledger: metering.ledger, location: ledgerLocation(config), flushUsage: () => metering.flush() }),
  );

  if (config.adminKeySha256) {
    const admin = express.Router();
    admin.use(...adminOnly);
    admin.use('/budgets', budgetAdminRouter(budget));
    admin.use('/keys', adminKeysRouter(config, configKeys, observedStores.keys));
    if (guarding.adminRouter) admin.use('/guard', guarding.adminRouter);
    router.use('/admin', admin);
    router.use(
      '/dashboard',
      dashboard({
        adminKeySha256: config.adminKeySha256,
        budgets: budget,
        keys: observedStores.keys,
        configKeys: configKeys,
        ...(metering.ledger ? { ledger: metering.ledger } : {}),
        ...(config.postgresTable || config.postgresSchema
          ? {
              ledgerTable: {
                ...(config.postgresTable ? { table: config.postgresTable } : {}),
                ...(config.postgresSchema ? { schema: config.postgresSchema } : {}),
              },
            }
          : {}),
        tenants: Object.keys(config.tenants ?? {}),
        tiers: Object.keys(config.tiers ?? {}),
        ...(config.timezone ? { timezone: config.timezone } : {}),
        limits: dashboardQuotas(config, parts.limits, async () => [
          ...configKeys(),
          ...(await observedStores.keys.list()),
        ]),
      }),
    );
  }
}

/** The last handler: an error nothing else answered is a 500 in the API's shape, logged, its stack never sent. */
function unexpectedErrorHandler(logging: boolean, log: (line: string) => void) {
  return function answerUnexpectedError(error: unknown, req: Request, res: Response, _next: NextFunction) {
    // The access line carries it; without an access log, the operator log does.
    getContext(req, res).set('gateway.unexpectedError', error instanceof Error ? error : new Error(String(error)));
    if (!logging)
      log(
        `tollgate proxy: unexpected error on ${req.method} ${req.path.slice(0, 200)}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res
      .status(500)
      .json({ error: { message: 'Internal proxy error.', type: 'server_error', code: 'internal_error', param: null } });
  };
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The gateway that prepared the exchange (its app before Express took it, or its router). */
    'gateway.preparedBy': symbol;
  }
}

/**
 * Throws a ConfigError listing every problem when `config` would not start `tollgate-gateway --config` (its fields,
 * names across them, each upstream's `apiKeyEnv` set in `deps.env`).
 */
export function createGateway(input: ProxyConfig, deps: ProxyDeps = {}): Gateway {
  const config = servableConfig(input, deps.env ?? process.env);
  const log = deps.log ?? ((line: string) => console.error(line));
  const proxyLog: ProxyLog = deps.logger
    ? { logger: deps.logger, flush: async () => undefined, close: async () => undefined }
    : createProxyLog(config.log, log);
  const { logger } = proxyLog;
  const logging = logger.level !== 'silent';
  const ownsStores = deps.stores === undefined;
  // Held first, released last: the ledger in it opens in one process at a time.
  const dataDir = config.dataDir === undefined ? undefined : holdDataDir(config.dataDir);
  // What keys written to its keys.json may name, for `tollgate keys` to check them as this gateway does.
  if (dataDir) writeKeyNames(dataDir.dir, config);
  const configFiles = createConfigFileStates({
    error: (line) => (logging ? logger.error(line) : log(line)),
    info: (line) => (logging ? logger.info(line) : log(line)),
  });
  const kept = dataDir && keysKeptIn(dataDir, deps.stores ?? createMemoryStores(), configFiles);
  const stores = kept ? kept.stores : (deps.stores ?? createMemoryStores());
  // The response cache (see cache-setup.ts), made first: a cache the stores cannot hold stops the start before anything runs.
  const responseCache = createProxyCache(config, stores, log);
  const pricing = createPricing({ models: { ...config.models } });
  const mock = config.upstreams ? undefined : (deps.mock ?? createMockProvider());
  // The guard sits at several points of the chain (docs/architecture.md); it learns spend from the meter's usage records.
  const guarding = createProxyGuard(config, { stores, env: deps.env ?? process.env, log });
  const metering = createMetering(config, pricing, {
    metrics: deps.metrics,
    ...(deps.tracer === undefined ? {} : { tracer: deps.tracer }),
    ...(guarding.onUsage ? { onUsage: guarding.onUsage } : {}),
    ...(deps.env ? { env: deps.env } : {}),
  });
  const metrics =
    metering.registry &&
    createProxyMetrics(metering.registry, {
      report: (error) => logger.error({ err: error }, 'budget gauges: the ledger did not answer'),
      tenants: Object.keys(config.tenants ?? {}),
    });
  metrics?.watchMitigations(guarding.mitigations);
  metrics?.watchConfigFiles(() => configFiles.all());
  const { observedStores, leased, blocked, limitStores } = layeredStores(config, stores, metrics, deps, log);
  const storeFailures = (layer: string) =>
    guarding.alertStoreDown(
      layer,
      storeFailureReporter(logger, layer, metrics ? metrics.storeFailure : () => undefined),
    );
  const providers = createProviderRouter(config, {
    mock,
    pricing,
    env: deps.env,
    ...(metrics ? { observeUpstream: metrics.upstreamCall } : {}),
    // A routed request that moves to another target re-prices its reservation (the budget is made just below).
    reprice: (req, res) => budget.reprice(req, res),
    onRouteEvent: (event) => logger.warn({ route: event }, `routing: ${event.type} ${event.target}`),
    onBreakerOpen: (target, reason) => {
      logger.error({ target, reason }, `routing: the circuit breaker of ${target} opened`);
      guarding.breakerOpen(target, reason);
    },
  });
  if (metering.registry && providers.routes) registerRoutingMetrics(metering.registry, providers.routes);
  const budget = createBudgetGuard(config, limitStores, pricing, log, {
    ledger: metering.ledger,
    ...(guarding.budgetHooks ? { alerts: guarding.budgetHooks } : {}),
    // A model group's request whose target's model budget is spent moves to the group's next target.
    ...(providers.routes ? { onModelBudgetSpent: providers.routes.skipSpentModel } : {}),
  });
  metrics?.watchBudgets(budget);
  // The embedded ledger in the data directory, served to `tollgate report --data-dir` while this process holds it:
  // its table made first, so a reader before the first record finds an empty ledger rather than none.
  const embedded = metering.embedded;
  const ledgerServed =
    dataDir && embedded && resolve(embeddedLedgerLocation(config) ?? '') === dataDir.layout.ledger
      ? migrateUsageLedger(embedded)
          .then(() => serveLedger(embedded, dataDir.layout.socket))
          .catch((error: unknown) => {
            log(
              `tollgate proxy: \`tollgate report --data-dir\` cannot read this running proxy's ledger: ${error instanceof Error ? error.message : String(error)}`,
            );
            return undefined;
          })
      : undefined;
  // Rebuilt after the spool's replay, so the records of a proxy that died are in the ledger first.
  const spend = keepSpend(
    config,
    limitStores,
    budget,
    metering.ledger,
    async () => {
      await metering.replay();
      await metering.flush();
    },
    log,
  );
  // In this order: the upstream calls end (and settle), then the budget, then the usage is written, the log flushed, then the stores close.
  const closers: (() => Promise<void> | void)[] = [
    () => providers.close(),
    async () => {
      await budget.close();
      // Blocks go back once every request settled, then what the leases granted goes to Redis.
      await blocked?.blocks.retireAll();
      await leased?.lease.close();
    },
    () => spend?.close(),
    async () => (await ledgerServed)?.close(),
    () => metering.close(),
    () => guarding.close(),
    () => proxyLog.close(),
    ...(responseCache ? [() => responseCache.close()] : []),
    ...(ownsStores ? [() => stores.close()] : []),
    () => kept?.keys?.close(),
    () => dataDir?.release(),
  ];

  // The order of docs/architecture.md: auth -> tieredRateLimit -> meter (estimate) -> tokenRateLimit -> budgetGuard -> handler,
  // with the limits and the budget fused by combineLimits after the estimate: their Redis calls
  // share one round trip (a refusal by one gives back what the others took).
  // Body checks, scope and tier rules sit right after auth, so a refused request costs no
  // rate-limit slot; the tier's output cap is clamped before the estimate, so every
  // reservation is a true upper bound. Built once and shared by the provider routes, so one
  // limiter instance counts all of them.
  const keys = createKeyLookup(config, observedStores, log);
  let configKeys = keyRecordsFromConfig(config.keys ?? []);
  // Shadow mode, where the config asks for it, rides with the caller's identity: every route that limits shadows alike.
  const identify = [...authMiddleware(config, keys, storeFailures('auth')), ...shadowMiddleware(config)];
  const {
    chain: limitAndReserve,
    limits,
    requestLimits,
  } = limitAndReserveChain(config, {
    guardrails: createProxyGuardrails(config, metrics || undefined, deps.guardrails),
    limitStores,
    observedStores,
    storeFailures,
    guarding,
    budget,
    metering,
    responseCache,
  });
  // Bodies of provider routes are read only once the caller is identified (no memory pinned by callers without a key).
  const bodyLimit = config.bodyLimit ?? '1mb';
  const parseBody = express.json({ limit: bodyLimit, type: JSON_BODY_TYPES });
  const readProviderBody = providerJsonBody(bodyLimit);
  // The config's MCP servers at /mcp/<name>, behind the same keys, guard, limits and budgets (mcp-gateway.ts).
  const mcp =
    config.mcpServers &&
    createMcpGateway(config, {
      identify,
      permissions: [...permissionMiddleware(config), ...attributionMiddleware(config)],
      guarding,
      readBody: readProviderBody,
      limitStores,
      storeFailures,
      budget,
      metering,
      env: deps.env ?? process.env,
    });
  // Its sessions end first: their calls in flight settle before the budget and the sinks close.
  if (mcp) closers.unshift(() => mcp.close());
  // Each route declares the API it speaks, once: every later piece keys off that declaration.
  const admit = ({ api, match, before, params }: ProviderRoute): RequestHandler[] => [
    ...(match ? [match] : []),
    ...guarding.beforeAuth,
    ...(before ? [before] : []),
    ...identify,
    ...guarding.afterAuth(readProviderBody),
    validateProviderRequest(api),
    providers.declareCall(api, params),
    ...limitAndReserve,
  ];

  // One spelling per route: under Express's defaults (any case, optional trailing slash) `/V1/CHAT/COMPLETIONS`
  // or `/v1/messages/` were the same route under other names. Every variant is a 404 (or 405).
  const router = express.Router({ caseSensitive: true, strict: true }) as unknown as Gateway;
  const preparedBy = Symbol('tollgate.gateway');
  const prepare = exchangePreparer(preparedBy, logging ? accessLog(logger) : undefined, metrics?.countResponse, log);
  router.prepare = prepare;
  router.use(function prepareExchange(req: Request, res: Response, next: NextFunction) {
    if (req.tollgate?.get('gateway.preparedBy') !== preparedBy) prepare(req, res as ServerResponse);
    next();
  });

  // The provider routes first: they carry nearly all the traffic, and every route before them is a path match per request.
  for (const route of PROVIDER_ROUTES) router.post(route.path, ...admit(route), providers.handler(route.api));
  // Then the token counts (free: no token limit, budget or record); a route whose path names its count passes it on.
  const countParts = { config, guarding, identify, readProviderBody, requestLimits, pricing, providers };
  for (const { path, handlers } of tokenCountRoutes(countParts)) router.post(path, ...handlers);
  if (mcp) router.use('/mcp', mcp.router);
  router.use(parseBody);
  mountOperatorRoutes(router, {
    config,
    stores,
    observedStores,
    pricing,
    providers,
    blocked,
    metering,
    guarding,
    budget,
    identify,
    configKeys: () => configKeys,
    limits,
    configFiles,
  });
  router.all([...new Set([...PROVIDER_ROUTES, ...COUNT_ROUTES].map(({ path }) => path))], answerMethodNotAllowed);
  router.use(apiErrorHandler());
  router.use(unexpectedErrorHandler(logging, log));
  Object.defineProperty(router, 'stores', { value: stores, enumerable: true });
  router.flushUsage = () => metering.flush();
  router.replayUsage = () => metering.replay();
  router.spendReady = () => Promise.all([spend?.ready, guarding.ready, ledgerServed]).then(() => undefined);
  router.reloadKeys = (next) => {
    keys.replaceConfigKeys(next);
    configKeys = keyRecordsFromConfig(next);
  };
  router.reloadConfigFile = (text, path) => {
    const reload = keysFromChangedConfig(text, configKeys);
    if (reload.status !== 'unreadable') router.reloadKeys(reload.keys);
    configFiles.note({ path, status: reload.status, problems: reload.problems });
    return reload;
  };
  let closing: Promise<void> | undefined;
  router.close = () => {
    closing ??= (async () => {
      for (const close of closers) await close();
    })();
    return closing;
  };
  return router;
}

/**
 * The gateway as an Express app of its own: createGateway's router behind the app's settings (no `x-powered-by`, the
 * config's `trustProxy`), each exchange prepared before Express swaps the prototypes of `req` and `res`.
 */
export function createProxyApp(input: ProxyConfig, deps: ProxyDeps = {}): ProxyApp {
  const config = servableConfig(input, deps.env ?? process.env);
  const gateway = createGateway(config, deps);
  const app = express() as unknown as ProxyApp;
  app.disable('x-powered-by');
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  if (config.trustProxy !== undefined) app.set('trust proxy', config.trustProxy);
  // What every exchange gets first, before Express swaps the prototypes of req and res: a property set on them
  // after that costs V8 a new hidden class each time, before it almost nothing (docs/performance.md); Express's
  // own fields, the context and the response's tap are set here, and helmet's headers.
  const handle = (app as unknown as ExpressHandle).handle.bind(app);
  (app as unknown as ExpressHandle).handle = function prepareExchange(req, res, done) {
    presetExpressFields(req, res);
    gateway.prepare(req, res);
    handle(req, res, done);
  };
  app.use(gateway);
  // The gateway's router leaves paths it does not serve to what comes after it; as an app of its own, they are 404s.
  app.use(function answerNotFound(req: Request, res: Response) {
    renderApiError(new ApiError('not_found', `No route ${req.method} ${req.path.slice(0, 200)}.`), req, res);
  });
  Object.defineProperty(app, 'stores', { value: gateway.stores, enumerable: true });
  app.flushUsage = () => gateway.flushUsage();
  app.replayUsage = () => gateway.replayUsage();
  app.spendReady = () => gateway.spendReady();
  app.reloadKeys = (next) => gateway.reloadKeys(next);
  app.reloadConfigFile = (text, path) => gateway.reloadConfigFile(text, path);
  app.close = () => gateway.close();
  return app;
}
