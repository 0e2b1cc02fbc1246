// Counts sends of one request fingerprint per key in a sliding window of the shared stores' window counter.
import { promised } from '@tollgate/core/store-contracts';
import type { WindowCounter, WindowResult } from '@tollgate/core/store-contracts';

interface RepeatCounterConfig {
  /** Sends allowed per window; the next one is refused. */
  max: number;
  windowMs: number;
  /** Store key prefix; the key id and the fingerprint follow. */
  prefix: string;
}

/** One counted send: what to give back if another check refuses the request. */
export interface CountedSend {
  key: string;
  result: WindowResult;
}

/**
 * A request's fingerprint counted against its key. The counter is the stores' own (core
 * `WindowCounter`), so on Redis the call joins the turn's script bundle: inside `combineLimits`
 * it travels in the same `EVALSHA` as the rate limits and the budget.
 */
export class RepeatCounter {
  readonly #counter: WindowCounter;
  readonly #config: RepeatCounterConfig;
  readonly #window: { limit: number; windowMs: number };

  constructor(counter: WindowCounter, config: RepeatCounterConfig) {
    this.#counter = counter;
    this.#config = config;
    this.#window = { limit: config.max, windowMs: config.windowMs };
  }

  get config(): RepeatCounterConfig {
    return this.#config;
  }

  /** Counts one send; `result.allowed` is false once the fingerprint passed `max` in the window (nothing is counted then). */
  count(keyId: string, fingerprint: string): Promise<CountedSend> {
    const key = `${this.#config.prefix}${keyId}:${fingerprint}`;
    return promised(() => this.#counter.consume(key, 1, this.#window)).then((result) => ({ key, result }));
  }

  /** Gives a counted send back (another check refused the request). */
  async giveBack(send: CountedSend): Promise<void> {
    await this.#counter.adjust(send.key, -1, { windowMs: this.#config.windowMs, windowStart: send.result.windowStart });
  }
}
