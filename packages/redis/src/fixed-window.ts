// Fixed request windows on Redis for tieredRateLimit inside combineLimits: express-rate-limit's model, in the stores' script bundle.
import { assertStoreNumber } from '@tollgate/core';
import type { Connection } from './connection.js';
import * as scripts from './scripts.js';

/**
 * A counter per key whose window opens at its first hit and lasts `windowMs`, as rate-limit-redis
 * keeps it, and in the key it would use: keys are taken as given (the caller's own prefix, not
 * the stores'). Its calls join the turn's script bundle, so a combined check is one Redis call.
 */
export class RedisFixedWindow {
  constructor(private readonly connection: Connection) {}

  #send = (args: string[]) => this.connection.send(args, 'fixedWindow');

  /** Counts one hit: the hits in the window so far, and when it resets (epoch ms). */
  async hit(key: string, windowMs: number): Promise<{ hits: number; resetAt: number }> {
    assertStoreNumber('fixedWindow.hit', 'windowMs', windowMs);
    const reply = (await scripts.hitFixedWindow.run(this.#send, [key], [Math.max(1, Math.ceil(windowMs))])) as unknown[];
    return { hits: Number(reply[0]), resetAt: Date.now() + Number(reply[1]) };
  }

  /** Gives one hit back (a request another limit refused), if the window still runs. */
  async giveBack(key: string): Promise<void> {
    await scripts.returnFixedWindowHit.run(this.#send, [key], []);
  }

  async reset(key: string): Promise<void> {
    await this.connection.send(['DEL', key], 'fixedWindow');
  }
}
