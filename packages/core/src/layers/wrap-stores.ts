// One wrapper over the stores' counting parts: a layer (blocks, leases) is a policy that answers each part's calls.
import type { CounterCalls, FixedWindowCalls, LedgerCalls } from '../store-calls.js';
import { passThroughLedger } from '../stores.js';
import type {
  FixedWindowCounter,
  LedgerCallOptions,
  ReservationLedger,
  ReserveRequest,
  SettledRecord,
  TollgateStores,
  WindowCounter,
} from '../stores.js';

type Hits = { hits: number; resetAt: number };

/** A layer's answers for a window counter: the calls callers make (at once where its state holds the answer), and a read. */
export interface CounterPolicy extends CounterCalls {
  peek(key: string, options: { windowMs: number; slot?: string }): Promise<number>;
}

/** A layer's answers for fixed request windows. `hitBy` and `giveBackBy` only where the inner windows have them. */
export interface FixedWindowPolicy extends FixedWindowCalls {
  reset(key: string): Promise<void>;
  peek(key: string): Promise<Hits | undefined>;
  hitBy?(key: string, windowMs: number, hits: number): Promise<Hits>;
  giveBackBy?(key: string, hits: number, minTtlMs: number): Promise<void>;
}

/** A layer's answers for a reservation ledger; the operator calls pass through to the inner ledger. */
export type LedgerPolicy = LedgerCalls;

/**
 * A layer over the stores: what it calls itself on them (`name`: `blocks`, `lease`), and the policy of each part it
 * takes over (a part it leaves alone passes through as it is). `close` runs before the inner stores close.
 */
export interface StoreLayer<Name extends string, State> {
  readonly name: Name;
  readonly state: State;
  readonly counter?: CounterPolicy;
  readonly fixedWindow?: FixedWindowPolicy;
  readonly ledger?: LedgerPolicy;
  close(): Promise<void>;
}

/** The stores with a layer over their parts, and its state under its name. */
type LayeredStores<S extends TollgateStores, Name extends string, State> = S & { readonly [K in Name]: State };

/*
 * The parts below answer each call as their policy does: at once where its state holds the answer, else by promise; a
 * throw of the policy (a lease with no slice left) as a rejected promise, as every store part fails.
 */

class LayeredCounter implements WindowCounter {
  constructor(readonly policy: CounterPolicy) {}

  consume(key: string, units: number, options: { limit: number; windowMs: number; slot?: string }) {
    try {
      return this.policy.consume(key, units, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  adjust(key: string, delta: number, options: { windowMs: number; windowStart: number; slot?: string }) {
    try {
      return this.policy.adjust(key, delta, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  peek(key: string, options: { windowMs: number; slot?: string }): Promise<number> {
    return this.policy.peek(key, options);
  }
}

class LayeredFixedWindow implements FixedWindowCounter {
  hitBy?: (key: string, windowMs: number, hits: number) => Promise<Hits>;
  giveBackBy?: (key: string, hits: number, minTtlMs: number) => Promise<void>;

  constructor(readonly policy: FixedWindowPolicy) {
    if (policy.hitBy && policy.giveBackBy) {
      this.hitBy = (key, windowMs, hits) => policy.hitBy!(key, windowMs, hits);
      this.giveBackBy = (key, hits, minTtlMs) => policy.giveBackBy!(key, hits, minTtlMs);
    }
  }

  hit(key: string, windowMs: number, limit?: number) {
    try {
      return this.policy.hit(key, windowMs, limit);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  giveBack(key: string) {
    try {
      return this.policy.giveBack(key);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  reset(key: string): Promise<void> {
    return this.policy.reset(key);
  }

  peek(key: string): Promise<Hits | undefined> {
    return this.policy.peek(key);
  }
}

class LayeredLedger {
  constructor(readonly policy: LedgerPolicy) {}

  reserve(request: ReserveRequest, options?: LedgerCallOptions) {
    try {
      return this.policy.reserve(request, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  settle(id: string, actual: number, records?: readonly SettledRecord[], options?: LedgerCallOptions) {
    try {
      return this.policy.settle(id, actual, records, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  release(id: string, options?: LedgerCallOptions) {
    try {
      return this.policy.release(id, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

/** The inner ledger's operator calls (usage, adjustSpent, …) on the layered ledger, as its own properties. */
function layeredLedger(policy: LedgerPolicy, inner: ReservationLedger): ReservationLedger {
  return Object.assign(new LayeredLedger(policy), passThroughLedger(inner)) as LayeredLedger & ReservationLedger;
}

/**
 * The stores with `layer` over their counting parts. Keys, `usage` and every other property pass through; `close`
 * closes the layer first (what it holds goes back while the store still takes it), then the stores.
 */
export function wrapStores<S extends TollgateStores, Name extends string, State>(
  stores: S,
  layer: StoreLayer<Name, State>,
): LayeredStores<S, Name, State> {
  const parts: Record<string, unknown> = { [layer.name]: layer.state };
  if (layer.counter) parts.counter = new LayeredCounter(layer.counter);
  if (layer.ledger) parts.ledger = layeredLedger(layer.ledger, stores.ledger);
  if (layer.fixedWindow) parts.fixedWindow = new LayeredFixedWindow(layer.fixedWindow);
  return new Proxy(stores, {
    get(target, property) {
      if (typeof property === 'string' && property in parts) return parts[property];
      if (property === 'close') {
        return async () => {
          await layer.close();
          await target.close();
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  }) as LayeredStores<S, Name, State>;
}
