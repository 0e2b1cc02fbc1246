// budgetAdminRouter: the operator's JSON view of budgets plus top-up and reset; mount it behind your admin auth.
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import { noteAudit } from '@tollgate/core/audit';
import { asyncRoute } from '@tollgate/core/checks';
import { assertKnownOptions, usdAmountProblem } from '@tollgate/core/options';
import type { ErrorRenderer } from '@tollgate/core';
import { BUDGET_SCOPES } from './budget-plan.js';
import type { BudgetGuard } from './budget-guard.js';
import type { SpendDrift } from './spend-drift.js';
import type { BudgetScope, BudgetSelector } from './types.js';

interface BudgetAdminRouterOptions {
  /**
   * Renders bad requests and unknown scopes.
   * @default renderApiError from @tollgate/core
   */
  renderError?: ErrorRenderer;
  /**
   * The drift of the counters from a usage ledger (`guard.watchDrift(...)`): serves `.../drift` and `.../repair`.
   * @default none: those routes answer 404
   */
  drift?: SpendDrift;
}

const OPTION_NAMES = ['renderError', 'drift'] as const satisfies readonly (keyof BudgetAdminRouterOptions)[];

/**
 * The scopes of the admin paths: those with ids of their own, a tenant's models (`/model/gpt-4o?tenant=acme`), sessions,
 * teams (`/team/research?tenant=acme`) and their members (`/member/user:bob?tenant=acme&team=research`).
 */
const ADMIN_SCOPES: readonly BudgetScope[] = [...BUDGET_SCOPES, 'model', 'session', 'team', 'member'];

/** A team or a member's budget names its tenant (and a member its team): `?tenant=acme&team=research`. */
function teamPartOf(req: Request, scope: string, tenant: string | undefined): { team?: string } {
  if (scope !== 'team' && scope !== 'member') return {};
  const member = scope === 'member';
  const path = member ? '/member/<user:id|key:id>?tenant=<tenant>&team=<team>' : '/team/<team>?tenant=<tenant>';
  if (tenant === undefined)
    throw new ApiError('invalid_request', `A ${scope} budget belongs to a tenant: ${path}.`, { param: 'tenant' });
  if (!member) return {};
  const team = req.query.team;
  if (typeof team !== 'string' || team.length === 0)
    throw new ApiError('invalid_request', `A member budget belongs to a team: ${path}.`, { param: 'team' });
  return { team };
}

function selectorOf(req: Request): BudgetSelector {
  const scope = req.params.scope as string;
  if (!(ADMIN_SCOPES as readonly string[]).includes(scope)) {
    throw new ApiError('invalid_request', `Unknown budget scope "${scope}"; use one of ${ADMIN_SCOPES.join(', ')}.`, {
      param: 'scope',
    });
  }
  const id = req.params.id as string | undefined;
  if (scope !== 'global' && !id)
    throw new ApiError('invalid_request', `A ${scope} budget needs an id: /${scope}/<id>.`, { param: 'id' });
  // An end user's budget within a tenant, or a model's: `?tenant=acme`.
  const tenant = req.query.tenant;
  if (tenant !== undefined && (typeof tenant !== 'string' || tenant.length === 0))
    throw new ApiError('invalid_request', 'tenant must be one tenant id: ?tenant=acme.', { param: 'tenant' });
  if (scope === 'model' && tenant === undefined)
    throw new ApiError('invalid_request', 'A model budget belongs to a tenant: /model/<model>?tenant=<tenant>.', {
      param: 'tenant',
    });
  // A session's budget is its tenant's, or its key's when the caller has none: `?key=ci-bot`.
  const key = req.query.key;
  if (scope === 'session' && tenant === undefined && (typeof key !== 'string' || key.length === 0))
    throw new ApiError(
      'invalid_request',
      'A session budget belongs to a tenant, or to a key without one: /session/<id>?tenant=<tenant> or ?key=<key>.',
      { param: 'tenant' },
    );
  const teamPart = teamPartOf(req, scope, tenant);
  if (scope === 'global') return { scope };
  return {
    scope: scope as BudgetScope,
    id: id!,
    ...(tenant === undefined ? {} : { tenant }),
    ...teamPart,
    ...(scope === 'session' && tenant === undefined ? { key: key as string } : {}),
  };
}

/** A budget as the audit trail names it: `budget:global`, `budget:tenant:acme`, `budget:user:acme/alice`. */
export function budgetAuditTarget(selector: BudgetSelector): string {
  if (selector.scope === 'global' || selector.id === undefined) return `budget:${selector.scope}`;
  const team = selector.team === undefined ? '' : `${selector.team}/`;
  return `budget:${selector.scope}:${selector.tenant === undefined ? '' : `${selector.tenant}/`}${team}${selector.id}`;
}

function notFound(selector: BudgetSelector): ApiError {
  return new ApiError(
    'not_found',
    `No budget is configured for ${selector.scope}${selector.id === undefined ? '' : ` ${selector.id}`}.`,
  );
}

function noDrift(): ApiError {
  return new ApiError('not_found', 'Drift is read against a usage ledger, and this gateway has none.');
}

/**
 * Routes (relative to where it is mounted, e.g. `/admin/budgets`):
 * - `GET /` every budget configured with a fixed id
 * - `GET /global`, `GET /:scope/:id` one scope (also wildcard and dynamic budgets)
 * - `POST /global/top-up`, `POST /:scope/:id/top-up` with `{ "usd": 10 }`: credit the current period
 * - `POST /global/reset`, `POST /:scope/:id/reset`: forget the current period's spend
 * - `GET /global/holds`, `GET /:scope/:id/holds`: the reservations held in its scopes, their age and owner
 * - with `drift`: `GET /drift` (every configured budget), `GET /global/drift`, `GET /:scope/:id/drift` each scope's
 *   counter against the usage ledger; `POST /global/repair`, `POST /:scope/:id/repair` move it back to the ledger
 *
 * It has no authentication of its own: put your admin auth in front of it.
 */
export function budgetAdminRouter(guard: BudgetGuard, options: BudgetAdminRouterOptions = {}): Router {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_BUDGET_UNKNOWN_OPTION', 'budgetAdminRouter');
  const render = options.renderError ?? renderApiError;
  const router = express.Router();
  router.use(express.json({ limit: '16kb' }));

  router.get(
    '/',
    asyncRoute(async (_req: Request, res: Response) => {
      res.json({ budgets: await guard.status() });
    }),
  );

  type Select = (req: Request) => BudgetSelector;
  const showOne = (select: Select) =>
    asyncRoute(async (req: Request, res: Response) => {
      const selector = select(req);
      const budgets = await guard.status(selector);
      if (budgets.length === 0) throw notFound(selector);
      res.json({ budgets });
    });

  const topUp = (select: Select) =>
    asyncRoute(async (req: Request, res: Response) => {
      noteAudit(req, res, { action: 'budget.top-up' });
      const selector = select(req);
      noteAudit(req, res, { target: budgetAuditTarget(selector) });
      const usd = (req.body as { usd?: unknown } | undefined)?.usd;
      const problem = usdAmountProblem(usd);
      if (problem !== undefined)
        throw new ApiError('invalid_request', `A top-up needs a body like { "usd": 10 }: usd ${problem}.`, {
          param: 'usd',
        });
      const before = await guard.status(selector);
      if (before.length === 0) throw notFound(selector);
      const budgets = await guard.topUp(selector, usd as number);
      noteAudit(req, res, { before, after: budgets });
      res.json({ budgets });
    });

  const reset = (select: Select) =>
    asyncRoute(async (req: Request, res: Response) => {
      noteAudit(req, res, { action: 'budget.reset' });
      const selector = select(req);
      noteAudit(req, res, { target: budgetAuditTarget(selector) });
      const before = await guard.status(selector);
      if (before.length === 0) throw notFound(selector);
      const budgets = await guard.reset(selector);
      noteAudit(req, res, { before, after: budgets });
      res.json({ budgets });
    });

  const showDrift = (select: Select | undefined) =>
    asyncRoute(async (req: Request, res: Response) => {
      if (!options.drift) throw noDrift();
      const selector = select?.(req);
      if (selector && (await guard.status(selector)).length === 0) throw notFound(selector);
      res.json({ drift: await options.drift.read(selector) });
    });

  const repair = (select: Select) =>
    asyncRoute(async (req: Request, res: Response) => {
      noteAudit(req, res, { action: 'budget.repair' });
      const selector = select(req);
      noteAudit(req, res, { target: budgetAuditTarget(selector) });
      if (!options.drift) throw noDrift();
      if ((await guard.status(selector)).length === 0) throw notFound(selector);
      const repairs = await options.drift.repair(selector);
      noteAudit(req, res, {
        before: repairs.map((done) => ({ ...done.before, spentNanoUsd: done.spentBeforeNanoUsd })),
        after: repairs.map((done) => ({ ...done.after, spentNanoUsd: done.spentAfterNanoUsd })),
      });
      res.json({ repairs });
    });

  const showHolds = (select: Select) =>
    asyncRoute(async (req: Request, res: Response) => {
      const selector = select(req);
      if ((await guard.status(selector)).length === 0) throw notFound(selector);
      res.json({ holds: await guard.holds(selector) });
    });

  const global: Select = () => ({ scope: 'global' });
  router.get('/global/holds', showHolds(global));
  router.get('/:scope/:id/holds', showHolds(selectorOf));
  router.get('/drift', showDrift(undefined));
  router.get('/global/drift', showDrift(global));
  router.post('/global/repair', repair(global));
  router.get('/:scope/:id/drift', showDrift(selectorOf));
  router.post('/:scope/:id/repair', repair(selectorOf));
  router.get('/global', showOne(global));
  router.post('/global/top-up', topUp(global));
  router.post('/global/reset', reset(global));
  router.get('/:scope/:id', showOne(selectorOf));
  router.post('/:scope/:id/top-up', topUp(selectorOf));
  router.post('/:scope/:id/reset', reset(selectorOf));

  router.use(function budgetAdminErrors(error: unknown, req: Request, res: Response, next: NextFunction) {
    if (error instanceof ApiError) render(error, req, res);
    else next(error);
  });
  return router;
}
