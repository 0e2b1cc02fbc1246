// Who a limit is counted against: an identity field, one global id, or the client IP (IPv6 by subnet).
import type { Request } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { TollgateError, type Identity } from '@tollgate/core';
import type { LimitBy } from './types.js';

export type LimitKeyResolver = (req: Request) => string;

const BY_NAMES = ['key', 'user', 'tenant', 'tier', 'global'] as const;

function identityOf(req: Request): Identity | undefined {
  return (req as Partial<Request>).tollgate?.identity;
}

/** The client address, IPv6 collapsed to its /56 subnet so one host cannot rotate around a limit. */
function clientAddress(req: Request): string {
  const address = req.ip ?? req.socket.remoteAddress;
  return address ? `ip:${ipKeyGenerator(address)}` : 'ip:unknown';
}

/** Builds, once, the function that names the counter a request is charged to. */
export function limitKeyResolver(by: LimitBy, code: string): LimitKeyResolver {
  if (typeof by === 'function') {
    return (req) => {
      const id = by(req);
      return typeof id === 'string' && id.length > 0 ? `id:${id}` : clientAddress(req);
    };
  }
  switch (by) {
    case 'global':
      return () => 'global';
    case 'key':
      return (req) => {
        const identity = identityOf(req);
        return identity ? `key:${identity.keyId}` : clientAddress(req);
      };
    case 'user':
      return (req) => {
        const identity = identityOf(req);
        if (!identity) return clientAddress(req);
        // A key that names no user is its own user: counting it elsewhere would pool strangers.
        return identity.userId ? `user:${identity.userId}` : `key:${identity.keyId}`;
      };
    case 'tenant':
      return (req) => {
        const identity = identityOf(req);
        if (!identity) return clientAddress(req);
        return identity.tenantId ? `tenant:${identity.tenantId}` : `key:${identity.keyId}`;
      };
    case 'tier':
      return (req) => {
        const identity = identityOf(req);
        if (!identity) return clientAddress(req);
        // Callers without a tier share one pool rather than escaping the limit.
        return `tier:${identity.tier ?? '(none)'}`;
      };
    default:
      throw new TollgateError(
        code,
        `"by" must be one of ${BY_NAMES.join(', ')} or a function; got ${JSON.stringify(by)}`,
      );
  }
}

/** The caller's tier, if any. */
export function tierOf(req: Request): string | undefined {
  return identityOf(req)?.tier;
}
