// The embedded default: every store interface in the memory of one process, bounded by eviction.
import { assertKnownOptions } from './errors.js';
import { MemoryKeyStore } from './memory/key-store.js';
import { MemoryReservationLedger } from './memory/reservation-ledger.js';
import { MemoryWindowCounter } from './memory/window-counter.js';
import type { ApiKeyRecord, TollgateStores } from './stores.js';

export { deepFreeze, MemoryKeyStore } from './memory/key-store.js';
export { MemoryReservationLedger } from './memory/reservation-ledger.js';
export { MemoryWindowCounter, windowRetryAfterMs } from './memory/window-counter.js';

/**
 * `store` when it is an unaltered instance of `Class`: the `methods` it answers with are the class's
 * own, not a subclass's and not a wrapper's (a `Proxy` that counts or times the calls). Only then do
 * its synchronous twins (`reserveSync`, `consumeSync`, ...) answer exactly as those methods would,
 * so a caller may take the synchronous path without walking around what the wrapper does.
 */
export function unalteredMemoryStore<T extends object>(
  store: unknown,
  Class: abstract new (...args: never[]) => T,
  methods: readonly (keyof T & string)[],
): T | undefined {
  if (!(store instanceof Class)) return undefined;
  const own = Class.prototype as Record<string, unknown>;
  for (const method of methods) if ((store as Record<string, unknown>)[method] !== own[method]) return undefined;
  return store;
}

export interface MemoryStoresOptions {
  /**
   * Source of "now" in epoch ms. Inject a fake clock in tests.
   * @default Date.now
   */
  clock?: () => number;
  /**
   * How often expired windows, reservations and scopes are swept, in ms. Lookups also evict
   * lazily, so this only bounds memory held by keys nobody touches again. 0 turns the timer off.
   * @default 60000
   */
  sweepIntervalMs?: number;
  /** Key records to start with. */
  keys?: readonly ApiKeyRecord[];
}

export interface MemoryStores extends TollgateStores {
  counter: MemoryWindowCounter;
  ledger: MemoryReservationLedger;
  keys: MemoryKeyStore;
  readonly kind: 'memory';
  /** Evict everything expired now (the timer does this every `sweepIntervalMs`). */
  sweep(): void;
}

const OPTION_NAMES = ['clock', 'sweepIntervalMs', 'keys'] as const;

/** In-memory stores for one process. Use `@tollgate/redis` when several processes share limits. */
export function createMemoryStores(options: MemoryStoresOptions = {}): MemoryStores {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_CORE_UNKNOWN_OPTION', 'createMemoryStores');
  const clock = options.clock ?? Date.now;
  const counter = new MemoryWindowCounter({ clock });
  const ledger = new MemoryReservationLedger({ clock });
  const keys = new MemoryKeyStore(options.keys);
  const sweep = () => {
    counter.sweep();
    ledger.sweep();
  };
  const intervalMs = options.sweepIntervalMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  if (intervalMs > 0) {
    timer = setInterval(sweep, intervalMs);
    // The sweep must never keep a process alive on its own.
    timer.unref();
  }
  return {
    counter,
    ledger,
    keys,
    kind: 'memory',
    sweep,
    async close() {
      clearInterval(timer);
    },
  };
}
