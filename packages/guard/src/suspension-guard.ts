// suspensions: mounted right after authentication; refuses a suspended key (or a key of a suspended tenant) with 403 key_suspended.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, type ErrorRenderer, type Identity } from '@tollgate/core';
import { shadowsRefusal } from '@tollgate/core/checks';
import type { MitigationRegistry } from './mitigation-registry.js';
import type { Mitigation } from './types.js';

function refusal(identity: Identity, suspension: Mitigation): ApiError {
  const who = suspension.subject.startsWith('tenant:')
    ? `Every API key of your organization (${identity.tenantId}) is suspended`
    : 'This API key is suspended';
  return new ApiError('key_suspended', `${who}: ${suspension.reason}. An operator can restore it.`);
}

/**
 * Express middleware: a caller whose key or tenant is suspended gets 403 `key_suspended`, with
 * why and that an operator can restore it. Reads this process's copy of the suspensions only (no
 * I/O), which pub/sub keeps current: a suspension counts in every process as fast as a revocation.
 */
export function suspensionGuard(registry: MitigationRegistry, renderError: ErrorRenderer) {
  return function tollgateSuspensionGuard(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    if (registry.none('suspend')) return next();
    const identity = (req as IncomingMessage & { tollgate?: { identity?: Identity } }).tollgate?.identity;
    const suspension = identity && registry.suspensionOf(identity);
    if (!suspension) return next();
    // A shadow (shadowMode) records the suspension and serves the request.
    if (shadowsRefusal(req, res, 'key_suspended')) return next();
    renderError(refusal(identity, suspension), req, res);
  };
}
