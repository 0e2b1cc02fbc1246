// The stores as the middlewares see them, with every call timed for the metrics; the stores themselves are left as they are.
import type { TollgateStores } from '@tollgate/core';

/** The operations timed, per part of the stores (the Redis stores add `fixedWindow`); any other member passes through untouched. */
const TIMED: Readonly<Record<string, readonly string[]>> = {
  counter: ['consume', 'adjust', 'peek'],
  fixedWindow: ['hit', 'giveBack', 'reset', 'peek'],
  ledger: [
    'reserve',
    'settle',
    'release',
    'usage',
    'adjustSpent',
    'addCredit',
    'resetScope',
    'restoreSpent',
    'correctSpent',
    'holds',
    'restoreCredit',
  ],
  keys: ['findByHash', 'findById', 'put', 'disable', 'delete', 'list', 'page', 'expiring', 'listBudgeted', 'change'],
};

export type StoreOutcome = 'ok' | 'error';
/** Told of each call of one store operation: answered or failed, after `seconds`. */
export type StoreTimer = (outcome: StoreOutcome, seconds: number) => void;

/** The timer of one operation, asked once, when its wrapper is made. */
type TimerOf = (operation: string) => StoreTimer;
type AnyFunction = (...args: unknown[]) => unknown;

/**
 * `target` behind a Proxy: the named methods are timed, every other method is bound to the target
 * (store classes keep private fields, which a call through the Proxy as `this` could not read),
 * and getters read the target itself. Wrappers are made once per member, not per call.
 */
function timedObject<T extends object>(
  target: T,
  part: string,
  methods: readonly string[],
  timerOf: TimerOf,
  parts?: Map<string, object>,
): T {
  const made = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(object, property) {
      const cached = made.get(property);
      if (cached !== undefined) return cached;
      const value: unknown = Reflect.get(object, property, object);
      let wrapped: unknown = value;
      if (parts?.has(property as string)) {
        wrapped = parts.get(property as string);
      } else if (typeof value === 'function') {
        const method = value as AnyFunction;
        if (typeof property === 'string' && methods.includes(property)) {
          const time = timerOf(`${part}.${property}`);
          // A call answered at once (memory stores, a block) is timed as it returns, one by promise when it lands.
          wrapped = function timedStoreCall(...args: unknown[]): unknown {
            const started = performance.now();
            let result: unknown;
            try {
              result = method.apply(object, args);
            } catch (error) {
              time('error', (performance.now() - started) / 1000);
              throw error;
            }
            if (result instanceof Promise) {
              result.then(
                () => time('ok', (performance.now() - started) / 1000),
                () => time('error', (performance.now() - started) / 1000),
              );
            } else time('ok', (performance.now() - started) / 1000);
            return result;
          };
        } else {
          wrapped = method.bind(object);
        }
      } else {
        // Data and getters are read fresh each time (a getter's value may change).
        return value;
      }
      made.set(property, wrapped);
      return wrapped;
    },
  });
}

/** The same stores, each call of `counter`, `fixedWindow`, `ledger` and `keys` timed (by its operation's timer) when it lands. */
export function timedStores<S extends TollgateStores>(stores: S, timerOf: TimerOf): S {
  const parts = new Map<string, object>();
  for (const [part, methods] of Object.entries(TIMED)) {
    const inner = (stores as unknown as Record<string, unknown>)[part];
    if (typeof inner === 'object' && inner !== null) parts.set(part, timedObject(inner, part, methods, timerOf));
  }
  return timedObject(stores, 'stores', [], timerOf, parts);
}
