// readLimits: where a limiter's layers stand for one caller now, read from the stores they count in, counting nothing.
import type { Request, RequestHandler } from 'express';
import type { Identity } from '@tollgate/core';
import { limitCheckOf } from './limit-check.js';

/** Where one limit stands for one caller, as the limiter would compare it with its limit now. */
export interface LimitReading {
  kind: 'requests' | 'tokens' | 'concurrency';
  /** The layer's name (`global`, `tenant`, `key`, or the one you gave it). */
  layer: string;
  /** Whom the layer counts for this caller: `tenant:acme`, `key:k1`, `global`. */
  subject: string;
  /** The caller's limit: its tier's, scaled by a guard's throttle when one slows it down. */
  limit: number;
  /** Requests or tokens counted in the window (a token window's previous minute weighted), or requests in flight. */
  used: number;
  remaining: number;
  /** Epoch ms when the window running now ends; undefined when none runs, and for requests in flight. */
  resetAt: number | undefined;
  /** The window's length; undefined for requests in flight. */
  windowMs: number | undefined;
}

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
