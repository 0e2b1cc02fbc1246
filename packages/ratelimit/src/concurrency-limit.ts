// concurrencyLimit: at most N requests in flight per key or tenant, released on finish, close and error alike.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, assertKnownOptions, getContext, parseDuration, renderApiError, TollgateError, type ReservationLedger, type TollgateStores } from '@tollgate/core';
import { resolveLayers, type TierLimit } from './limit-layers.js';
import { StoreFailure, storeFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { QUEUE_HEADER, resolveWaitOptions, WaitQueue } from './wait-queue.js';

export interface ConcurrencyLimitOptions extends CommonLimitOptions {
  /**
   * Requests in flight at once, for callers whose tier is not in `tiers`.
   * @default 10
   */
  limit?: number;
  /** In-flight limit per tier, by the caller's `identity.tier`. */
  tiers?: Record<string, TierLimit>;
  /**
   * The tier used for callers without a tier, or with a tier missing from `tiers`.
   * @default 'free'
   */
  defaultTier?: string;
  /**
   * Names the limit in messages and store keys.
   * @default the `by` value
   */
  name?: string;
  /**
   * Stores whose reservation ledger holds the slots, so every process sharing them shares
   * the limit (`@tollgate/redis`). Without stores the slots are counted in this process only.
   * @default this process only
   */
  stores?: TollgateStores;
  /**
   * A slot held longer than this is freed by itself: the leftovers of a crashed process
   * expire. Must exceed your longest request (streams included). Ms or `"10m"`.
   * @default '10m'
   */
  ttl?: number | string;
  /**
   * Prefix of the ledger scope keys.
   * @default 'tg:inflight:'
   */
  prefix?: string;
  /** Wait (FIFO per caller, at most `maxMs`) for a slot instead of answering 429. */
  wait?: WaitOptions;
}

const OPTION_NAMES = ['limit', 'tiers', 'defaultTier', 'name', 'by', 'stores', 'ttl', 'prefix', 'wait', 'onStoreFailure', 'timeoutMs', 'onStoreError', 'renderError'] as const;
const CODE = 'ERR_TG_RATELIMIT';
const FACTORY = 'concurrencyLimit';

/** Where slots are counted: this process, or a ledger shared by many. */
interface SlotCounter {
  acquire(key: string, limit: number, slotId: string): Promise<boolean>;
  release(key: string, slotId: string): Promise<void>;
}

function processSlots(): SlotCounter {
  const inFlight = new Map<string, number>();
  return {
    async acquire(key, limit) {
      const count = inFlight.get(key) ?? 0;
      if (count >= limit) return false;
      inFlight.set(key, count + 1);
      return true;
    },
    async release(key) {
      const count = (inFlight.get(key) ?? 0) - 1;
      if (count > 0) inFlight.set(key, count);
      else inFlight.delete(key);
    },
  };
}

/** One ledger reservation of 1 per request in flight; the ledger's TTL frees what a crash left. */
function ledgerSlots(ledger: ReservationLedger, ttlMs: number): SlotCounter {
  return {
    async acquire(key, limit, slotId) {
      const result = await ledger.reserve({ id: slotId, amount: 1, scopes: [{ key, limit, expiresAt: Date.now() + ttlMs }], ttlMs });
      return result.ok;
    },
    async release(_key, slotId) {
      await ledger.release(slotId);
    },
  };
}

/** Limits the requests in flight at once per caller; a slot is released exactly once, however the response ends. */
export function concurrencyLimit(options: ConcurrencyLimitOptions = {}): RequestHandler {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, FACTORY);
  const failures = storeFailureHandling(options, FACTORY, CODE);
  const renderError = options.renderError ?? renderApiError;
  const prefix = options.prefix ?? 'tg:inflight:';
  let ttlMs: number;
  try {
    ttlMs = parseDuration(options.ttl ?? '10m', `${FACTORY}() ttl`);
  } catch (error) {
    throw new TollgateError(`${CODE}_INVALID_TTL`, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
  const [layer] = resolveLayers(
    { name: options.name, by: options.by, limit: options.limit, tiers: options.tiers, defaultTier: options.defaultTier },
    { factory: FACTORY, codePrefix: CODE, defaultLimit: 10 },
  );
  const { name, keyOf, limitOf } = layer!;
  const slots = options.stores ? ledgerSlots(options.stores.ledger, ttlMs) : processSlots();
  const waitSettings = resolveWaitOptions(options.wait, FACTORY, CODE);
  const queue = waitSettings && new WaitQueue(waitSettings, { exactRetryAfter: false });

  return async function concurrencyLimitMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    try {
      const context = getContext(req, res);
      const key = `${prefix}${name}:${keyOf(req)}`;
      const limit = limitOf(req);
      const slotId = `${context.requestId}:inflight:${name}:${Math.random().toString(36).slice(2, 10)}`;
      const acquire = () => failures.call('acquire', slots.acquire(key, limit, slotId));

      let acquired: boolean;
      try {
        if (queue) {
          const outcome = await queue.run<boolean>(key, res, async () => {
            const ok = await acquire();
            return ok ? { ok: true, value: true } : { ok: false, value: false, retryAfterMs: 0 };
          });
          if (outcome.status === 'aborted') return;
          if (!res.headersSent) res.setHeader(QUEUE_HEADER, String(outcome.waitedMs));
          acquired = outcome.status === 'ok';
        } else {
          acquired = await acquire();
        }
      } catch (error) {
        if (!(error instanceof StoreFailure)) throw error;
        failures.report(error);
        if (failures.policy === 'failClosed') renderError(failures.unavailable(), req, res);
        else next();
        return;
      }

      if (!acquired) {
        const message = `Too many concurrent requests (${name}): at most ${limit} in flight. Please retry when one finishes.`;
        renderError(new ApiError('rate_limit_exceeded', message, { headers: { 'Retry-After': 1 } }), req, res);
        return;
      }

      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        res.off('finish', release);
        res.off('close', release);
        res.off('error', release);
        failures.call('release', slots.release(key, slotId))
          .catch((error: unknown) => failures.report(error))
          .finally(() => queue?.notify(key));
      };
      res.once('finish', release);
      res.once('close', release);
      res.once('error', release);
      context.reservations.push({ kind: 'concurrency', id: slotId, amount: 1 });
      // A client gone while the slot was being acquired: 'close' already fired, nobody else will release.
      if (res.destroyed || res.writableFinished) release();
      next();
    } catch (error) {
      next(error);
    }
  };
}
