// Keys this process remembers until a time each (what it learned from the ledger and need not ask again for a while), on the guard's clock.
import { LRUCache } from 'lru-cache';

/** Marks kept at most; past them the least recently used goes. */
const MAX_MARKS = 10_000;

/**
 * A bounded set of marks that expire, counted on `now` (the guard's clock, a fake one in tests): `set(key, true,
 * { ttl })` marks, `has(key)` is false once the mark expired. lru-cache's `perf` is the clock it reads; `ttlResolution:
 * 0` reads it at every call, so a clock moved by a test is seen at once.
 */
export function expiringMarks(now: () => number): LRUCache<string, true> {
  return new LRUCache<string, true>({ max: MAX_MARKS, perf: { now }, ttlResolution: 0 });
}
