// authFailures: mounted before authentication; counts the 401s each client address causes and blocks an address past the limit.
import { hash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, contextOf, type ErrorRenderer } from '@tollgate/core';
import { isAbuseMitigation } from './abuse-actions.js';
import type { Alerts } from './alerts.js';
import { clientAddress } from './client-address.js';
import type { ResolvedAuthFailures } from './guard-options.js';
import type { GuardStore } from './guard-store.js';
import type { MitigationRegistry } from './mitigation-registry.js';

interface AuthFailureGuardParts {
  config: ResolvedAuthFailures;
  store: GuardStore;
  registry: MitigationRegistry;
  alerts: Alerts;
  renderError: ErrorRenderer;
  onStoreError: (error: unknown) => void;
}

/** What a failed request tried, without keeping it: a short digest of its credential headers (or of a form's key). */
export function credentialDigest(req: IncomingMessage, res: ServerResponse): string {
  const { authorization, 'x-api-key': apiKey } = req.headers;
  const presented = contextOf(res)?.presentedCredential;
  if (authorization === undefined && apiKey === undefined && presented === undefined) return 'none';
  const headers = `${String(authorization ?? '').slice(0, 8192)}\n${String(apiKey ?? '').slice(0, 8192)}`;
  return hash(
    'sha256',
    presented === undefined ? headers : `${headers}\n${presented.slice(0, 8192)}`,
    'base64url',
  ).slice(0, 16);
}

/**
 * Express middleware for before authentication. A blocked address gets 429
 * `auth_failures_exceeded` with `Retry-After` at once (from this process's copy of the blocks: no
 * I/O); any other request goes on, and when its answer is a 401, whichever middleware sent it, the
 * failure is counted for the address after the answer. Past `max` failures, or `distinctKeys`
 * distinct credentials, in one window the address is blocked in every process for `block`, and an
 * `auth_flood` event goes out (once per window).
 */
export function authFailureGuard(parts: AuthFailureGuardParts) {
  const { config, store, registry, alerts, renderError, onStoreError } = parts;
  /** Windows this process already blocked for: the 401s still in flight from them need no second block. */
  const blockedWindows = new Set<string>();

  function refuseBlocked(req: IncomingMessage, res: ServerResponse, until: number, now: number): void {
    const seconds = Math.max(1, Math.ceil((until - now) / 1000));
    renderError(
      new ApiError(
        'auth_failures_exceeded',
        `Too many failed authentications from your address. Try again in ${seconds}s.`,
        { headers: { 'Retry-After': seconds } },
      ),
      req,
      res,
    );
  }

  async function countFailure(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const address = clientAddress(req);
    const count = await store.countAuthFailure(address, credentialDigest(req, res), config.windowMs);
    const stuffing = count.distinct >= config.distinctKeys;
    if (count.failures <= config.max && !stuffing) return;
    const window = `${address}@${count.windowStart}`;
    if (blockedWindows.has(window)) return;
    if (blockedWindows.size >= 10_000) blockedWindows.clear();
    blockedWindows.add(window);
    const reason = stuffing
      ? `${count.distinct} different credentials failed from this address`
      : `${count.failures} failed authentications from this address`;
    const block = await registry.put({ kind: 'block', subject: `ip:${address}`, reason }, config.blockMs);
    alerts.emit({
      type: 'auth_flood',
      id: `auth_flood:${window}`,
      address,
      message: `Address ${address} blocked for ${Math.round(config.blockMs / 1000)}s: ${reason} within ${config.windowMs / 1000}s.`,
      details: {
        failures: count.failures,
        distinctCredentials: count.distinct,
        until: new Date(block.until ?? 0).toISOString(),
      },
    });
  }

  // One shared listener (no closure per request): `this` is the response.
  function countIfUnauthorized(this: ServerResponse): void {
    if (this.statusCode !== 401) return;
    countFailure(this.req, this).catch(onStoreError);
  }

  return function tollgateAuthFailureGuard(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    if (!registry.none('block')) {
      const now = Date.now();
      const block = registry.get('block', `ip:${clientAddress(req)}`, now);
      // The abuse model's blocks are its own checks' to answer (403 abuse_blocked).
      if (block && !isAbuseMitigation(block)) return refuseBlocked(req, res, block.until ?? now + config.blockMs, now);
    }
    res.on('finish', countIfUnauthorized);
    next();
  };
}
