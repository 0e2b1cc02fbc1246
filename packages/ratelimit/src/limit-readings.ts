// readLimits: where a limiter's layers stand for one caller now, read from the stores they count in, counting nothing.
import type { Request, RequestHandler } from 'express';
import type { Identity } from '@tollgate/core';
import { limitCheckOf, type LimitReading } from './limit-check.js';

/**
 * What a request of `identity` looks like to a layer: `by` ('key', 'tenant', 'user', 'tier', 'global') and the tier's
 * limit read `req.tollgate.identity` alone (a guard's `limitScale` too). Layers counted by a function of yours are
 * not read: there is no request to call it with.
 */
function requestOf(identity: Identity): Request {
  return { tollgate: { identity }, socket: {} } as unknown as Request;
}

/**
 * Where each layer of `limiter` stands for the caller `identity` now: a tieredRateLimit's, tokenRateLimit's or
 * concurrencyLimit's, or those of every limiter in a combineLimits (others, such as budgetGuard, add none). It
 * reads the same stores the limiter counts in, through the same wrappers (a block this process holds counts only
 * what it handed out), and counts nothing. `layers` keeps the layers of those names only (and spares reading the
 * others). A store that fails or answers past the limiter's deadline rejects the promise.
 */
export async function readLimits(
  limiter: RequestHandler,
  identity: Identity,
  options: { layers?: readonly string[] } = {},
): Promise<LimitReading[]> {
  const check = limitCheckOf(limiter);
  if (!check?.read) return [];
  return check.read(requestOf(identity), options.layers ? new Set(options.layers) : undefined);
}

/** Whether a limiter reads a layer: one of the names asked for (all without names), counted by what readLimits resolves. */
export function readable(layer: { name: string; custom: boolean }, names: ReadonlySet<string> | undefined): boolean {
  return !layer.custom && (names === undefined || names.has(layer.name));
}
