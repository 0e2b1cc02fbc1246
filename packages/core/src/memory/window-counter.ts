// In-memory weighted sliding-window counter: two fixed windows per key, the previous one weighted by overlap.
import { assertStoreNumber } from '../store-input.js';
import { windowPhase, windowStartAt } from '../stores.js';
import type { WindowCounter, WindowResult } from '../stores.js';

interface WindowState {
  /** Start of the current fixed window. */
  start: number;
  count: number;
  /** Units counted in the fixed window that ended at `start`. */
  previous: number;
  /** The key's `windowPhase`, computed once. */
  phase: number;
}

/**
 * Ms until `units` more fit under `limit`, assuming nothing else is consumed meanwhile:
 * the previous window's weight fades linearly, the current window fades after it ends.
 * Shared with the Redis script so both stores answer the same.
 */
export function windowRetryAfterMs(
  now: number,
  start: number,
  windowMs: number,
  count: number,
  previous: number,
  units: number,
  limit: number,
): number {
  const untilReset = start + windowMs - now;
  if (units > limit) return untilReset;
  const weighted = previous * (untilReset / windowMs);
  const excess = weighted + count + units - limit;
  if (excess <= 0) return 0;
  if (previous > 0 && excess <= weighted) return Math.max(1, Math.ceil((excess * windowMs) / previous));
  return untilReset + Math.max(1, Math.ceil(windowMs * (1 - (limit - units) / count)));
}

/**
 * Sliding-window counter for one process. Memory stays bounded: a key is forgotten two windows after its last use.
 * Its work is synchronous, so besides the `WindowCounter` calls it offers `consumeSync` and `adjustSync`, which
 * answer at once: a caller in the same process needs neither a promise nor a deadline around them.
 */
export class MemoryWindowCounter implements WindowCounter {
  /** Per window length, the state of each key: found without building a key string per call. */
  readonly #windows = new Map<number, Map<string, WindowState>>();
  readonly #clock: () => number;

  constructor(options: { clock?: () => number } = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  /** Brings the state for (key, windowMs) up to `now`: the current window may become the previous one. */
  #roll(key: string, windowMs: number, now: number, create: boolean): WindowState | undefined {
    let states = this.#windows.get(windowMs);
    if (!states) {
      if (!create) return undefined;
      states = new Map();
      this.#windows.set(windowMs, states);
    }
    let state = states.get(key);
    const phase = state ? state.phase : windowPhase(key, windowMs);
    const start = windowStartAt(now, windowMs, phase);
    if (state && state.start !== start) {
      if (state.start + windowMs === start) {
        state.previous = state.count;
        state.count = 0;
        state.start = start;
      } else if (state.start < start) {
        // Both windows are in the past: nothing in them counts any more.
        states.delete(key);
        state = undefined;
      }
    }
    if (!state && create) {
      state = { start, count: 0, previous: 0, phase };
      states.set(key, state);
    }
    return state;
  }

  /**
   * Answered at once (always: a memory counter never needs a promise); NaN input is refused with a RangeError, as a
   * rejected promise (every store part's one failure path).
   */
  consume(key: string, units: number, options: { limit: number; windowMs: number; slot?: string }) {
    try {
      return this.#consume(key, units, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Answered at once (always); NaN input is refused as a rejected promise. */
  adjust(key: string, delta: number, options: { windowMs: number; windowStart: number; slot?: string }) {
    try {
      return this.#adjust(key, delta, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #consume(key: string, units: number, options: { limit: number; windowMs: number; slot?: string }): WindowResult {
    const { limit, windowMs } = options;
    assertStoreNumber('counter.consume', 'units', units);
    assertStoreNumber('counter.consume', 'limit', limit);
    assertStoreNumber('counter.consume', 'windowMs', windowMs);
    const now = this.#clock();
    const state = this.#roll(key, windowMs, now, true)!;
    const resetAt = state.start + windowMs;
    const used = state.previous * ((resetAt - now) / windowMs) + state.count;
    const allowed = used + units <= limit;
    if (allowed) state.count += units;
    return {
      allowed,
      limit,
      remaining: Math.max(0, Math.floor(limit - used - (allowed ? units : 0))),
      resetAt,
      retryAfterMs: allowed
        ? 0
        : windowRetryAfterMs(now, state.start, windowMs, state.count, state.previous, units, limit),
      windowStart: state.start,
    };
  }

  #adjust(key: string, delta: number, options: { windowMs: number; windowStart: number; slot?: string }): void {
    const { windowMs, windowStart } = options;
    assertStoreNumber('counter.adjust', 'delta', delta);
    assertStoreNumber('counter.adjust', 'windowMs', windowMs);
    assertStoreNumber('counter.adjust', 'windowStart', windowStart);
    const state = this.#roll(key, windowMs, this.#clock(), false);
    if (!state) return;
    if (windowStart === state.start) state.count = Math.max(0, state.count + delta);
    else if (windowStart === state.start - windowMs) state.previous = Math.max(0, state.previous + delta);
  }

  async peek(key: string, options: { windowMs: number }): Promise<number> {
    const now = this.#clock();
    const state = this.#roll(key, options.windowMs, now, false);
    if (!state) return 0;
    return state.previous * ((state.start + options.windowMs - now) / options.windowMs) + state.count;
  }

  /** Drops every key whose two windows have both ended. */
  sweep(): void {
    const now = this.#clock();
    for (const [windowMs, states] of this.#windows) {
      for (const [key, state] of states) {
        if (state.start + 2 * windowMs <= now) states.delete(key);
      }
      if (states.size === 0) this.#windows.delete(windowMs);
    }
  }

  /** Keys currently held (for tests of boundedness). */
  get size(): number {
    let size = 0;
    for (const states of this.#windows.values()) size += states.size;
    return size;
  }
}
