// Token windows on Redis: each key's windows start on its own phase (windowPhase), as in memory, and a window stored
// on the clock's grid by an earlier version (a rolling upgrade) is never under-counted.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { windowPhase, windowStartAt } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const MINUTE = 60_000;

describe('token windows on Redis, each key on its own phase', () => {
  const prefix = uniquePrefix();
  let stores: RedisStores;
  let client: ReturnType<typeof createClient>;

  beforeAll(async () => {
    await requireRedis();
    stores = createRedisStores({ url: REDIS_URL, prefix });
    client = createClient({ url: REDIS_URL });
    client.on('error', () => undefined);
    await client.connect();
  });

  afterAll(async () => {
    await stores.close();
    await client.close();
    await deleteKeys(prefix);
  });

  /** Redis TIME in ms: the clock the scripts count by. */
  const redisNow = async () => {
    const [seconds, micros] = (await client.sendCommand(['TIME'])) as [string, string];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };

  it('starts each key where windowPhase puts it, so 1,000 tenants do not all roll in the same second', async () => {
    const ends = new Map<number, number>();
    for (let tenant = 0; tenant < 1000; tenant++) {
      const key = `tokens:tenant:t${tenant}`;
      const result = await stores.counter.consume(key, 1, { limit: 400_000, windowMs: MINUTE });
      expect(result.windowStart).toBe(windowStartAt(result.windowStart, MINUTE, windowPhase(key, MINUTE)));
      expect(result.resetAt).toBe(result.windowStart + MINUTE);
      const second = Math.floor((result.resetAt % MINUTE) / 1000);
      ends.set(second, (ends.get(second) ?? 0) + 1);
    }
    // On the clock's grid all 1,000 would end in one second. Spread evenly, about 17 a second.
    expect(ends.size).toBe(60);
    expect(Math.max(...ends.values())).toBeLessThanOrEqual(40);
  });

  /** Writes a window as a version before phases kept it: started on the clock's minute. */
  async function storeOnClockGrid(key: string, start: number, count: number, previous = 0): Promise<void> {
    const stored = `${prefix}wc:{${key}}:${MINUTE}`;
    await client.hSet(stored, { s: String(start), c: String(count), p: String(previous) });
    await client.pExpireAt(stored, start + 2 * MINUTE);
  }

  it('keeps the counts of a window stored on the clock grid that overlaps the current one, in both orders', async () => {
    // Mid-minute, so that keys whose current window began before the clock's minute and keys whose window began
    // after it both exist, with a second to spare on every side.
    let now = await redisNow();
    while (now % MINUTE < 5_000 || now % MINUTE > 55_000) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      now = await redisNow();
    }
    const clockStart = now - (now % MINUTE);
    const startOf = (key: string) => windowStartAt(now, MINUTE, windowPhase(key, MINUTE));
    const candidates = Array.from({ length: 200 }, (_, index) => `upgrade:${index}`);
    // The stored window began after this key's: the key stays in the stored window until it ends.
    const earlier = candidates.find((key) => startOf(key) < clockStart - 1_000);
    // The stored window began before this key's and runs into it: its counts move into the key's window.
    const later = candidates.find((key) => startOf(key) > clockStart + 1_000 && startOf(key) < now - 1_000);
    expect(earlier).toBeDefined();
    expect(later).toBeDefined();
    for (const key of [earlier!, later!]) {
      await storeOnClockGrid(key, clockStart, 10);
      expect(await stores.counter.peek(key, { windowMs: MINUTE })).toBe(10);
      expect((await stores.counter.consume(key, 1, { limit: 10, windowMs: MINUTE })).allowed).toBe(false);
    }
  }, 30_000);

  it('counts a window stored on the clock grid that ended within the last window as the previous one', async () => {
    const key = 'upgrade:previous';
    const now = await redisNow();
    const start = windowStartAt(now, MINUTE, windowPhase(key, MINUTE));
    // The clock-grid window that holds start - MINUTE: it ended inside this key's previous window.
    const clockStart = start - MINUTE - ((start - MINUTE) % MINUTE);
    await storeOnClockGrid(key, clockStart, 10);
    const weighted = await stores.counter.peek(key, { windowMs: MINUTE });
    const after = await redisNow();
    // The previous window fades as this one runs: (start + MINUTE - now) / MINUTE of its 10 are left. Lua and
    // JavaScript order the same arithmetic differently: the bounds allow a rounding (1e-9), no more.
    expect(weighted).toBeLessThanOrEqual((10 * (start + MINUTE - now)) / MINUTE + 1e-9);
    expect(weighted).toBeGreaterThanOrEqual((10 * (start + MINUTE - after)) / MINUTE - 1e-9);
  });
});
