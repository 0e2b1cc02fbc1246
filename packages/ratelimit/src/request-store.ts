// The express-rate-limit store of one request layer: rate-limit-redis on Redis stores (the stores' own fixed windows when combined), its MemoryStore otherwise.
import { MemoryStore, type IncrementResponse, type Options as RateLimitOptions, type Store } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { StoreFailureHandling } from './store-failure.js';
import type { FixedWindowCounter, StoresWithCommands } from './types.js';

/**
 * rate-limit-redis loads its script once, at init. If Redis was down then, the rejected load is
 * awaited by every later call and the store never recovers; load it again once Redis answers.
 */
class RecoveringRedisStore extends RedisStore {
  override async increment(key: string): Promise<IncrementResponse> {
    const loadFailed = await this.incrementScriptSha.then(() => false, () => true);
    if (loadFailed) {
      this.incrementScriptSha = this.loadIncrementScript();
      // Awaited just below; a failure here is that call's failure, not an unhandled one.
      this.incrementScriptSha.catch(() => undefined);
    }
    return super.increment(key);
  }
}

/**
 * The same fixed window as rate-limit-redis, in the same keys, counted by the stores' own script:
 * inside combineLimits its call joins the token limit's and the budget's in one Redis call.
 */
class FixedWindowStore implements Store {
  readonly localKeys = false;
  #windowMs = 60_000;

  constructor(
    private readonly windows: FixedWindowCounter,
    readonly prefix: string,
  ) {}

  init(options: RateLimitOptions): void {
    this.#windowMs = options.windowMs;
  }

  async increment(key: string): Promise<IncrementResponse> {
    const { hits, resetAt } = await this.windows.hit(this.prefix + key, this.#windowMs);
    return { totalHits: hits, resetTime: new Date(resetAt) };
  }

  decrement(key: string): Promise<void> {
    return this.windows.giveBack(this.prefix + key);
  }

  resetKey(key: string): Promise<void> {
    return this.windows.reset(this.prefix + key);
  }
}

/** Puts every store call under the middleware's deadline and marks its failures as store failures. */
class DeadlineStore implements Store {
  readonly localKeys: boolean;
  readonly prefix: string;
  readonly #inner: Store;
  readonly #failures: StoreFailureHandling;

  constructor(inner: Store, prefix: string, failures: StoreFailureHandling) {
    this.#inner = inner;
    this.#failures = failures;
    this.localKeys = inner.localKeys ?? false;
    this.prefix = prefix;
  }

  init(options: RateLimitOptions): void | Promise<void> {
    return this.#inner.init?.(options);
  }

  increment(key: string): Promise<IncrementResponse> {
    // A hit that lands after the deadline is given back: the request was answered without it.
    return this.#failures.callOrUndo('increment', Promise.resolve().then(() => this.#inner.increment(key)), () => this.#inner.decrement(key));
  }

  async decrement(key: string): Promise<void> {
    await this.#failures.call('decrement', Promise.resolve().then(() => this.#inner.decrement(key)));
  }

  async resetKey(key: string): Promise<void> {
    await this.#failures.call('resetKey', Promise.resolve().then(() => this.#inner.resetKey(key)));
  }

  shutdown(): void | Promise<void> {
    return this.#inner.shutdown?.();
  }
}

/**
 * `combined`: the layer runs inside combineLimits, where stores that keep fixed windows count
 * them (one call with the other checks); mounted alone it stays on rate-limit-redis.
 */
export function createRequestStore(stores: StoresWithCommands | undefined, prefix: string, failures: StoreFailureHandling, combined = false): Store {
  const sendCommand = stores?.sendCommand?.bind(stores);
  let inner: Store;
  if (combined && stores?.fixedWindow) inner = new FixedWindowStore(stores.fixedWindow, prefix);
  else if (sendCommand) inner = new RecoveringRedisStore({ prefix, sendCommand: (...args: string[]) => sendCommand(args) as Promise<RedisReply> });
  else inner = new MemoryStore();
  return new DeadlineStore(inner, prefix, failures);
}

/** True when a limiter on these stores counts differently inside combineLimits (see createRequestStore). */
export function countsApartWhenCombined(stores: StoresWithCommands | undefined): boolean {
  return stores?.fixedWindow !== undefined;
}
