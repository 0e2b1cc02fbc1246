// createProxyApp: the OpenAI-, Anthropic- and Gemini-compatible proxy as an express app, built from a validated config.
import express from 'express';
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';
import { budgetAdminRouter } from '@tollgate/budget';
import { combineLimits } from '@tollgate/ratelimit';
import { keyRecordsFromConfig } from '@tollgate/auth';
import { ApiError, apiErrorHandler, createMemoryStores, createPricing, renderApiError, requestContext } from '@tollgate/core';
import type { ProviderApi, TollgateStores } from '@tollgate/core';
import { preloadTokenizers } from '@tollgate/providers';
import type { CallDeclaration } from '@tollgate/providers';
import type { SpoolReplay } from '@tollgate/metering';
import { dashboard } from '@tollgate/dashboard';
import { adminKeyAuth } from './admin-auth.js';
import { adminKeysRouter } from './admin-keys-router.js';
import { authMiddleware, createKeyLookup, permissionMiddleware } from './auth-setup.js';
import { createBudgetGuard } from './budget-setup.js';
import type { KeyConfig, ProxyConfig } from './config.js';
import { concurrencyMiddleware, requestLimitMiddleware, tierPolicyMiddleware, tokenLimitMiddleware } from './limits-setup.js';
import { acceptGeminiRequest, GEMINI_ROUTE, geminiCallParams } from './gemini-route.js';
import { createMetering } from './metering-setup.js';
import { createMockProvider } from './mock-provider.js';
import type { MockProvider } from './mock-provider.js';
import { modelsRoute } from './models-route.js';
import { createProviderRouter } from './provider-routing.js';
import { validateProviderRequest } from './request-validation.js';
import { keepSpend } from './spend-rebuild.js';
import { storesAnswer } from './stores.js';

export interface ProxyDeps {
  /** Shared stores; the caller keeps ownership. @default in-memory stores owned (and closed) by the app */
  stores?: TollgateStores;
  /** The mock served when the config has no `upstreams`. @default a fresh createMockProvider() */
  mock?: MockProvider;
  /** Where upstream keys are read from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Operator log lines (never secrets). @default console.error */
  log?: (line: string) => void;
}

export interface ProxyApp extends Express {
  /** The stores the app uses. */
  readonly stores: TollgateStores;
  /**
   * Replaces the config's keys while running (new, rotated, revoked or expired keys count on the
   * next request). Other config changes need a restart.
   */
  reloadKeys(keys: readonly KeyConfig[]): void;
  /** Writes out what the usage sinks hold (the usage log and the ledger are batched). */
  flushUsage(): Promise<void>;
  /**
   * Resolves once the usage spool (on with a usage log or a ledger) wrote to the sinks what a proxy
   * that died left in it; started when the app is made. `pnpm start` listens only after it.
   */
  replayUsage(): Promise<SpoolReplay | undefined>;
  /**
   * Resolves once budget spend Redis lost (a restart without persistence) was rebuilt from the
   * SQL usage ledger; at once without Redis or a ledger. `pnpm start` listens only after it.
   */
  spendReady(): Promise<void>;
  /**
   * Ends the upstream calls still running (after a short grace), then flushes and closes the sinks
   * and releases what the app owns (stores it created, upstream connections, timers).
   */
  close(): Promise<void>;
}

interface ProviderRoute {
  path: string;
  api: ProviderApi;
  /** Runs before auth: what the route reads of its own path and headers. */
  before?: RequestHandler;
  /** Route params the adapter reads. @default req.params */
  params?: CallDeclaration['params'];
}

const PROVIDER_ROUTES: readonly ProviderRoute[] = [
  { path: '/v1/chat/completions', api: 'openai.chat' },
  { path: '/v1/responses', api: 'openai.responses' },
  { path: '/v1/messages', api: 'anthropic.messages' },
  { path: GEMINI_ROUTE, api: 'gemini.generate', before: acceptGeminiRequest, params: geminiCallParams },
];

/** A provider path asked with another method than POST. */
function answerMethodNotAllowed(req: Request, res: Response): void {
  const message = `${req.method} is not allowed on ${req.path.slice(0, 200)}: use POST.`;
  renderApiError(new ApiError('method_not_allowed', message, { headers: { allow: 'POST' } }), req, res);
}

export function createProxyApp(config: ProxyConfig, deps: ProxyDeps = {}): ProxyApp {
  const log = deps.log ?? ((line: string) => console.error(line));
  const ownsStores = deps.stores === undefined;
  const stores = deps.stores ?? createMemoryStores();
  const pricing = createPricing({ models: { ...config.models } });
  const mock = config.upstreams ? undefined : (deps.mock ?? createMockProvider());
  const providers = createProviderRouter(config, { mock, pricing, env: deps.env });
  const budget = createBudgetGuard(config, stores, pricing, log);
  const metering = createMetering(config, pricing);
  // Rebuilt after the spool's replay, so the records of a proxy that died are in the ledger first.
  const spend = keepSpend(config, stores, budget, metering.ledger, async () => {
    await metering.replay();
    await metering.flush();
  }, log);
  // In this order: the upstream calls end (and settle), then the budget, then the usage is written, then the stores close.
  const closers: (() => Promise<void> | void)[] = [() => providers.close(), () => budget.close(), () => spend?.close(), () => metering.close()];
  if (ownsStores) closers.push(() => stores.close());

  // The order of docs/architecture.md: auth -> tieredRateLimit -> meter (estimate) -> tokenRateLimit -> budgetGuard -> handler,
  // with the limits and the budget fused by combineLimits after the estimate: their Redis calls
  // share one round trip (a refusal by one gives back what the others took).
  // Body checks, scope and tier rules sit right after auth, so a refused request costs no
  // rate-limit slot; the tier's output cap is clamped before the estimate, so every
  // reservation is a true upper bound. Built once and shared by the provider routes, so one
  // limiter instance counts all of them.
  const keys = createKeyLookup(config, stores);
  let configKeys = keyRecordsFromConfig(config.keys ?? []);
  const identify = authMiddleware(config, keys);
  const limitAndReserve: RequestHandler[] = [
    ...permissionMiddleware(config),
    tierPolicyMiddleware(config),
    ...metering.middleware,
    combineLimits(...requestLimitMiddleware(config, stores), ...tokenLimitMiddleware(config, stores), ...concurrencyMiddleware(config, stores), budget),
  ];
  // Each route declares the API it speaks, once: every later piece keys off that declaration.
  const admit = ({ api, before, params }: ProviderRoute): RequestHandler[] => [
    ...(before ? [before] : []),
    ...identify,
    validateProviderRequest(api),
    providers.declareCall(api, params),
    ...limitAndReserve,
  ];

  const app = express() as unknown as ProxyApp;
  app.disable('x-powered-by');
  // One spelling per route: under Express's defaults (any case, optional trailing slash) `/V1/CHAT/COMPLETIONS`
  // or `/v1/messages/` were the same route under other names. Every variant is now a 404 (or 405). Set before any route.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  const securityHeaders = helmet();
  // One layer for what every response gets (the router's cost is per layer).
  app.use(function prepareResponse(req: Request, res: Response, next: NextFunction) {
    // Each piece of the chain (context, meter, limits, slots, budget, upstream call) watches the response's
    // end: more 'close' listeners than Node's default of 10 are expected here, not a leak to warn about.
    res.setMaxListeners(32);
    securityHeaders(req, res, next);
  });
  app.use(requestContext());
  app.use(express.json({ limit: config.bodyLimit ?? '1mb', type: ['application/json', 'application/*+json'] }));

  // The provider routes first: they carry nearly all the traffic, and every route before them is a path match per request.
  for (const route of PROVIDER_ROUTES) app.post(route.path, ...admit(route), providers.handler(route.api));
  // Healthy only once the tokenizers are loaded: before, estimates run several times high (a byte bound).
  let tokenizersReady = false;
  void preloadTokenizers().then(() => (tokenizersReady = true));
  app.get('/healthz', async function reportHealth(_req: Request, res: Response) {
    const storeOk = await storesAnswer(stores);
    const ok = storeOk && tokenizersReady;
    res.status(ok ? 200 : 503).json({
      status: ok ? 'ok' : tokenizersReady ? 'degraded' : 'starting', store: stores.kind, storeOk, tokenizers: tokenizersReady ? 'ready' : 'loading',
      ...(stores.kind === 'redis' ? { redis: storeOk ? 'ok' : 'down' } : {}), upstreams: providers.names,
    });
  });
  // Metrics name tenants and their spend: behind the admin key when there is one.
  const adminOnly = config.adminKeySha256 ? [adminKeyAuth(config.adminKeySha256)] : [];
  app.get('/metrics', ...adminOnly, metering.metricsHandler);

  app.get('/v1/models', ...identify, modelsRoute(config, pricing));

  if (config.adminKeySha256) {
    const admin = express.Router();
    admin.use(...adminOnly);
    admin.use('/budgets', budgetAdminRouter(budget));
    admin.use('/keys', adminKeysRouter(config, () => configKeys, stores.keys));
    app.use('/admin', admin);
    app.use('/dashboard', dashboard({
      adminKeySha256: config.adminKeySha256,
      budgets: budget,
      keys: stores.keys,
      configKeys: () => configKeys,
      ...(metering.ledger ? { ledger: metering.ledger } : {}),
      ...(config.postgresTable || config.postgresSchema ? { ledgerTable: { ...(config.postgresTable ? { table: config.postgresTable } : {}), ...(config.postgresSchema ? { schema: config.postgresSchema } : {}) } } : {}),
      tenants: Object.keys(config.tenants ?? {}),
      tiers: Object.keys(config.tiers ?? {}),
    }));
  }

  app.all(PROVIDER_ROUTES.map(({ path }) => path), answerMethodNotAllowed);
  app.use(function answerNotFound(req: Request, res: Response) {
    renderApiError(new ApiError('not_found', `No route ${req.method} ${req.path.slice(0, 200)}.`), req, res);
  });
  app.use(apiErrorHandler());
  app.use(function answerUnexpectedError(error: unknown, req: Request, res: Response, _next: NextFunction) {
    log(`tollgate proxy: unexpected error on ${req.method} ${req.path.slice(0, 200)}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(500).json({ error: { message: 'Internal proxy error.', type: 'server_error', code: 'internal_error', param: null } });
  });

  Object.defineProperty(app, 'stores', { value: stores, enumerable: true });
  app.flushUsage = () => metering.flush();
  app.replayUsage = () => metering.replay();
  app.spendReady = () => spend?.ready ?? Promise.resolve();
  app.reloadKeys = (next) => {
    keys.replaceConfigKeys(next);
    configKeys = keyRecordsFromConfig(next);
  };
  let closing: Promise<void> | undefined;
  app.close = () => {
    closing ??= (async () => {
      for (const close of closers) await close();
    })();
    return closing;
  };
  return app;
}
