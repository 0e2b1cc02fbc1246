// Weighted sliding-window counter on Redis: one hash per (key, window size), one script per operation.
import { assertStoreNumber, windowPhase } from '@tollgate/core/store-contracts';
import type { WindowCounter, WindowResult } from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import { slotTag } from './hash-slot.js';
import type { LuaScript } from './lua.js';
import * as scripts from './scripts.js';

/** The scripts count in whole ms (their starts and resets are then exact integers). */
function wholeMs(windowMs: number): number {
  return Math.max(1, Math.ceil(windowMs));
}

/** The script's windowMs and the key's phase in it (see `windowPhase`): where the memory counter starts its windows. */
function grid(key: string, windowMs: number): [size: number, phase: number] {
  const size = wholeMs(windowMs);
  return [size, windowPhase(key, size)];
}

export class RedisWindowCounter implements WindowCounter {
  constructor(
    private readonly connection: Connection,
    private readonly prefix: string,
  ) {}

  /**
   * The two windows of one key live in one hash, so one slot: the key's own {hash tag}, or on a
   * cluster its slot's (whom it counts), so a caller's windows share a shard with its budget.
   */
  #key(key: string, windowMs: number, slot: string | undefined): string {
    if (slot !== undefined && this.connection.sharded) return `${this.prefix}wc:${slotTag(slot)}${key}:${windowMs}`;
    return `${this.prefix}wc:{${key}}:${windowMs}`;
  }

  #run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.connection.run(script, keys, args, 'counter');
  }

  async consume(
    key: string,
    units: number,
    options: { limit: number; windowMs: number; slot?: string },
  ): Promise<WindowResult> {
    const { limit, windowMs } = options;
    assertStoreNumber('counter.consume', 'units', units);
    assertStoreNumber('counter.consume', 'limit', limit);
    assertStoreNumber('counter.consume', 'windowMs', windowMs);
    const [size, phase] = grid(key, windowMs);
    const reply = (await this.#run(
      scripts.consumeWindow,
      [this.#key(key, windowMs, options.slot)],
      [units, size, limit, phase],
    )) as unknown[];
    return {
      allowed: reply[0] === 1,
      limit,
      remaining: Number(reply[1]),
      resetAt: Number(reply[2]),
      retryAfterMs: Number(reply[3]),
      windowStart: Number(reply[4]),
    };
  }

  async adjust(
    key: string,
    delta: number,
    options: { windowMs: number; windowStart: number; slot?: string },
  ): Promise<void> {
    // Lua reads "NaN" as a number, and max(0, NaN) is 0 there: the window would be wiped.
    assertStoreNumber('counter.adjust', 'delta', delta);
    assertStoreNumber('counter.adjust', 'windowMs', options.windowMs);
    assertStoreNumber('counter.adjust', 'windowStart', options.windowStart);
    if (delta === 0) return;
    const [size, phase] = grid(key, options.windowMs);
    await this.#run(
      scripts.adjustWindow,
      [this.#key(key, options.windowMs, options.slot)],
      [delta, size, options.windowStart, phase],
    );
  }

  async peek(key: string, options: { windowMs: number; slot?: string }): Promise<number> {
    const [size, phase] = grid(key, options.windowMs);
    return Number(
      await this.#run(scripts.peekWindow, [this.#key(key, options.windowMs, options.slot)], [0, size, 0, phase]),
    );
  }
}
