// Guards /admin/*: the admin key (its SHA-256 compared in constant time) or an operator's OIDC session.
import { createHash, timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, getContext, renderApiError } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { ADMIN_KEY_ACTOR, setAuditActor } from '@tollgate/core/audit';
import type { AuditActor, AuditRole } from '@tollgate/core/audit';
import { cookieOf, OPERATOR_COOKIE } from './oidc-sign-in.js';
import type { SignedInOperator } from './operator-access.js';
import { memorySessionRevocations, OperatorSessions, redisSessionRevocations } from './operator-sessions.js';
import type { OperatorSession, RevocationRedis } from './operator-sessions.js';
import type { OperatorOptions } from './operator-options.js';

/** The credential of a request: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
function presentedKey(req: Request): string | undefined {
  const authorization = req.headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match) return match[1];
  }
  const apiKey = req.headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey.length > 0 ? apiKey : undefined;
}

/** What a request presents of the admin key: none, the admin key, or another key. */
export type AdminKeyVerdict = 'absent' | 'admin' | 'invalid';

/** Reads a request's credential against the admin key's SHA-256. */
export function adminKeyVerdict(adminKeySha256: string): (req: Request) => AdminKeyVerdict {
  const expected = Buffer.from(adminKeySha256, 'hex');
  return function judgeAdminKey(req: Request): AdminKeyVerdict {
    const key = presentedKey(req);
    if (key === undefined) return 'absent';
    // Hashing first makes both sides 32 bytes, so timingSafeEqual never leaks the length either.
    const actual = createHash('sha256').update(key).digest();
    return timingSafeEqual(actual, expected) ? 'admin' : 'invalid';
  };
}

/** The 401 of a request without the admin key (`absent`) or with another key. */
export function refuseAdminKey(verdict: Exclude<AdminKeyVerdict, 'admin'>, req: Request, res: Response): void {
  renderApiError(
    new ApiError(
      'invalid_api_key',
      verdict === 'absent' ? 'The admin routes need the admin key.' : 'Invalid admin key.',
      {
        headers: {
          'www-authenticate':
            verdict === 'absent'
              ? 'Bearer realm="tollgate-admin"'
              : 'Bearer realm="tollgate-admin", error="invalid_token"',
        },
      },
    ),
    req,
    res,
  );
}

export function adminKeyAuth(adminKeySha256: string) {
  const judge = adminKeyVerdict(adminKeySha256);
  return function requireAdminKey(req: Request, res: Response, next: NextFunction): void {
    const verdict = judge(req);
    if (verdict === 'admin') next();
    else refuseAdminKey(verdict, req, res);
  };
}

/** How /admin and the dashboard tell who an operator is: the admin key (with its role), or an OIDC session. */
export interface OperatorAdmission {
  /** The admin key's check, when the config has one. */
  judgeKey: ((req: Request) => AdminKeyVerdict) | undefined;
  /** The admin key's role (`operators.keyRole`). */
  keyRole: AuditRole;
  /** OIDC sessions, when `operators.oidc` is configured. */
  sessions: OperatorSessions | undefined;
}

/** The audit trail's name for a signed-in person: their e-mail when the issuer gave one, and always issuer and sub. */
export function oidcActor(session: OperatorSession): AuditActor {
  const subject = `oidc:${session.issuer}#${session.subject}`;
  return { actor: session.email ? `${session.email} (${subject})` : subject, role: session.role, via: 'oidc' };
}

/** Who a request acts as: the admin key, a live session, `invalid` (a wrong key, a dead cookie), or nobody. */
async function operatorOf(
  admission: OperatorAdmission,
  req: Request,
): Promise<{ who: SignedInOperator } | 'invalid' | undefined> {
  const verdict = admission.judgeKey?.(req) ?? (presentedKey(req) === undefined ? 'absent' : 'invalid');
  // A header that is sent is the credential, right or wrong: a bad key is never rescued by a cookie.
  if (verdict === 'admin') return { who: { actor: { ...ADMIN_KEY_ACTOR, role: admission.keyRole } } };
  if (verdict === 'invalid') return 'invalid';
  const cookie = cookieOf(req, OPERATOR_COOKIE);
  if (cookie === undefined || admission.sessions === undefined) return undefined;
  const session = await admission.sessions.read(cookie);
  if (session === undefined) return 'invalid';
  return { who: { actor: oidcActor(session), session, ...(session.tenants ? { tenants: session.tenants } : {}) } };
}

/**
 * Says who a request is when it carries the admin key or a live session, and lets every request on: for the
 * dashboard, which signs in its own sessions and refuses the rest itself.
 */
export function identifyOperator(admission: OperatorAdmission): RequestHandler {
  return function identifyKeyOrSession(req: Request, res: Response, next: NextFunction): void {
    void operatorOf(admission, req).then((found) => {
      if (found !== undefined && found !== 'invalid') {
        getContext(req, res).set('operator.signedIn', found.who);
        setAuditActor(req, res, found.who.actor);
      }
      next();
    }, next);
  };
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Lets in an operator (the admin key in a header, or an OIDC session cookie) and says who it is to the audit trail
 * and the role check. A write with a session cookie must carry the session's CSRF token (`x-csrf-token`, from
 * `GET /admin/session`); nobody else gets past: the app's checks before auth (`beforeAuth`), then a 401.
 */
export function requireOperator(admission: OperatorAdmission, beforeAuth: readonly RequestHandler[]): RequestHandler {
  const checks = beforeAuth.length > 0 ? express.Router().use(...beforeAuth) : undefined;
  return function requireAdminKeyOrSession(req: Request, res: Response, next: NextFunction): void {
    void operatorOf(admission, req).then((found) => {
      if (found !== undefined && found !== 'invalid') {
        const { who } = found;
        const { session } = who;
        if (session && !READS.has(req.method) && !csrfHolds(req, admission.sessions!.csrfToken(session)))
          return next(
            new ApiError('invalid_request', 'A write with a session needs its CSRF token in x-csrf-token.', {
              status: 403,
              param: 'x-csrf-token',
            }),
          );
        getContext(req, res).set('operator.signedIn', who);
        setAuditActor(req, res, who.actor);
        return next();
      }
      const verdict = found === 'invalid' ? 'invalid' : 'absent';
      if (checks === undefined) return refuseAdminKey(verdict, req, res);
      checks(req, res, (error?: unknown) =>
        error === undefined || error === null ? refuseAdminKey(verdict, req, res) : next(error),
      );
    }, next);
  };
}

function csrfHolds(req: Request, expected: string): boolean {
  const token = req.headers['x-csrf-token'];
  if (req.headers['sec-fetch-site'] === 'cross-site' || typeof token !== 'string') return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(token), digest(expected));
}

/**
 * The admission an operator config asks for: the key's check and role, and OIDC sessions when configured, their
 * revocations in the stores' Redis when there is one (every process sees them), else in this process.
 */
export function createOperatorAdmission(operator: OperatorOptions, stores: TollgateStores): OperatorAdmission {
  const { oidc } = operator;
  return {
    judgeKey: operator.adminKeySha256 === undefined ? undefined : adminKeyVerdict(operator.adminKeySha256),
    keyRole: operator.keyRole,
    sessions:
      oidc &&
      new OperatorSessions({
        secret: oidc.sessionSecret ?? OperatorSessions.randomSecret(),
        ttlMs: oidc.sessionTtlMs,
        revocations: isRevocationRedis(stores) ? redisSessionRevocations(stores) : memorySessionRevocations(),
      }),
  };
}

function isRevocationRedis(stores: TollgateStores): stores is TollgateStores & RevocationRedis {
  const redis = stores as Partial<RevocationRedis> & TollgateStores;
  return stores.kind === 'redis' && typeof redis.sendCommand === 'function' && typeof redis.prefix === 'string';
}

/** Whether a request is an operator's (the guard lets it past its blocks): synchronous unless a cookie is read. */
export function isOperatorRequest(admission: OperatorAdmission): (req: Request) => boolean | Promise<boolean> {
  return function isOperator(req: Request) {
    const verdict = admission.judgeKey?.(req);
    if (verdict === 'admin') return true;
    if (verdict === 'invalid' || admission.sessions === undefined) return false;
    const cookie = cookieOf(req, OPERATOR_COOKIE);
    if (cookie === undefined) return false;
    return admission.sessions.read(cookie).then((session) => session !== undefined);
  };
}
