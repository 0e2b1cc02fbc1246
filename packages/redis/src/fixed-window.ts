// Fixed request windows on Redis for tieredRateLimit inside combineLimits: express-rate-limit's model, in the stores' script bundle.
import { assertStoreNumber, type FixedWindowCounter } from '@tollgate/core/store-contracts';
import type { Connection } from './connection.js';
import type { LuaScript } from './lua.js';
import * as scripts from './scripts.js';

/** The hit script's reply: the hits so far, and the reset from the window's TTL. */
function hitOf(reply: unknown): { hits: number; resetAt: number } {
  const counted = reply as unknown[];
  return { hits: Number(counted[0]), resetAt: Date.now() + Number(counted[1]) };
}

/**
 * A counter per key whose window opens at its first hit and lasts `windowMs`, as rate-limit-redis
 * keeps it, and in the key it would use: keys are taken as given (the caller's own prefix, not
 * the stores'). Its calls join the turn's script bundle, so a combined check is one Redis call.
 */
export class RedisFixedWindow implements FixedWindowCounter {
  constructor(private readonly connection: Connection) {}

  #run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.connection.run(script, keys, args, 'fixedWindow');
  }

  /** Counts one hit: the hits in the window so far, and when it resets (epoch ms). */
  hit(key: string, windowMs: number): Promise<{ hits: number; resetAt: number }> {
    try {
      assertStoreNumber('fixedWindow.hit', 'windowMs', windowMs);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#run(scripts.hitFixedWindow, [key], [Math.max(1, Math.ceil(windowMs))]).then(hitOf);
  }

  /** Gives one hit back (a request another limit refused), if the window still runs. */
  async giveBack(key: string): Promise<void> {
    await this.#run(scripts.returnFixedWindowHit, [key], []);
  }

  /** Counts `hits` at once (a block of them: see blockStores in @tollgate/core). */
  hitBy(key: string, windowMs: number, hits: number): Promise<{ hits: number; resetAt: number }> {
    try {
      assertStoreNumber('fixedWindow.hitBy', 'windowMs', windowMs);
      assertStoreNumber('fixedWindow.hitBy', 'hits', hits);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#run(
      scripts.hitFixedWindowBy,
      [key],
      [Math.max(1, Math.ceil(windowMs)), Math.max(0, Math.floor(hits))],
    ).then(hitOf);
  }

  /** Gives `hits` back if the window still runs for more than `minTtlMs` (never into the window after it). */
  async giveBackBy(key: string, hits: number, minTtlMs: number): Promise<void> {
    await this.#run(
      scripts.returnFixedWindowHits,
      [key],
      [Math.max(0, Math.floor(hits)), Math.max(0, Math.floor(minTtlMs))],
    );
  }

  /** The hits of the window running now and when it ends, counting nothing; undefined when none runs. */
  async peek(key: string): Promise<{ hits: number; resetAt: number } | undefined> {
    const [hits, ttl] = (await this.#run(scripts.peekFixedWindow, [key], [])) as [unknown, unknown];
    return Number(ttl) > 0 ? { hits: Number(hits), resetAt: Date.now() + Number(ttl) } : undefined;
  }

  async reset(key: string): Promise<void> {
    await this.connection.send(['DEL', key], 'fixedWindow');
  }
}
