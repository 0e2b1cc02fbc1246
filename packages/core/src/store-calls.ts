// A part's calls as callers make them: the answer at once where the part holds it, else its promise; never a throw.
import type { MaybePromise } from './maybe-promise.js';
import { counterAtOnce, fixedWindowAtOnce, ledgerAtOnce } from './stores.js';
import type {
  AtOnceCallOptions,
  FixedWindowCounter,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  SettledRecord,
  SettleResult,
  WindowCounter,
  WindowResult,
} from './stores.js';

/*
 * Which of a part's two ways answers is the part's business (see WindowCounterAtOnce): these take it once, at a
 * caller's construction, and the caller handles what comes (`whenReady`). A call that throws (bad input) comes back
 * as a rejected promise, as its promise-returning twin would: a caller has one failure path.
 */

export interface CounterCalls {
  consume(
    key: string,
    units: number,
    options: { limit: number; windowMs: number; slot?: string },
  ): MaybePromise<WindowResult>;
  adjust(
    key: string,
    delta: number,
    options: { windowMs: number; windowStart: number; slot?: string },
  ): MaybePromise<void>;
}

export interface FixedWindowCalls {
  hit(key: string, windowMs: number, limit?: number): MaybePromise<{ hits: number; resetAt: number }>;
  giveBack(key: string): MaybePromise<void>;
}

export interface LedgerCalls {
  reserve(request: ReserveRequest, options?: AtOnceCallOptions): MaybePromise<ReserveResult>;
  settle(
    id: string,
    actualAmount: number,
    options?: AtOnceCallOptions,
    records?: readonly SettledRecord[],
  ): MaybePromise<SettleResult>;
  /** A settle of 0. */
  release(id: string, options?: AtOnceCallOptions): MaybePromise<SettleResult>;
}

export function counterCalls(counter: WindowCounter): CounterCalls {
  const atOnce = counterAtOnce(counter);
  if (!atOnce)
    return {
      consume: (key, units, options) => counter.consume(key, units, options),
      adjust: (key, delta, options) => counter.adjust(key, delta, options),
    };
  return {
    consume(key, units, options) {
      try {
        return atOnce.consumeAtOnce(key, units, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    adjust(key, delta, options) {
      try {
        return atOnce.adjustAtOnce(key, delta, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

export function fixedWindowCalls(windows: FixedWindowCounter): FixedWindowCalls {
  const atOnce = fixedWindowAtOnce(windows);
  if (!atOnce)
    return {
      hit: (key, windowMs, limit) => windows.hit(key, windowMs, limit),
      giveBack: (key) => windows.giveBack(key),
    };
  return {
    hit(key, windowMs, limit) {
      try {
        return atOnce.hitAtOnce(key, windowMs, limit);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    giveBack(key) {
      try {
        return atOnce.giveBackAtOnce(key);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

export function ledgerCalls(ledger: ReservationLedger): LedgerCalls {
  const atOnce = ledgerAtOnce(ledger);
  if (!atOnce)
    return {
      reserve: (request) => ledger.reserve(request),
      settle: (id, actualAmount, _options, records) => ledger.settle(id, actualAmount, records),
      release: (id) => ledger.release(id),
    };
  return {
    reserve(request, options) {
      try {
        return atOnce.reserveAtOnce(request, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    settle(id, actualAmount, options, records) {
      try {
        return atOnce.settleAtOnce(id, actualAmount, options, records);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    release(id, options) {
      try {
        return atOnce.releaseAtOnce(id, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}
