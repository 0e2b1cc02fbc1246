// The admin credential: read from a request's headers, checked on its SHA-256 in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request } from 'express';

/** A check of a presented key against the admin key's SHA-256 hex, in constant time. */
export function adminKeyCheck(adminKeySha256: string): (key: string) => boolean {
  const expected = Buffer.from(adminKeySha256, 'hex');
  return function isAdminKey(key: string): boolean {
    // Both sides are 32-byte digests, so the comparison leaks neither the key nor its length.
    return timingSafeEqual(createHash('sha256').update(key).digest(), expected);
  };
}

/** What a request's headers present as its credential. */
type PresentedCredential = { kind: 'none' } | { kind: 'malformed' } | { kind: 'key'; key: string };

/** `Authorization: Bearer <key>` or `x-api-key: <key>`; another `Authorization` scheme is malformed, never ignored. */
export function presentedCredential(req: Request): PresentedCredential {
  const authorization = req.headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    return match ? { kind: 'key', key: match[1]! } : { kind: 'malformed' };
  }
  const apiKey = req.headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey.length > 0 ? { kind: 'key', key: apiKey } : { kind: 'none' };
}
