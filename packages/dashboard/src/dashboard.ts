// dashboard(): the operator dashboard as an Express router; pages and their JSON behind the admin key.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { ApiError } from '@tollgate/core';
import { auditCsv, noteAudit } from '@tollgate/core/audit';
import { budgetAuditTarget } from '@tollgate/budget';
import type { BudgetScope, BudgetSelector, BudgetStatus } from '@tollgate/budget';
import { adminOf, requireAdmin, requireCsrf, signInRoutes } from './admin-auth.js';
import type { Admin } from './admin-auth.js';
import { AdminSessions } from './admin-sessions.js';
import { maskToken } from './admin-sessions.js';
import type { AdminSession } from './admin-sessions.js';
import { assetHandler } from './assets.js';
import { money } from './format.js';
import { html } from './html.js';
import { createKey, revokeKey, rotateKey } from './key-actions.js';
import { loadKeysPage, readKeysQuery, renderKeys } from './keys-page.js';
import { budgetName } from './layout.js';
import type { PageContext } from './layout.js';
import { resolveOptions } from './options.js';
import type { DashboardConfig, DashboardOptions } from './options.js';
import { loadOverview, renderOverview } from './overview-page.js';
import { loadProviders, renderProviders } from './providers-page.js';
import { loadAbuse, renderAbuse } from './abuse-page.js';
import { auditExport, loadAudit, readAuditFilter, renderAudit } from './audit-page.js';
import { loadRequests, readRequestsQuery, renderRequests } from './requests-page.js';
import { answerInJson, asyncRoute, dashboardErrors, sendPage, wantsJson } from './responses.js';
import { loadTenant, readCallerSearch, readRange, renderTenant } from './tenant-page.js';
import { loadTenants, readTenantsQuery, renderTenants } from './tenants-page.js';
import { dashboardPath } from './text-checks.js';

/** Scripts, styles, images and forms from this origin only; no inline script; never framed. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('referrer-policy', 'same-origin');
  res.setHeader('x-frame-options', 'DENY');
  next();
}

const BUDGET_SCOPES: readonly BudgetScope[] = ['key', 'user', 'tenant', 'feature', 'session'];
const MAX_TOP_UP_USD = 1_000_000;

function pageContext(req: Request, res: Response, config: DashboardConfig): PageContext {
  const admin = adminOf(res);
  const ctx: PageContext = { base: req.baseUrl, title: config.title, now: config.now() };
  if (admin.via === 'session') {
    ctx.csrfToken = maskToken(admin.session.csrfToken);
    const flash = admin.session.flash;
    if (flash?.kind === 'notice') {
      ctx.notice = html`${flash.message}`;
      delete admin.session.flash;
    }
  }
  return ctx;
}

/** A browser that posted a form is sent back to a page with a message; a script gets JSON. */
function answerWrite(
  req: Request,
  res: Response,
  status: number,
  data: unknown,
  backTo: string,
  flash: AdminSession['flash'],
): void {
  const admin: Admin = adminOf(res);
  if (admin.via === 'key' || wantsJson(req, res) || req.is('application/json')) {
    res.setHeader('cache-control', 'no-store');
    res.status(status).json(data);
    return;
  }
  admin.session.flash = flash;
  res.redirect(303, backTo);
}

/** A page to return to after a form: one of this dashboard's own, else the overview. */
function backPath(req: Request, fallback: string): string {
  return dashboardPath((req.body as Record<string, unknown> | undefined)?.back, req.baseUrl) ?? fallback;
}

function selectorName(selector: BudgetSelector): string {
  return budgetName({ scope: selector.scope, id: selector.id ?? null, tenantId: selector.tenant ?? null });
}

function budgetSelector(req: Request): BudgetSelector {
  const scope = req.params.scope as string | undefined;
  if (scope === undefined) return { scope: 'global' };
  if (!(BUDGET_SCOPES as readonly string[]).includes(scope))
    throw new ApiError(
      'invalid_request',
      `Unknown budget scope "${scope}"; use one of global, ${BUDGET_SCOPES.join(', ')}.`,
      { param: 'scope' },
    );
  const tenant = req.query.tenant;
  if (tenant === undefined) return { scope: scope as BudgetScope, id: req.params.id as string };
  // An end user's or a model's budget is its tenant's: `?tenant=acme`.
  if (typeof tenant !== 'string' || tenant.length === 0 || tenant.length > 200)
    throw new ApiError('invalid_request', 'tenant must be one tenant id.', { param: 'tenant' });
  return { scope: scope as BudgetScope, id: req.params.id as string, tenant };
}

/** The pages: each read once per view, shown as HTML or JSON. */
function addPages(router: Router, config: DashboardConfig): void {
  router.get(
    ['/', '/overview'],
    asyncRoute(async function showOverview(req, res) {
      const ctx = pageContext(req, res, config);
      sendPage(req, res, await loadOverview(config), (data) => renderOverview(ctx, data));
    }),
  );

  router.get(
    '/tenants',
    asyncRoute(async function showTenants(req, res) {
      const ctx = pageContext(req, res, config);
      sendPage(req, res, await loadTenants(config, readTenantsQuery(req.query as Record<string, unknown>)), (data) =>
        renderTenants(ctx, data),
      );
    }),
  );

  router.get(
    '/tenants/:id',
    asyncRoute(async function showTenant(req, res) {
      const ctx = pageContext(req, res, config);
      const tenant = String(req.params.id);
      if (tenant.length > 128)
        throw new ApiError('invalid_request', 'A tenant id has at most 128 characters.', { param: 'id' });
      const range = readRange(req.query.range, '30d');
      sendPage(req, res, await loadTenant(config, tenant, range, readCallerSearch(req.query.q)), (data) =>
        renderTenant(ctx, data),
      );
    }),
  );

  router.get(
    '/keys',
    asyncRoute(async function showKeys(req, res) {
      const ctx = pageContext(req, res, config);
      const admin = adminOf(res);
      // A new key is shown once: the flash that carries it is gone after this page.
      let created: { id: string; key: string; note?: string } | undefined;
      if (admin.via === 'session' && admin.session.flash?.kind === 'key-created') {
        const { id, key, note } = admin.session.flash;
        created = { id, key, ...(note ? { note } : {}) };
        delete admin.session.flash;
      }
      const query = readKeysQuery(req.query as Record<string, unknown>);
      sendPage(req, res, await loadKeysPage(config, query), (data) => renderKeys(ctx, data, created));
    }),
  );

  router.get(
    '/requests',
    asyncRoute(async function showRequests(req, res) {
      const ctx = pageContext(req, res, config);
      sendPage(req, res, await loadRequests(config, readRequestsQuery(req.query as Record<string, unknown>)), (data) =>
        renderRequests(ctx, data),
      );
    }),
  );

  router.get(
    '/providers',
    asyncRoute(async function showProviders(req, res) {
      const ctx = pageContext(req, res, config);
      sendPage(req, res, await loadProviders(config, readRange(req.query.range, '24h')), (data) =>
        renderProviders(ctx, data),
      );
    }),
  );

  router.get('/abuse', function showAbuse(req, res) {
    sendPage(req, res, loadAbuse(config), (data) => renderAbuse(pageContext(req, res, config), data));
  });

  router.get(
    '/audit',
    asyncRoute(async function showAudit(req, res) {
      const filter = readAuditFilter(req.query as Record<string, unknown>);
      if (req.query.format === 'csv') {
        const page = await auditExport(config, filter);
        res.setHeader('cache-control', 'no-store');
        res.setHeader('content-disposition', 'attachment; filename="tollgate-audit.csv"');
        res.type('text/csv').send(auditCsv(page.entries));
        return;
      }
      const ctx = pageContext(req, res, config);
      sendPage(req, res, await loadAudit(config, filter), (data) => renderAudit(ctx, data));
    }),
  );
}

/** A key of the store as it stood before a write (the audit trail's before), without its hash. */
async function keyBefore(config: DashboardConfig, id: string): Promise<unknown> {
  const record = await config.keys?.findById(id);
  if (!record) return null;
  const { sha256: _sha256, ...rest } = record;
  return rest;
}

/** Creating, revoking and rotating keys: forms and JSON, each behind `write` (a body read, the CSRF token checked). */
function addKeyActions(router: Router, config: DashboardConfig, write: readonly RequestHandler[]): void {
  router.post(
    '/keys',
    ...write,
    asyncRoute(async function createKeyRoute(req, res) {
      noteAudit(req, res, { action: 'key.create', target: 'key' });
      const created = await createKey(config, (req.body ?? {}) as Record<string, unknown>);
      noteAudit(req, res, { target: `key:${created.record.id}`, before: null, after: created.record });
      answerWrite(req, res, 201, created, `${req.baseUrl}/keys`, {
        kind: 'key-created',
        id: created.record.id,
        key: created.key,
      });
    }),
  );

  router.post(
    '/keys/:id/revoke',
    ...write,
    asyncRoute(async function revokeKeyRoute(req, res) {
      const id = String(req.params.id);
      noteAudit(req, res, { action: 'key.revoke', target: `key:${id}`, before: await keyBefore(config, id) });
      const revoked = await revokeKey(config, id);
      noteAudit(req, res, { after: revoked });
      answerWrite(req, res, 200, { revoked }, `${req.baseUrl}/keys`, {
        kind: 'notice',
        message: `Key ${revoked.id} is revoked: requests with it are refused.`,
      });
    }),
  );

  router.post(
    '/keys/:id/rotate',
    ...write,
    asyncRoute(async function rotateKeyRoute(req, res) {
      const id = String(req.params.id);
      noteAudit(req, res, { action: 'key.rotate', target: `key:${id}`, before: await keyBefore(config, id) });
      const rotated = await rotateKey(config, id, (req.body ?? {}) as Record<string, unknown>);
      const { previous } = rotated;
      noteAudit(req, res, { after: { record: rotated.record, previous } });
      const note =
        previous.state === 'revoked'
          ? `The old key ${previous.id} is revoked.`
          : previous.expiresAt
            ? `The old key ${previous.id} works until ${previous.expiresAt}.`
            : `The old key ${previous.id} works until you revoke it.`;
      answerWrite(req, res, 201, rotated, `${req.baseUrl}/keys`, {
        kind: 'key-created',
        id: rotated.record.id,
        key: rotated.key,
        note,
      });
    }),
  );
}

/** The connected budget guard; a dashboard without one can show no budget to change (409). */
function budgetGuardOf(config: DashboardConfig): NonNullable<DashboardConfig['budgets']> {
  const guard = config.budgets;
  if (!guard) throw new ApiError('invalid_request', 'No budget guard is connected to the dashboard.', { status: 409 });
  return guard;
}

/** Only a budget the guard knows is changed: an unknown one is a 404. Resolves with its status before the change. */
async function assertBudgetExists(
  guard: NonNullable<DashboardConfig['budgets']>,
  selector: BudgetSelector,
): Promise<BudgetStatus[]> {
  const status = await guard.status(selector);
  if (status.length === 0) throw new ApiError('not_found', `No budget for ${selectorName(selector)}.`);
  return status;
}

/** Topping up and resetting budgets, the global one and each scope's, each behind `write`. */
function addBudgetActions(router: Router, config: DashboardConfig, write: readonly RequestHandler[]): void {
  const topUp = asyncRoute(async function topUpBudget(req, res) {
    noteAudit(req, res, { action: 'budget.top-up' });
    const guard = budgetGuardOf(config);
    const selector = budgetSelector(req);
    noteAudit(req, res, { target: budgetAuditTarget(selector) });
    const raw = (req.body as Record<string, unknown> | undefined)?.usd;
    const usd = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof usd !== 'number' || !Number.isFinite(usd) || usd <= 0 || usd > MAX_TOP_UP_USD)
      throw new ApiError('invalid_request', `A top-up is a positive amount of USD, at most ${MAX_TOP_UP_USD}.`, {
        param: 'usd',
      });
    const before = await assertBudgetExists(guard, selector);
    const budgets = await guard.topUp(selector, usd);
    noteAudit(req, res, { before, after: budgets });
    const who = selectorName(selector);
    const fallback =
      selector.scope === 'tenant' ? `${req.baseUrl}/tenants/${encodeURIComponent(selector.id!)}` : `${req.baseUrl}/`;
    answerWrite(req, res, 200, { budgets }, backPath(req, fallback), {
      kind: 'notice',
      message: `Credited ${money(Math.round(usd * 1e9))} to the ${who} budget for this period.`,
    });
  });
  const reset = asyncRoute(async function resetBudget(req, res) {
    noteAudit(req, res, { action: 'budget.reset' });
    const guard = budgetGuardOf(config);
    const selector = budgetSelector(req);
    noteAudit(req, res, { target: budgetAuditTarget(selector) });
    const before = await assertBudgetExists(guard, selector);
    const budgets = await guard.reset(selector);
    noteAudit(req, res, { before, after: budgets });
    const who = selectorName(selector);
    answerWrite(req, res, 200, { budgets }, backPath(req, `${req.baseUrl}/`), {
      kind: 'notice',
      message: `The ${who} budget's spend this period is forgotten.`,
    });
  });
  router.post('/budgets/global/top-up', ...write, topUp);
  router.post('/budgets/global/reset', ...write, reset);
  router.post('/budgets/:scope/:id/top-up', ...write, topUp);
  router.post('/budgets/:scope/:id/reset', ...write, reset);
}

function pageRoutes(config: DashboardConfig): Router {
  const router = express.Router();
  const body = [
    express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 }),
    express.json({ limit: '16kb' }),
  ];
  const write = [...body, requireCsrf];
  addPages(router, config);
  addKeyActions(router, config, write);
  addBudgetActions(router, config, write);
  router.use(function answerNotFound(req: Request, _res: Response, next: NextFunction) {
    next(new ApiError('not_found', `No dashboard page ${req.method} ${req.path.slice(0, 200)}.`));
  });
  return router;
}

/**
 * The dashboard router. Mount it where operators reach it: `app.use('/dashboard', dashboard({ ... }))`.
 * Every page but the sign-in form needs the admin key (a session from the form, or the key in
 * `Authorization: Bearer`); every page answers in JSON under `/api/...` or with `?format=json`.
 */
export function dashboard(options: DashboardOptions): Router {
  const config = resolveOptions(options);
  const sessions = new AdminSessions(config.sessionTtlMs, config.maxSessions, config.now);
  const router = express.Router();
  const admin = requireAdmin(config, sessions);
  const pages = pageRoutes(config);
  // Every write behind the admin goes through the audit trail (recorded before it runs, refused if it cannot be).
  const audited = config.audit ? [config.audit.record] : [];
  router.use(securityHeaders);
  router.get('/assets/:name', assetHandler());
  router.use(signInRoutes(config, sessions));
  const authorized = config.authorizeAction ? [config.authorizeAction] : [];
  router.use('/api', answerInJson, admin, ...audited, ...authorized, pages);
  router.use(admin, ...audited, ...authorized, pages);
  router.use(dashboardErrors);
  return router;
}
