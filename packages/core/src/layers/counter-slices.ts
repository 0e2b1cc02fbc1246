// The leases policy of a token window: the store's answer while it answers in time, else at most a slice of the limit.
import { promised } from '../maybe-promise.js';
import type { MaybePromise } from '../maybe-promise.js';
import { assertStoreNumber } from '../store-input.js';
import { windowPhase, windowStartAt } from '../stores.js';
import type { WindowCounter, WindowResult } from '../stores.js';
import type { LeaseOutage, OutagePolicy } from './lease-outage.js';
import type { CounterPolicy } from './wrap-stores.js';

interface LocalWindow {
  start: number;
  used: number;
}

type ConsumeOptions = { limit: number; windowMs: number; slot?: string };

/**
 * Requests and tokens: per window, a process admits at most `slice × limit` on its own, and only for keys the store
 * answered for within `grantMs`. Those windows are not caught up afterwards: they are rates, and the window an outage
 * spent in ends on its own.
 */
export class CounterSlices implements CounterPolicy {
  readonly #windows = new Map<string, LocalWindow>();

  constructor(
    readonly inner: WindowCounter,
    readonly outage: LeaseOutage,
    readonly policy: OutagePolicy,
  ) {}

  consume(key: string, units: number, opts: ConsumeOptions): MaybePromise<WindowResult> {
    return this.outage.either<WindowResult>(
      () => promised(() => this.inner.consume(key, units, opts)),
      () => this.#consumeLocally(key, units, opts),
      () => this.outage.see(`counter:${key}`),
      (result) =>
        result.allowed &&
        this.inner.adjust(key, -units, {
          windowMs: opts.windowMs,
          windowStart: result.windowStart,
          ...(opts.slot ? { slot: opts.slot } : {}),
        }),
    );
  }

  adjust(
    key: string,
    delta: number,
    opts: { windowMs: number; windowStart: number; slot?: string },
  ): MaybePromise<void> {
    const window = this.#windows.get(key);
    if (!window || window.start !== opts.windowStart) return this.inner.adjust(key, delta, opts);
    window.used = Math.max(0, window.used + delta);
  }

  peek(key: string, opts: { windowMs: number; slot?: string }): Promise<number> {
    return this.inner.peek(key, opts);
  }

  /** The outage is over: the next one grants fresh slices. */
  outageOver(): void {
    this.#windows.clear();
  }

  #consumeLocally(key: string, units: number, opts: ConsumeOptions): WindowResult {
    // Malformed input is refused by the slice as by the store: never an answer counted in NaN.
    assertStoreNumber('counter.consume', 'units', units);
    assertStoreNumber('counter.consume', 'limit', opts.limit);
    assertStoreNumber('counter.consume', 'windowMs', opts.windowMs);
    const now = this.outage.options.clock();
    const start = windowStartAt(now, opts.windowMs, windowPhase(key, opts.windowMs));
    if (this.policy === 'failOpen')
      return {
        allowed: true,
        limit: opts.limit,
        remaining: opts.limit,
        resetAt: now + opts.windowMs,
        retryAfterMs: 0,
        windowStart: start,
      };
    if (!this.outage.granted(`counter:${key}`)) this.outage.exhausted(`limit ${key}`);
    let window = this.#windows.get(key);
    if (!window || window.start !== start) this.#windows.set(key, (window = { start, used: 0 }));
    const cap = Math.floor(this.outage.options.slice * opts.limit);
    const allowed = window.used + units <= cap;
    if (allowed) window.used += units;
    return {
      allowed,
      limit: opts.limit,
      remaining: Math.max(0, cap - window.used),
      resetAt: start + opts.windowMs,
      retryAfterMs: allowed ? 0 : start + opts.windowMs - now,
      windowStart: start,
    };
  }
}
