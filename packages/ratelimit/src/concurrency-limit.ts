// concurrencyLimit: at most N requests in flight per key or tenant, released on finish, close and error alike.
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, getContext, parseDuration, TollgateError, type TollgateStores } from '@tollgate/core';
import { MemoryReservationLedger, unalteredMemoryStore, type ReservationLedger } from '@tollgate/core/store-contracts';
import type { TierLimit } from './limit-layers.js';
import { LIMITER_CODE, LIMITER_OPTION_NAMES, resolveLimiterOptions } from './limiter-options.js';
import { StoreFailure } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { registerLimitCheck, runLimitCheck, type LimitCheck } from './limit-check.js';
import { readable } from './limit-readings.js';

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

const OPTION_NAMES = ['limit', 'tiers', 'defaultTier', 'name', 'by', 'stores', 'ttl', ...LIMITER_OPTION_NAMES] as const;
const FACTORY = 'concurrencyLimit';

/** Where slots are counted: this process, or a ledger shared by many. */
interface SlotCounter {
  /** `owner`: whom the limit counts (`key:k1`, `tenant:acme`), the scope's slot on a sharded ledger. */
  acquire(key: string, owner: string, limit: number, slotId: string): Promise<boolean>;
  release(key: string, slotId: string): Promise<void>;
  /** The slots held now under `key`. */
  held(key: string, owner: string): Promise<number>;
}

function processSlots(): SlotCounter {
  // Slot ids per key: releasing an id twice, or one never granted, changes nothing.
  const inFlight = new Map<string, Set<string>>();
  return {
    async acquire(key, _owner, limit, slotId) {
      const held = inFlight.get(key) ?? new Set<string>();
      if (held.size >= limit) return false;
      held.add(slotId);
      inFlight.set(key, held);
      return true;
    },
    async release(key, slotId) {
      const held = inFlight.get(key);
      if (!held) return;
      held.delete(slotId);
      if (held.size === 0) inFlight.delete(key);
    },
    async held(key) {
      return inFlight.get(key)?.size ?? 0;
    },
  };
}

/** One ledger reservation of 1 per request in flight; the ledger's TTL frees what a crash left. */
function ledgerSlots(ledger: ReservationLedger, ttlMs: number): SlotCounter {
  return {
    async acquire(key, owner, limit, slotId) {
      const result = await ledger.reserve({
        id: slotId,
        amount: 1,
        scopes: [{ key, limit, expiresAt: Date.now() + ttlMs, slot: owner }],
        ttlMs,
      });
      return result.ok;
    },
    async release(_key, slotId) {
      await ledger.release(slotId);
    },
    async held(key, owner) {
      const [usage] = await ledger.usage([{ key, slot: owner }]);
      return usage?.reserved ?? 0;
    },
  };
}

function resolveTtl(ttl: number | string | undefined): number {
  try {
    return parseDuration(ttl ?? '10m', `${FACTORY}() ttl`);
  } catch (error) {
    throw new TollgateError(`${LIMITER_CODE}_INVALID_TTL`, (error as Error).message.replace(/ \(ERR_.*$/, ''), {
      cause: error,
    });
  }
}

/** Limits the requests in flight at once per caller; a slot is released exactly once, however the response ends. */
export function concurrencyLimit(options: ConcurrencyLimitOptions = {}): RequestHandler {
  const {
    failures,
    renderError,
    prefix,
    layers: [layer],
    queue,
  } = resolveLimiterOptions(options, {
    factory: FACTORY,
    optionNames: OPTION_NAMES,
    defaultLimit: 10,
    defaultPrefix: 'tg:inflight:',
    memoryStoreOf: ({ ledger }) =>
      unalteredMemoryStore(ledger, MemoryReservationLedger, ['reserve', 'settle', 'release']),
    exactRetryAfter: false,
  });
  const ttlMs = resolveTtl(options.ttl);
  // One layer: the options themselves (a concurrency limit takes no `layers`).
  const { name, keyOf, limitOf } = layer!;
  const slots = options.stores ? ledgerSlots(options.stores.ledger, ttlMs) : processSlots();

  interface Slot {
    key: string;
    slotId: string;
  }

  function release(slot: Slot): Promise<void> {
    return failures
      .call('release', slots.release(slot.key, slot.slotId))
      .catch((error: unknown) => failures.report(error))
      .finally(() => queue?.notify(slot.key));
  }

  const check: LimitCheck<Slot, { limit: number }> = {
    queue,
    queueId: (req) => `${prefix}${name}:${keyOf(req)}`,
    async attempt(req, res) {
      const owner = keyOf(req);
      const key = `${prefix}${name}:${owner}`;
      const limit = limitOf(req);
      const slotId = `${getContext(req, res).requestId}:inflight:${name}:${randomUUID()}`;
      try {
        const acquired = await failures.call('acquire', slots.acquire(key, owner, limit, slotId));
        // Retried by the head of the wait queue when woken (a local release) or polling (another process's).
        return acquired
          ? { kind: 'allowed', value: { key, slotId } }
          : { kind: 'denied', value: { limit }, retryAfterMs: 0, code: 'rate_limit_exceeded' };
      } catch (error) {
        if (!(error instanceof StoreFailure)) throw error;
        failures.report(error);
        // A timed-out acquire may still land: release it by id (harmless if it never did) rather than hold it for the TTL.
        slots.release(key, slotId).catch(() => undefined);
        // failOpen: through without a slot, so there is nothing to release.
        return failures.policy === 'failClosed'
          ? { kind: 'unavailable' }
          : { kind: 'allowed', value: { key, slotId: '' } };
      }
    },
    cancel: async (slot) => {
      if (slot.slotId) await release(slot);
    },
    commit(req, res, slot) {
      if (!slot.slotId) return;
      let released = false;
      const releaseOnce = () => {
        if (released) return;
        released = true;
        res.off('finish', releaseOnce);
        res.off('close', releaseOnce);
        res.off('error', releaseOnce);
        void release(slot);
      };
      res.once('finish', releaseOnce);
      res.once('close', releaseOnce);
      res.once('error', releaseOnce);
      getContext(req, res).reservations.push({ kind: 'concurrency', id: slot.slotId, amount: 1 });
      // A client gone while the slot was being acquired: 'close' already fired, nobody else will release.
      if (res.destroyed || res.writableFinished) releaseOnce();
    },
    refuse(req, res, refusal, waitedMs) {
      const message = refusal
        ? `Too many concurrent requests (${name}): at most ${refusal.limit} in flight. Please retry when one finishes.`
        : `Too many concurrent requests (${name}): still no free slot after waiting ${waitedMs ?? 0} ms. Please retry when one finishes.`;
      renderError(new ApiError('rate_limit_exceeded', message, { headers: { 'Retry-After': 1 } }), req, res);
    },
    unavailable(req, res) {
      renderError(failures.unavailable(), req, res);
    },
    async read(req, names) {
      if (!readable(layer!, names)) return [];
      const owner = keyOf(req);
      const limit = limitOf(req);
      const used = await failures.call('held', slots.held(`${prefix}${name}:${owner}`, owner));
      const reading = { kind: 'concurrency', layer: name, subject: owner, limit, used } as const;
      return [{ ...reading, remaining: Math.max(0, limit - used), resetAt: undefined, windowMs: undefined }];
    },
  };

  return registerLimitCheck(function concurrencyLimitMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}
