// concurrencyLimit: at most N requests in flight per key or tenant, released on finish, close and error alike.
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, getContext, parseDuration, TollgateError } from '@tollgate/core';
import type { ErrorRenderer, TollgateStores } from '@tollgate/core';
import { MemoryReservationLedger, unalteredMemoryStore, type ReservationLedger } from '@tollgate/core/store-contracts';
import type { LimitLayer, TierLimit } from './limit-layers.js';
import { LIMITER_CODE, LIMITER_OPTION_NAMES, resolveLimiterOptions } from './limiter-options.js';
import type { ResolvedLimiterOptions } from './limiter-options.js';
import { StoreFailure } from './store-failure.js';
import type { StoreFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { registerLimitCheck, runLimitCheck, type LimitCheck, type LimitReading, type Verdict } from './limit-check.js';
import { readable } from './limit-readings.js';
import type { WaitQueue } from './wait-queue.js';

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
  const config = resolveLimiterOptions(options, {
    factory: FACTORY,
    optionNames: OPTION_NAMES,
    defaultLimit: 10,
    defaultPrefix: 'tg:inflight:',
    memoryStoreOf: ({ ledger }) =>
      unalteredMemoryStore(ledger, MemoryReservationLedger, ['reserve', 'settle', 'release']),
    exactRetryAfter: false,
  });
  const ttlMs = resolveTtl(options.ttl);
  const slots = options.stores ? ledgerSlots(options.stores.ledger, ttlMs) : processSlots();
  // One layer: the options themselves (a concurrency limit takes no `layers`).
  const check = new InFlightCheck(config, config.layers[0]!, slots);
  return registerLimitCheck(function concurrencyLimitMiddleware(
    req: Request,
    res: Response,
    next: NextFunction,
  ): Promise<void> {
    return runLimitCheck(check, req, res, next);
  }, check);
}

/** The slot a request holds: empty `slotId` when a failOpen store let it through without one. */
interface Slot {
  key: string;
  slotId: string;
}

/** The check of one concurrency limit: a slot per request in flight, taken before the handler and given back once. */
class InFlightCheck implements LimitCheck<Slot, { limit: number }> {
  readonly queue: WaitQueue | undefined;
  private readonly failures: StoreFailureHandling;
  private readonly renderError: ErrorRenderer;
  /** What every slot key starts with: the prefix and the limit's name. */
  private readonly keyPrefix: string;

  constructor(
    config: ResolvedLimiterOptions,
    private readonly layer: LimitLayer,
    private readonly slots: SlotCounter,
  ) {
    this.queue = config.queue;
    this.failures = config.failures;
    this.renderError = config.renderError;
    this.keyPrefix = `${config.prefix}${layer.name}:`;
  }

  queueId(req: Request): string {
    return `${this.keyPrefix}${this.layer.keyOf(req)}`;
  }

  async attempt(req: Request, res: Response): Promise<Verdict<Slot, { limit: number }>> {
    const { failures, slots, layer } = this;
    const owner = layer.keyOf(req);
    const key = `${this.keyPrefix}${owner}`;
    const limit = layer.limitOf(req);
    const slotId = `${getContext(req, res).requestId}:inflight:${layer.name}:${randomUUID()}`;
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
  }

  async cancel(slot: Slot): Promise<void> {
    if (slot.slotId) await this.release(slot);
  }

  commit(req: Request, res: Response, slot: Slot): void {
    if (!slot.slotId) return;
    let released = false;
    const releaseOnce = () => {
      if (released) return;
      released = true;
      res.off('finish', releaseOnce);
      res.off('close', releaseOnce);
      res.off('error', releaseOnce);
      void this.release(slot);
    };
    res.once('finish', releaseOnce);
    res.once('close', releaseOnce);
    res.once('error', releaseOnce);
    getContext(req, res).reservations.push({ kind: 'concurrency', id: slot.slotId, amount: 1 });
    // A client gone while the slot was being acquired: 'close' already fired, nobody else will release.
    if (res.destroyed || res.writableFinished) releaseOnce();
  }

  refuse(req: Request, res: Response, refusal: { limit: number } | undefined, waitedMs: number | undefined): void {
    const name = this.layer.name;
    const message = refusal
      ? `Too many concurrent requests (${name}): at most ${refusal.limit} in flight. Please retry when one finishes.`
      : `Too many concurrent requests (${name}): still no free slot after waiting ${waitedMs ?? 0} ms. Please retry when one finishes.`;
    this.renderError(new ApiError('rate_limit_exceeded', message, { headers: { 'Retry-After': 1 } }), req, res);
  }

  unavailable(req: Request, res: Response): void {
    this.renderError(this.failures.unavailable(), req, res);
  }

  async read(req: Request, names: ReadonlySet<string> | undefined): Promise<LimitReading[]> {
    const { layer } = this;
    if (!readable(layer, names)) return [];
    const owner = layer.keyOf(req);
    const limit = layer.limitOf(req);
    const used = await this.failures.call('held', this.slots.held(`${this.keyPrefix}${owner}`, owner));
    const reading = { kind: 'concurrency', layer: layer.name, subject: owner, limit, used } as const;
    return [{ ...reading, remaining: Math.max(0, limit - used), resetAt: undefined, windowMs: undefined }];
  }

  private release(slot: Slot): Promise<void> {
    return this.failures
      .call('release', this.slots.release(slot.key, slot.slotId))
      .catch((error: unknown) => this.failures.report(error))
      .finally(() => this.queue?.notify(slot.key));
  }
}
