// Guards /admin/*: the presented key's SHA-256 must equal the configured adminKeySha256 (compared in constant time).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';

/** The credential of a request: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
export function presentedKey(req: Request): string | undefined {
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
