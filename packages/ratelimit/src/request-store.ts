// The express-rate-limit store of one request layer: the stores' own fixed windows (Redis), rate-limit-redis on other command-sending stores, process memory otherwise.
import type { ClientRateLimitInfo, IncrementResponse, Options as RateLimitOptions, Store } from 'express-rate-limit';
import type { RedisStore, RedisReply } from 'rate-limit-redis';
import type * as rateLimitRedis from 'rate-limit-redis';
import { loadOnDemand } from '@tollgate/core/options';
import { fixedWindowCalls, whenReady, type FixedWindowCalls } from '@tollgate/core/store-contracts';
import type { StoreFailureHandling } from './store-failure.js';
import type { FixedWindowCounter, StoresWithCommands } from './types.js';

type RedisStoreOptions = ConstructorParameters<typeof RedisStore>[0];

/**
 * rate-limit-redis loads its script once, at init. If Redis was down then, the rejected load is
 * awaited by every later call and the store never recovers; load it again once Redis answers.
 * The class is made with the first such store: a process whose stores keep their own windows never loads rate-limit-redis.
 */
let RecoveringRedisStore: (new (options: RedisStoreOptions) => RedisStore) | undefined;

function recoveringRedisStore(options: RedisStoreOptions): RedisStore {
  RecoveringRedisStore ??= class RecoveringRedisStore extends (
    loadOnDemand<typeof rateLimitRedis>(import.meta.url, 'rate-limit-redis').RedisStore
  ) {
    override async increment(key: string): Promise<IncrementResponse> {
      const loadFailed = await this.incrementScriptSha.then(
        () => false,
        () => true,
      );
      if (loadFailed) {
        this.incrementScriptSha = this.loadIncrementScript();
        // Awaited just below; a failure here is that call's failure, not an unhandled one.
        this.incrementScriptSha.catch(() => undefined);
      }
      return super.increment(key);
    }
  };
  return new RecoveringRedisStore(options);
}

/**
 * Fixed windows in this process, each opened by its key's first hit, as express-rate-limit's
 * MemoryStore keeps them, but answering at once: inside combineLimits a layer on it is counted
 * without a promise (express-rate-limit takes a store's plain answers too). Keys unused for a
 * whole window are dropped in bulk: every `windowMs` the live map becomes the old one.
 */
class ProcessWindowStore implements Store {
  readonly localKeys = true;
  #current = new Map<string, ClientRateLimitInfo>();
  #previous = new Map<string, ClientRateLimitInfo>();
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly windowMs: number) {
    this.#timer = setInterval(() => {
      this.#previous = this.#current;
      this.#current = new Map();
    }, windowMs);
    // Forgetting old windows must never keep a process alive.
    this.#timer.unref();
  }

  /** The key's window, moved to the live map; a new one when it had none. */
  #windowOf(key: string, now: number): ClientRateLimitInfo {
    let window = this.#current.get(key);
    if (window) return window;
    window = this.#previous.get(key);
    if (window) this.#previous.delete(key);
    else window = { totalHits: 0, resetTime: new Date(now + this.windowMs) };
    this.#current.set(key, window);
    return window;
  }

  /** Counts a hit; the answer is the key's live window (read it before the next hit). */
  increment(key: string): ClientRateLimitInfo {
    const now = Date.now();
    const window = this.#windowOf(key, now);
    if (window.resetTime!.getTime() <= now) {
      window.totalHits = 0;
      window.resetTime = new Date(now + this.windowMs);
    }
    window.totalHits++;
    return window;
  }

  get(key: string): ClientRateLimitInfo | undefined {
    const window = this.#current.get(key) ?? this.#previous.get(key);
    return window && window.resetTime!.getTime() > Date.now() ? window : undefined;
  }

  decrement(key: string): void {
    const window = this.#windowOf(key, Date.now());
    if (window.totalHits > 0) window.totalHits--;
  }

  resetKey(key: string): void {
    this.#current.delete(key);
    this.#previous.delete(key);
  }

  resetAll(): void {
    this.#current.clear();
    this.#previous.clear();
  }

  shutdown(): void {
    clearInterval(this.#timer);
    this.resetAll();
  }
}

function asIncrementResponse({ hits, resetAt }: { hits: number; resetAt: number }): IncrementResponse {
  return { totalHits: hits, resetTime: new Date(resetAt) };
}

/**
 * The same fixed window as rate-limit-redis, in the same keys, counted by the stores' own script:
 * inside combineLimits its call joins the token limit's and the budget's in one Redis call.
 */
class FixedWindowStore implements Store {
  readonly localKeys = false;

  /** The windows' answers: at once from a block the stores hold (blockStores), else their promises. */
  readonly #calls: FixedWindowCalls;

  constructor(
    private readonly windows: FixedWindowCounter,
    readonly prefix: string,
    // Known up front: the layer counts in it directly (init would tell it too).
    private readonly windowMs: number,
  ) {
    this.#calls = fixedWindowCalls(windows);
  }

  increment(key: string, limit?: number): Promise<IncrementResponse> | IncrementResponse {
    return whenReady(this.#calls.hit(this.prefix + key, this.windowMs, limit), asIncrementResponse);
  }

  decrement(key: string): Promise<void> {
    return Promise.resolve(this.#calls.giveBack(this.prefix + key));
  }

  resetKey(key: string): Promise<void> {
    return this.windows.reset(this.prefix + key);
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const window = await this.windows.peek(this.prefix + key);
    return window && { totalHits: window.hits, resetTime: new Date(window.resetAt) };
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

  increment(key: string, limit?: number): Promise<IncrementResponse> | IncrementResponse {
    let counted: Promise<IncrementResponse>;
    try {
      const answer = (this.#inner as RequestStore).increment(key, limit);
      // Answered at once (from a block): nothing to wait for, so no deadline.
      if (!(answer instanceof Promise)) return answer;
      counted = answer;
    } catch (error) {
      counted = Promise.reject(error);
    }
    // A hit that lands after the deadline is given back: the request was answered without it.
    return this.#failures.callOrUndo('increment', counted, () => this.#inner.decrement(key));
  }

  async decrement(key: string): Promise<void> {
    await this.#failures.call(
      'decrement',
      Promise.resolve().then(() => this.#inner.decrement(key)),
    );
  }

  /** The key's window, counting nothing (readLimits); undefined when none runs. */
  get(key: string): Promise<ClientRateLimitInfo | undefined> {
    return this.#failures.call(
      'get',
      Promise.resolve().then(() => this.#inner.get?.(key)),
    );
  }

  async resetKey(key: string): Promise<void> {
    await this.#failures.call(
      'resetKey',
      Promise.resolve().then(() => this.#inner.resetKey(key)),
    );
  }

  shutdown(): void | Promise<void> {
    return this.#inner.shutdown?.();
  }
}

/** A request store whose `increment` may be told the layer's limit (fixed windows counted in blocks use it). */
export interface RequestStore extends Store {
  increment(key: string, limit?: number): Promise<IncrementResponse> | IncrementResponse;
}

/**
 * The fixed-window store of one request layer: the stores' own fixed windows where they keep
 * them (`@tollgate/redis`: one script, joined with the other checks' calls in one Redis call),
 * rate-limit-redis on other stores that send commands, process memory otherwise. Windows in
 * process memory get no deadline: they answer at once and have nothing to fail.
 */
export function createRequestStore(
  stores: StoresWithCommands | undefined,
  prefix: string,
  failures: StoreFailureHandling,
  windowMs: number,
): RequestStore {
  const sendCommand = stores?.sendCommand?.bind(stores);
  let inner: Store;
  if (stores?.fixedWindow) inner = new FixedWindowStore(stores.fixedWindow, prefix, windowMs);
  else if (sendCommand)
    inner = recoveringRedisStore({
      prefix,
      sendCommand: (...args: string[]) => sendCommand(args) as Promise<RedisReply>,
    });
  else return new ProcessWindowStore(windowMs);
  return new DeadlineStore(inner, prefix, failures);
}
