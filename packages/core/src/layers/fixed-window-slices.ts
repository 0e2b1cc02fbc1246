// The leases policy of a request window inside combineLimits: the store's count while it answers, else a slice's.
import { promised } from '../maybe-promise.js';
import type { MaybePromise } from '../maybe-promise.js';
import type { FixedWindowCounter } from '../stores.js';
import type { LeaseOutage, OutagePolicy } from './lease-outage.js';
import type { FixedWindowPolicy } from './wrap-stores.js';

interface LocalFixedWindow {
  resetAt: number;
  /** Hits the store counted when it last answered, in the window ending at `resetAt`. */
  known: number;
  local: number;
}

type Hits = { hits: number; resetAt: number };

/** Fixed windows whose limit the caller (express-rate-limit) checks; hits of the slice count 1/slice each. */
export class FixedWindowSlices implements FixedWindowPolicy {
  readonly #windows = new Map<string, LocalFixedWindow>();
  readonly hitBy?: (key: string, windowMs: number, hits: number) => Promise<Hits>;
  readonly giveBackBy?: (key: string, hits: number, minTtlMs: number) => Promise<void>;

  constructor(
    readonly inner: FixedWindowCounter,
    readonly outage: LeaseOutage,
    readonly policy: OutagePolicy,
  ) {
    const { hitBy, giveBackBy } = inner;
    if (typeof hitBy !== 'function' || typeof giveBackBy !== 'function') return;
    this.hitBy = (key, windowMs, hits) => {
      try {
        return Promise.resolve(
          outage.either(
            () => hitBy.call(inner, key, windowMs, hits),
            () => this.#hitLocally(key, windowMs, hits),
            (result) => this.#landed(key, result),
            () => giveBackBy.call(inner, key, hits, 0),
          ),
        );
      } catch (error) {
        return Promise.reject(error);
      }
    };
    this.giveBackBy = (key, hits, minTtlMs) =>
      this.#giveBackLocally(key, hits) ? Promise.resolve() : giveBackBy.call(inner, key, hits, minTtlMs);
  }

  hit(key: string, windowMs: number, limit?: number): MaybePromise<Hits> {
    return this.outage.either(
      () => promised(() => this.inner.hit(key, windowMs, limit)),
      () => this.#hitLocally(key, windowMs, 1),
      (result) => this.#landed(key, result),
      () => this.inner.giveBack(key),
    );
  }

  giveBack(key: string): MaybePromise<void> {
    if (!this.#giveBackLocally(key, 1)) return this.inner.giveBack(key);
  }

  reset(key: string): Promise<void> {
    return this.inner.reset(key);
  }

  peek(key: string): Promise<Hits | undefined> {
    return this.inner.peek(key);
  }

  /** The store has not answered for `key` within `grantMs`: its window is no longer leasable. */
  forget(key: string): void {
    this.#windows.delete(key);
  }

  /** The outage is over: the next one grants fresh slices. */
  outageOver(): void {
    for (const window of this.#windows.values()) window.local = 0;
  }

  /** `hits` hits from the slice while the store is out. */
  #hitLocally(key: string, windowMs: number, hits: number): Hits {
    const now = this.outage.options.clock();
    if (this.policy === 'failOpen') return { hits, resetAt: now + windowMs };
    const known = this.#windows.get(key);
    if (!known || !this.outage.granted(`fixed:${key}`)) this.outage.exhausted(`request window ${key}`);
    // The store's window ended: the next ones start at 0 hits, each a windowMs long.
    if (now >= known.resetAt) Object.assign(known, { resetAt: now + windowMs, known: 0, local: 0 });
    known.local += hits;
    // Each hit of the slice counts as 1/slice of the store's: the caller's limit L then admits at most slice × L here.
    return { hits: known.known + Math.ceil(known.local / this.outage.options.slice), resetAt: known.resetAt };
  }

  #landed(key: string, result: Hits): void {
    this.outage.see(`fixed:${key}`);
    // Updated in place: a hit per request must not allocate a record per request.
    const known = this.#windows.get(key);
    if (!known) {
      this.#windows.set(key, { resetAt: result.resetAt, known: result.hits, local: 0 });
      return;
    }
    known.resetAt = result.resetAt;
    known.known = result.hits;
    known.local = 0;
  }

  #giveBackLocally(key: string, hits: number): boolean {
    const known = this.#windows.get(key);
    if (!this.outage.down || !known || known.local <= 0) return false;
    known.local = Math.max(0, known.local - hits);
    return true;
  }
}
