// Routes about operator sessions: who am I (`GET /admin/session`), revoke a subject's sessions, and the dashboard's hook.
import express from 'express';
import type { Request, Response, Router } from 'express';
import { ApiError, contextOf } from '@tollgate/core';
import { noteAudit } from '@tollgate/core/audit';
import { asyncRoute } from '@tollgate/core/checks';
import type { dashboard } from '@tollgate/dashboard';
import { oidcActor } from './admin-auth.js';
import type { OperatorAdmission } from './admin-auth.js';
import { cookieOf, OPERATOR_COOKIE, signOutOperator } from './oidc-sign-in.js';
import type { OperatorSessions } from './operator-sessions.js';

/** `GET /session` and `POST /sessions/revoke`, behind /admin's authentication and role check. */
export function sessionRoutes(admission: OperatorAdmission): Router {
  const router = express.Router();
  router.get('/session', function showSession(_req: Request, res: Response) {
    const who = contextOf(res)?.get('operator.signedIn');
    if (!who) throw new ApiError('invalid_api_key', 'Nobody is signed in.');
    const { session } = who;
    res.setHeader('cache-control', 'no-store');
    res.json({
      ...who.actor,
      ...(who.tenants ? { tenants: who.tenants } : {}),
      ...(session && admission.sessions
        ? {
            subject: session.subject,
            expiresAt: new Date(session.expiresAt).toISOString(),
            csrfToken: admission.sessions.csrfToken(session),
          }
        : {}),
    });
  });
  if (admission.sessions === undefined) return router;
  const { sessions } = admission;
  router.post(
    '/sessions/revoke',
    express.json({ limit: '4kb' }),
    asyncRoute(async function revokeSubjectSessions(req: Request, res: Response) {
      const subject = (req.body as { subject?: unknown } | undefined)?.subject;
      noteAudit(req, res, {
        action: 'sessions.revoke',
        target: typeof subject === 'string' ? `subject:${subject}` : 'subject',
      });
      if (typeof subject !== 'string' || subject.length === 0 || subject.length > 500)
        throw new ApiError('invalid_request', 'subject must be the OIDC `sub` whose sessions end.', {
          param: 'subject',
        });
      await sessions.revokeSubject(subject);
      noteAudit(req, res, { before: null, after: { revoked: subject } });
      res.json({ revoked: subject });
    }),
  );
  return router;
}

/** The dashboard's sign-in with OIDC: a link to /admin/login, and the session an OIDC cookie holds. */
export function operatorSignInOption(
  sessions: OperatorSessions,
): NonNullable<Parameters<typeof dashboard>[0]['operatorSignIn']> {
  return {
    label: 'Sign in with single sign-on',
    href: (req) => `${req.baseUrl.replace(/\/dashboard$/i, '')}/admin/login`,
    async session(req) {
      const session = await sessions.read(cookieOf(req as Request, OPERATOR_COOKIE));
      return (
        session && {
          id: session.id,
          actor: oidcActor(session),
          csrfToken: sessions.csrfToken(session),
          expiresAt: session.expiresAt,
        }
      );
    },
    signOut: (req, res) => signOutOperator(req as Request, res as Response, sessions),
  };
}
