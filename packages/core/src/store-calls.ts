// A part's calls as callers make them: the answer at once where the part holds it, else its promise; never a throw.
import type { FixedWindowCounter, ReservationLedger, WindowCounter } from './stores.js';

/*
 * Which way a call answers is the part's business (stores.ts, "Answered at once or by promise"); the caller handles
 * what comes (`whenReady`). A call that throws (bad input) comes back as a rejected promise, as a promise's failure
 * would: a caller has one failure path.
 */

/** A counter's calls, as callers make them: the part's own shape, never a throw. */
export type CounterCalls = Pick<WindowCounter, 'consume' | 'adjust'>;

export type FixedWindowCalls = Pick<FixedWindowCounter, 'hit' | 'giveBack'>;

export type LedgerCalls = Pick<ReservationLedger, 'reserve' | 'settle' | 'release'>;

// Each call's try is written out, not a closure handed to a helper: these run on every request (docs/performance.md).

export function counterCalls(counter: WindowCounter): CounterCalls {
  return {
    consume(key, units, options) {
      try {
        return counter.consume(key, units, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    adjust(key, delta, options) {
      try {
        return counter.adjust(key, delta, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

export function fixedWindowCalls(windows: FixedWindowCounter): FixedWindowCalls {
  return {
    hit(key, windowMs, limit) {
      try {
        return windows.hit(key, windowMs, limit);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    giveBack(key) {
      try {
        return windows.giveBack(key);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}

export function ledgerCalls(ledger: ReservationLedger): LedgerCalls {
  return {
    reserve(request, options) {
      try {
        return ledger.reserve(request, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    settle(id, actualAmount, records, options) {
      try {
        return ledger.settle(id, actualAmount, records, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    release(id, options) {
      try {
        return ledger.release(id, options);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}
