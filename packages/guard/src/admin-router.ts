// guardAdminRouter: the operator's routes: anomalies, mitigations, suspend, lift and unblock; abuse scores and clears.
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { ApiError, renderApiError, type ErrorRenderer } from '@tollgate/core';
import { noteAudit } from '@tollgate/core/audit';
import { assertKnownOptions } from '@tollgate/core/options';
import type { AbuseSubject } from './abuse-features.js';
import type { Guard } from './create-guard.js';

interface GuardAdminRouterOptions {
  /** Renders the 400 and 404 answers. @default core renderApiError */
  renderError?: ErrorRenderer;
}

const ID = /^[\w.:@-]{1,200}$/;

/**
 * An Express router for operators, with no authentication of its own: mount it behind the admin's. Its routes:
 * docs/architecture.md, "The guard's admin routes".
 */
export function guardAdminRouter(guard: Guard, options: GuardAdminRouterOptions = {}): Router {
  assertKnownOptions(options, ['renderError'], 'ERR_TG_GUARD_UNKNOWN_OPTION', 'guardAdminRouter');
  const render = options.renderError ?? renderApiError;
  const router = express.Router();
  router.use('/abuse', abuseAdminRouter(guard, options));
  const body = express.json({ limit: '16kb' });

  const validId = (req: Request, res: Response, next: NextFunction) => {
    const id = req.params.id ?? req.params.address;
    if (typeof id === 'string' && ID.test(id)) return next();
    render(
      new ApiError('invalid_request', 'The id is not a valid key, tenant or address id.', { param: 'id' }),
      req,
      res,
    );
  };
  const subjectOf = (req: Request) =>
    `${req.path.startsWith('/tenants/') ? 'tenant' : 'key'}:${req.params.id}` as `key:${string}` | `tenant:${string}`;
  /** What is in force on a subject (the audit trail's before and after). */
  const inForce = (subject: string) => guard.mitigations().filter((mitigation) => mitigation.subject === subject);
  /** Names the write for the audit trail before anything can refuse it: a refusal is recorded as one. */
  const audited =
    (action: string, target: (req: Request) => string) => (req: Request, res: Response, next: NextFunction) => {
      noteAudit(req, res, { action, target: target(req) });
      next();
    };

  router.get('/', async function listGuardState(_req, res, next) {
    try {
      res.json({ anomalies: await guard.anomalies(50), mitigations: guard.mitigations() });
    } catch (error) {
      next(error);
    }
  });
  router.get('/anomalies', async function listAnomalies(req, res, next) {
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100));
    try {
      res.json({ anomalies: await guard.anomalies(limit) });
    } catch (error) {
      next(error);
    }
  });
  router.get('/mitigations', function listMitigations(_req, res) {
    res.json({ mitigations: guard.mitigations() });
  });
  router.post(
    ['/keys/:id/suspend', '/tenants/:id/suspend'],
    audited('guard.suspend', subjectOf),
    validId,
    body,
    async function suspendSubject(req, res, next) {
      const reason = (req.body as { reason?: unknown } | undefined)?.reason;
      if (reason !== undefined && (typeof reason !== 'string' || reason.length === 0 || reason.length > 500)) {
        return render(
          new ApiError('invalid_request', 'reason must be a string of 1-500 characters.', { param: 'reason' }),
          req,
          res,
        );
      }
      try {
        const before = inForce(subjectOf(req));
        const suspended = await guard.suspend(subjectOf(req), reason as string | undefined);
        noteAudit(req, res, { before, after: inForce(subjectOf(req)) });
        res.json({ suspended });
      } catch (error) {
        next(error);
      }
    },
  );
  const lifting = audited('guard.lift', subjectOf);
  router.post(['/keys/:id/lift', '/tenants/:id/lift'], lifting, validId, async function liftSubject(req, res, next) {
    try {
      const before = inForce(subjectOf(req));
      const lifted = await guard.lift(subjectOf(req));
      noteAudit(req, res, { before, after: inForce(subjectOf(req)) });
      if (lifted.length === 0)
        return render(new ApiError('not_found', `Nothing is in force on ${subjectOf(req)}.`), req, res);
      res.json({ lifted });
    } catch (error) {
      next(error);
    }
  });
  const unblocking = audited('block.clear', (req) => `address:${String(req.params.address)}`);
  router.post('/addresses/:address/unblock', unblocking, validId, async function unblockAddress(req, res, next) {
    try {
      const blockedAs = `ip:${String(req.params.address)}`;
      const before = inForce(blockedAs);
      const unblocked = await guard.unblock(String(req.params.address));
      noteAudit(req, res, { before, after: inForce(blockedAs) });
      if (!unblocked)
        return render(new ApiError('not_found', `Address ${req.params.address} is not blocked.`), req, res);
      res.json({ unblocked: req.params.address });
    } catch (error) {
      next(error);
    }
  });
  return router;
}

const ABUSE_SUBJECT = /^(key|tenant|address):[\w.:@/-]{1,200}$/;

/**
 * The abuse model's routes for operators (the gateway mounts them at `/admin/abuse`, behind the admin key).
 *
 * - `GET /`: `{ model, subjects }`: the model in use (null before it has seen enough subjects) and the latest
 *   scoring, highest first: `subject`, `score`, `action`, `until`, `reasons`.
 * - `DELETE /:subject` (`key:<id>`, `address:<ip>`, `tenant:<id>`): lifts its throttle or block everywhere and
 *   leaves it alone for the action's period: `{ cleared, lifted }`.
 */
export function abuseAdminRouter(guard: Guard, options: GuardAdminRouterOptions = {}): Router {
  assertKnownOptions(options, ['renderError'], 'ERR_TG_GUARD_UNKNOWN_OPTION', 'abuseAdminRouter');
  const render = options.renderError ?? renderApiError;
  const router = express.Router();
  router.get('/', function listAbuse(_req, res) {
    res.json({ model: guard.abuseModel() ?? null, subjects: guard.abuseEntries() });
  });
  router.delete('/:subject', async function clearAbuse(req, res, next) {
    const subject = String(req.params.subject);
    noteAudit(req, res, { action: 'abuse.clear', target: subject.slice(0, 300) });
    if (!ABUSE_SUBJECT.test(subject))
      return render(
        new ApiError('invalid_request', 'The subject must be key:<id>, address:<ip> or tenant:<id>.', {
          param: 'subject',
        }),
        req,
        res,
      );
    try {
      const scored = () => guard.abuseEntries().filter((entry) => entry.subject === subject);
      const before = scored();
      const lifted = await guard.clearAbuse(subject as AbuseSubject);
      noteAudit(req, res, { before, after: { lifted, scored: scored() } });
      res.json({ cleared: subject, lifted });
    } catch (error) {
      next(error);
    }
  });
  return router;
}
