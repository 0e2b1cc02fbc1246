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

export function adminKeyAuth(adminKeySha256: string) {
  const expected = Buffer.from(adminKeySha256, 'hex');
  return function requireAdminKey(req: Request, res: Response, next: NextFunction): void {
    const key = presentedKey(req);
    // Hashing first makes both sides 32 bytes, so timingSafeEqual never leaks the length either.
    const actual = createHash('sha256')
      .update(key ?? '')
      .digest();
    if (key !== undefined && timingSafeEqual(actual, expected)) {
      next();
      return;
    }
    renderApiError(
      new ApiError(
        'invalid_api_key',
        key === undefined ? 'The admin routes need the admin key.' : 'Invalid admin key.',
        {
          headers: {
            'www-authenticate':
              key === undefined
                ? 'Bearer realm="tollgate-admin"'
                : 'Bearer realm="tollgate-admin", error="invalid_token"',
          },
        },
      ),
      req,
      res,
    );
  };
}
