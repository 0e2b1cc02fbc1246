// The operator's routes beside the chain: health, metrics, the model list, outcomes, and behind the admin key or an
// operator's sign-in (docs/operators.md) the admin API (budgets, keys, tenants, the guard) and the dashboard.
import express from 'express';
import type { Request, RequestHandler, Response, Router } from 'express';
import { budgetAdminRouter } from '@tollgate/budget';
import { auditListing } from '@tollgate/core/audit';
import { asyncRoute } from '@tollgate/core/checks';
import { dashboard, KEYS_PER_PAGE } from '@tollgate/dashboard';
import { keyPageWith } from '@tollgate/core/store-contracts';
import { preloadTokenizers } from '@tollgate/providers';
import { ADMIN_KEY_ACTOR } from '@tollgate/core/audit';
import { adminKeyAuth, adminKeyVerdict, identifyOperator, refuseAdminKey, requireOperator } from './admin-auth.js';
import { operatorSignInOption, sessionRoutes } from './operator-session-routes.js';
import { authorizeOperator } from './operator-access.js';
import { oidcSignInRoutes } from './oidc-sign-in.js';
import { adminKeysRouter } from './admin-keys-router.js';
import { adminTenantsRouter, importTenantsRoute } from './admin-tenants-router.js';
import type { GatewayParts } from './gateway-parts.js';
import { dashboardQuotas } from './limits-setup.js';
import { modelsRoute } from './models-route.js';
import { outcomesRoute } from './outcomes-route.js';
import { mountProbes } from './probes.js';
import type { LoopWatch } from './probes.js';
import { providerOfModel } from '@tollgate/router/upstreams';
import { storesAnswer } from './stores.js';
import { composeRoute, type ComposedRoute, type GatewayStages } from './stages.js';

/** What the operator routes are built from. */
type OperatorParts = Pick<
  GatewayParts,
  | 'options'
  | 'stores'
  | 'observedStores'
  | 'pricing'
  | 'prices'
  | 'providers'
  | 'blocked'
  | 'metering'
  | 'guarding'
  | 'budget'
  | 'configKeys'
  | 'limitsAndBudget'
  | 'configFiles'
  | 'audit'
  | 'tenants'
  | 'admission'
  | 'spend'
> & {
  /** The chain's stages: a caller's query is composed from them. */
  stages: GatewayStages;
  /** Whether the process was told to stop (`Gateway.drain()`): /readyz answers 503 from then on. */
  draining(): boolean;
  /** The event loop's lateness, for /livez. */
  loop: LoopWatch;
};

/**
 * Healthy only once the encoding of current models is loaded: before, their estimates run several times high (a byte
 * bound). Older models' encoding loads when one is first asked for.
 */
function mountHealthRoutes(router: Router, parts: OperatorParts): void {
  let tokenizersReady = false;
  void preloadTokenizers(['o200k_base']).then(() => (tokenizersReady = true));
  const readinessParts = {
    stores: parts.stores,
    storeOutage: parts.options.storeOutage,
    prices: parts.prices,
    tokenizersReady: () => tokenizersReady,
    draining: parts.draining,
  };
  mountProbes(router, readinessParts, parts.loop);
  router.get('/healthz', asyncRoute(healthRoute(parts, () => tokenizersReady)));
}

/**
 * 503 only when this process cannot serve (starting, its store out): an upstream that does not answer is every
 * process's, so it is reported as `degraded` with a 200 that keeps the load balancer sending the routes that work.
 * The public sees the status only; what is behind it (upstreams, targets, breakers, probes) needs the admin key.
 */
function healthRoute(parts: OperatorParts, tokenizersReady: () => boolean) {
  const { stores, providers, blocked } = parts;
  const { adminKeySha256 } = parts.options.operator;
  const judgeAdminKey = adminKeySha256 ? adminKeyVerdict(adminKeySha256) : undefined;
  return async function reportHealth(req: Request, res: Response) {
    const verdict = judgeAdminKey?.(req) ?? 'absent';
    if (verdict === 'invalid') return refuseAdminKey(verdict, req, res);
    const storeOk = await storesAnswer(stores);
    const unavailable = providers.unavailable();
    const upstreamsOk = unavailable.upstreams.length === 0 && unavailable.modelGroups.length === 0;
    const serving = storeOk && tokenizersReady();
    const filesFailing = parts.configFiles.failing();
    const status = !tokenizersReady()
      ? 'starting'
      : serving && upstreamsOk && filesFailing.length === 0
        ? 'ok'
        : 'degraded';
    if (verdict === 'absent') return void res.status(serving ? 200 : 503).json({ status });
    res.status(serving ? 200 : 503).json({
      status,
      ...(upstreamsOk ? {} : { unavailable }),
      ...(filesFailing.length === 0 ? {} : { configFiles: filesFailing }),
      store: stores.kind,
      storeOk,
      tokenizers: tokenizersReady() ? 'ready' : 'loading',
      ...(stores.kind === 'redis' ? { redis: storeOk ? 'ok' : 'down' } : {}),
      upstreams: providers.names,
      ...(providers.routes ? { routing: providers.routes.health() } : {}),
      ...(blocked ? { blocks: blocked.blocks.open() } : {}),
    });
  };
}

/** Metrics name tenants and their spend: behind the admin key, open only when the config says so, else not served. */
function mountMetrics(router: Router, parts: OperatorParts): void {
  const { operator } = parts.options;
  const { metering, guarding } = parts;
  const adminOnly = operator.adminKeySha256 ? [...guarding.guardAdmit, adminKeyAuth(operator.adminKeySha256)] : [];
  if (metering.metricsHandler && operator.metricsPublic) router.get('/metrics', metering.metricsHandler);
  else if (metering.metricsHandler && operator.adminKeySha256)
    router.get('/metrics', ...adminOnly, metering.metricsHandler);
}

/** What callers ask with their own key: the models they may use, and outcomes (cost per outcome) of their requests. */
function mountCallerRoutes(router: Router, parts: OperatorParts): void {
  const { options, pricing, metering } = parts;
  const providerOf = (model: string) => providerOfModel(model, 'openai.chat', options.routing, pricing);
  const models = modelsRoute({ ...options.models, providerOf }, pricing);
  const outcomes = outcomesRoute({
    ledger: metering.ledger,
    location: options.budget.ledgerTable,
    flushUsage: () => metering.flush(),
  });
  router.get('/v1/models', ...callerQuery(parts, models).handlers);
  router.post('/v1/outcomes', ...callerQuery(parts, outcomes).handlers);
}

/** A caller's query composed as its profile (`callerQuery`): the address checks, the caller, `answer`. */
function callerQuery(parts: Pick<OperatorParts, 'stages'>, answer: RequestHandler): ComposedRoute {
  return composeRoute(parts.stages, { kind: 'callerQuery', answer });
}

/** The admin API behind the admin key or an operator's sign-in: budgets, keys, tenants, prices, guard, audit. */
function adminRouter(parts: OperatorParts): Router {
  const { options, observedStores, guarding, budget, admission } = parts;
  const { operator } = options;
  const admin = express.Router();
  if (operator.oidc && admission.sessions) admin.use(oidcSignInRoutes(operator.oidc, admission.sessions));
  admin.use(requireOperator(admission, guarding.guardAdmit));
  // Every write below (and any route added later) is recorded before it runs, a refused one too: docs/audit.md.
  admin.use(parts.audit.record);
  // The least role of every route (docs/operators.md): a route the table does not name answers 404 to everyone.
  admin.use(authorizeOperator('admin', () => undefined));
  admin.use(sessionRoutes(admission));
  admin.get('/audit', auditListing(parts.audit));
  admin.use('/budgets', budgetAdminRouter(budget, parts.spend?.drift ? { drift: parts.spend.drift } : {}));
  admin.use('/keys', adminKeysRouter(options.auth.keyProblems, parts.configKeys, observedStores.keys));
  // `:import` is part of the path (not a parameter): matched as it is written.
  admin.post(/^\/tenants:import$/, ...importTenantsRoute(options.tenants, parts.tenants));
  admin.use('/tenants', adminTenantsRouter(options.tenants, parts.tenants));
  // The prices in use: their version, when they were loaded, what the load changed, and a refused read's reason.
  admin.get('/prices', function showPrices(_req: Request, res: Response) {
    res.json(parts.prices.status());
  });
  if (guarding.adminRouter) admin.use('/guard', guarding.adminRouter);
  if (guarding.abuseRouter) admin.use('/abuse', guarding.abuseRouter);
  return admin;
}

/**
 * The dashboard: its sessions are its own (the key's form) or an OIDC sign-in's; the same table gives their role,
 * checked behind its sign-in and audit trail.
 */
function operatorDashboard(parts: OperatorParts) {
  const { options, observedStores, providers, metering, guarding, budget, admission, configKeys } = parts;
  const { operator } = options;
  const keyOperator = { actor: { ...ADMIN_KEY_ACTOR, role: operator.keyRole, via: 'dashboard-session' } };
  return dashboard({
    authorizeAction: authorizeOperator('dashboard', () => keyOperator),
    ...(operator.adminKeySha256 ? { adminKeySha256: operator.adminKeySha256 } : { authorize: () => false }),
    ...(admission.sessions ? { operatorSignIn: operatorSignInOption(admission.sessions) } : {}),
    keyActor: { ...ADMIN_KEY_ACTOR, role: operator.keyRole },
    // A wrong key in the sign-in form meets the address blocks and the one auth-failure count /admin meets.
    beforeAuth: guarding.guardAdmit,
    budgets: budget,
    audit: parts.audit,
    keys: observedStores.keys,
    configKeys: configKeys,
    ...(metering.ledger ? { ledger: metering.ledger } : {}),
    ...(operator.ledgerTable ? { ledgerTable: operator.ledgerTable } : {}),
    ...(guarding.abuseEntries ? { abuse: guarding.abuseEntries } : {}),
    // A key made on the dashboard may name a stored tenant as well as a config one.
    tenants: () => parts.tenants.all().map((tenant) => tenant.id),
    tiers: operator.tiers,
    ...(operator.timezone ? { timezone: operator.timezone } : {}),
    ...(providers.routes ? { routing: providers.routes.health } : {}),
    // A tenant's page: the quotas of the keys its keys table shows, one page of the store.
    limits: dashboardQuotas(
      { tiers: options.auth.tiers, tenants: operator.tenants },
      parts.limitsAndBudget,
      async (tenantId) =>
        (await keyPageWith(observedStores.keys, configKeys(), { tenantId, limit: KEYS_PER_PAGE })).keys,
    ),
  });
}

/** Health, the probes, metrics, models, outcomes, and (with an admin key) the admin API and the dashboard. */
export function mountOperatorRoutes(router: Router, parts: OperatorParts): void {
  mountHealthRoutes(router, parts);
  mountMetrics(router, parts);
  mountCallerRoutes(router, parts);
  const { operator } = parts.options;
  if (operator.adminKeySha256 || parts.admission.sessions) {
    router.use('/admin', adminRouter(parts));
    router.use('/dashboard', identifyOperator(parts.admission), operatorDashboard(parts));
  }
}
