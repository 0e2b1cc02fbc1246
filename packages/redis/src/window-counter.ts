// Weighted sliding-window counter on Redis: one hash per (key, window size), one script per operation.
import { assertStoreNumber } from '@tollgate/core';
import type { WindowCounter, WindowResult } from '@tollgate/core';
import type { Connection } from './connection.js';
import * as scripts from './scripts.js';

/** The scripts count in whole ms (their starts and resets are then exact integers). */
function wholeMs(windowMs: number): number {
  return Math.max(1, Math.ceil(windowMs));
}

export class RedisWindowCounter implements WindowCounter {
  constructor(
    private readonly connection: Connection,
    private readonly prefix: string,
  ) {}

  /** The key's own {hash tag}: the two windows of one key live in one hash, so one slot. */
  #key(key: string, windowMs: number): string {
    return `${this.prefix}wc:{${key}}:${windowMs}`;
  }

  #send = (args: string[]) => this.connection.send(args, 'counter');

  async consume(key: string, units: number, options: { limit: number; windowMs: number }): Promise<WindowResult> {
    const { limit, windowMs } = options;
    assertStoreNumber('counter.consume', 'units', units);
    assertStoreNumber('counter.consume', 'limit', limit);
    assertStoreNumber('counter.consume', 'windowMs', windowMs);
    const reply = (await scripts.consumeWindow.run(this.#send, [this.#key(key, windowMs)], [units, wholeMs(windowMs), limit])) as unknown[];
    return {
      allowed: reply[0] === 1,
      limit,
      remaining: Number(reply[1]),
      resetAt: Number(reply[2]),
      retryAfterMs: Number(reply[3]),
      windowStart: Number(reply[4]),
    };
  }

  async adjust(key: string, delta: number, options: { windowMs: number; windowStart: number }): Promise<void> {
    // Lua reads "NaN" as a number, and max(0, NaN) is 0 there: the window would be wiped.
    assertStoreNumber('counter.adjust', 'delta', delta);
    assertStoreNumber('counter.adjust', 'windowMs', options.windowMs);
    assertStoreNumber('counter.adjust', 'windowStart', options.windowStart);
    if (delta === 0) return;
    await scripts.adjustWindow.run(this.#send, [this.#key(key, options.windowMs)], [delta, wholeMs(options.windowMs), options.windowStart]);
  }

  async peek(key: string, options: { windowMs: number }): Promise<number> {
    return Number(await scripts.peekWindow.run(this.#send, [this.#key(key, options.windowMs)], [0, wholeMs(options.windowMs)]));
  }
}
