// Who may see the dashboard: the admin key in a header, or a browser session opened with it; CSRF tokens on every write.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { parseCookie } from 'cookie';
import { ApiError, contextOf, getContext, renderApiError } from '@tollgate/core';
import { setAuditActor } from '@tollgate/core/audit';
import { presentedCredential } from './admin-key.js';
import { AdminSessions, isMaskedToken, randomToken, tokensEqual } from './admin-sessions.js';
import type { AdminSession } from './admin-sessions.js';
import type { DashboardConfig } from './options.js';
import { renderSignIn } from './sign-in-page.js';
import { asyncRoute, wantsJson } from './responses.js';
import { dashboardPath } from './text-checks.js';

const SESSION_COOKIE = 'tg_dashboard_session';
/** Holds the sign-in form's token until the form comes back: a page elsewhere cannot sign you in to its own session. */
const SIGN_IN_COOKIE = 'tg_dashboard_sign_in';
const SIGN_IN_TTL_MS = 3_600_000;
/** A key longer than this is no key; refusing it early keeps hashing cheap. */
const MAX_KEY_LENGTH = 4096;

/** How the request was let in. */
export type Admin = { via: 'key' } | { via: 'session'; id: string; session: AdminSession };

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** How the admin request was let in (requireAdmin). */
    'dashboard.admin': Admin;
  }
}

export function adminOf(res: Response): Admin {
  const admin = contextOf(res)?.get('dashboard.admin');
  if (!admin) throw new Error('dashboard: a route behind requireAdmin ran without an admin');
  return admin;
}

function cookies(req: Request): Record<string, string | undefined> {
  const header = req.headers.cookie;
  return typeof header === 'string' ? parseCookie(header) : {};
}

/** The cookie's path: only the dashboard's own requests carry it. */
function cookiePath(req: Request): string {
  return req.baseUrl || '/';
}

function cookieOptions(req: Request, config: DashboardConfig, maxAgeMs: number) {
  return {
    httpOnly: true,
    sameSite: 'strict' as const,
    secure: config.secureCookie === 'auto' ? req.secure : config.secureCookie,
    path: cookiePath(req),
    maxAge: maxAgeMs,
  };
}

/** A place to return to after signing in: a page of this dashboard other than the sign-in form. */
function safeNext(value: unknown, base: string): string | undefined {
  const path = dashboardPath(value, base);
  return path === undefined || path.startsWith(`${base}/login`) ? undefined : path;
}

function refuseCredential(req: Request, res: Response, sent: boolean): void {
  const realm = 'Bearer realm="tollgate-dashboard"';
  renderApiError(
    new ApiError(
      'invalid_api_key',
      sent
        ? 'Invalid admin key.'
        : 'The dashboard needs the admin key: sign in, or send "Authorization: Bearer <admin key>".',
      {
        headers: { 'www-authenticate': sent ? `${realm}, error="invalid_token"` : realm },
      },
    ),
    req,
    res,
  );
}

/**
 * A request not let in meets the app's checks before auth (`beforeAuth`) first: a blocked address is answered by them,
 * and the refusal that follows is counted by the app's auth-failure limit as on its own routes.
 */
function refuseAfterChecks(
  config: DashboardConfig,
  req: Request,
  res: Response,
  next: NextFunction,
  refuse: () => void,
) {
  if (config.beforeAuth === undefined) return refuse();
  config.beforeAuth(req, res, (error?: unknown) => (error === undefined || error === null ? refuse() : next(error)));
}

/** Lets in the admin (a valid key in a header, or a live session) and nobody else. */
export function requireAdmin(config: DashboardConfig, sessions: AdminSessions): RequestHandler {
  return asyncRoute(async function requireAdminKeyOrSession(req: Request, res: Response, next: NextFunction) {
    const context = getContext(req, res);
    const credential = presentedCredential(req);
    if (credential.kind !== 'none') {
      // A header that is sent is the credential, right or wrong: a bad key is never rescued by a cookie.
      if (
        credential.kind === 'key' &&
        credential.key.length <= MAX_KEY_LENGTH &&
        (await config.authorize(credential.key))
      ) {
        context.set('dashboard.admin', { via: 'key' });
        setAuditActor(req, res, config.keyActor);
        next();
        return;
      }
      refuseAfterChecks(config, req, res, next, () => refuseCredential(req, res, true));
      return;
    }
    const operator = await config.operatorSignIn?.session(req);
    if (operator) {
      const session = sessions.adopt(operator);
      context.set('dashboard.admin', { via: 'session', id: `operator:${operator.id}`, session });
      setAuditActor(req, res, operator.actor);
      next();
      return;
    }
    const id = cookies(req)[SESSION_COOKIE];
    const session = sessions.find(id);
    if (session && id !== undefined) {
      context.set('dashboard.admin', { via: 'session', id, session });
      setAuditActor(req, res, session.actor ?? { ...config.keyActor, via: 'dashboard-session' });
      next();
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && !wantsJson(req, res)) {
      res.redirect(303, `${req.baseUrl}/login?next=${encodeURIComponent(req.originalUrl)}`);
      return;
    }
    refuseAfterChecks(config, req, res, next, () => refuseCredential(req, res, false));
  });
}

/**
 * A write from a browser session must carry the session's CSRF token (form field `_csrf` or
 * header `x-csrf-token`). A request with the key in a header carries no ambient credential, so it
 * needs none. A cross-site request (Fetch metadata) is refused even with a token.
 */
export function requireCsrf(req: Request, res: Response, next: NextFunction): void {
  const admin = adminOf(res);
  if (admin.via === 'key') {
    next();
    return;
  }
  const body = req.body as Record<string, unknown> | undefined;
  const token = typeof body?._csrf === 'string' ? body._csrf : req.headers['x-csrf-token'];
  const crossSite = req.headers['sec-fetch-site'] === 'cross-site';
  if (crossSite || typeof token !== 'string' || !isMaskedToken(token, admin.session.csrfToken)) {
    next(
      new ApiError('invalid_request', 'Missing or wrong CSRF token: reload the page and try again.', {
        status: 403,
        param: '_csrf',
      }),
    );
    return;
  }
  next();
}

/** GET and POST /login, POST /logout. */
export function signInRoutes(config: DashboardConfig, sessions: AdminSessions): Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 });

  const showForm = (req: Request, res: Response, status: number, next: string | undefined, error?: string) => {
    const formToken = randomToken();
    res.cookie(SIGN_IN_COOKIE, formToken, cookieOptions(req, config, SIGN_IN_TTL_MS));
    res
      .status(status)
      .type('html')
      .send(
        renderSignIn({
          base: req.baseUrl,
          title: config.title,
          formToken,
          next,
          error,
          ...(config.operatorSignIn
            ? { operatorSignIn: { label: config.operatorSignIn.label, href: config.operatorSignIn.href(req) } }
            : {}),
        }),
      );
  };

  router.get('/login', function showSignIn(req: Request, res: Response) {
    const next = safeNext(req.query.next, req.baseUrl);
    if (sessions.find(cookies(req)[SESSION_COOKIE])) {
      res.redirect(303, next ?? `${req.baseUrl}/`);
      return;
    }
    showForm(req, res, 200, next);
  });

  router.post(
    '/login',
    form,
    asyncRoute(async function signIn(req: Request, res: Response, nextHandler: NextFunction) {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const next = safeNext(body.next, req.baseUrl);
      const formToken = cookies(req)[SIGN_IN_COOKIE];
      if (typeof body._csrf !== 'string' || formToken === undefined || !tokensEqual(body._csrf, formToken)) {
        showForm(req, res, 403, next, 'The sign-in form expired. Enter the key again.');
        return;
      }
      const key = body.key;
      if (
        typeof key !== 'string' ||
        key.length === 0 ||
        key.length > MAX_KEY_LENGTH ||
        !(await config.authorize(key))
      ) {
        // Told apart from other guesses by the auth-failure limit, as a key in a header is.
        if (typeof key === 'string') getContext(req, res).presentedCredential = key.slice(0, MAX_KEY_LENGTH);
        refuseAfterChecks(config, req, res, nextHandler, () =>
          showForm(req, res, 401, next, 'That is not the admin key.'),
        );
        return;
      }
      // A new session id at every sign-in: an id planted before it is worth nothing.
      sessions.close(cookies(req)[SESSION_COOKIE]);
      const { id } = sessions.open();
      res.cookie(SESSION_COOKIE, id, cookieOptions(req, config, config.sessionTtlMs));
      res.clearCookie(SIGN_IN_COOKIE, { path: cookiePath(req) });
      res.redirect(303, next ?? `${req.baseUrl}/`);
    }),
  );

  router.post(
    '/logout',
    form,
    requireAdmin(config, sessions),
    requireCsrf,
    asyncRoute(async function signOut(req: Request, res: Response) {
      const admin = adminOf(res);
      if (admin.via === 'session') sessions.close(admin.id);
      await config.operatorSignIn?.signOut(req, res);
      res.clearCookie(SESSION_COOKIE, { path: cookiePath(req) });
      res.redirect(303, `${req.baseUrl}/login`);
    }),
  );

  return router;
}
