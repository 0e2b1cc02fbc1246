// The key store's list of keys with a budget on Redis: kept by every write, gathered once from every key for keys
// written before it existed (an upgraded deployment), and read without reading the other keys.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const prefix = uniquePrefix();
let stores: RedisStores;

const record = (id: string, budget?: ApiKeyRecord['budget']): ApiKeyRecord => ({
  id,
  sha256: id.padEnd(64, '0'),
  scopes: [],
  createdAt: '2026-11-27T08:00:00.000Z',
  ...(budget ? { budget } : {}),
});

beforeAll(async () => {
  await requireRedis();
  stores = createRedisStores({ url: REDIS_URL, prefix });
});
afterAll(async () => {
  await stores.close();
  await deleteKeys(prefix);
});

describe('keys with a budget on Redis', () => {
  it('gathers the keys written before the list existed, once, then reads only the list', async () => {
    const budget = { usd: 2, period: 'day' as const };
    for (let i = 0; i < 50; i++)
      await stores.keys.put(record(`k${String(i).padStart(2, '0')}`, i % 10 === 0 ? budget : undefined));
    // As a deployment of an earlier version left them: no list, no mark.
    await stores.sendCommand(['DEL', `${prefix}{keys}:budgeted`, `${prefix}{keys}:budgeted:gathered`]);
    const first = await stores.keys.listBudgeted!();
    expect(first.map((r) => r.id)).toEqual(['k00', 'k10', 'k20', 'k30', 'k40']);
    expect(await stores.sendCommand(['EXISTS', `${prefix}{keys}:budgeted:gathered`])).toBe(1);
    expect(await stores.sendCommand(['SCARD', `${prefix}{keys}:budgeted`])).toBe(5);
    // A key gone behind the list's back (an earlier version's delete) leaves it at the next read.
    await stores.sendCommand(['DEL', `${prefix}{keys}:key:k40`]);
    expect((await stores.keys.listBudgeted!()).map((r) => r.id)).toEqual(['k00', 'k10', 'k20', 'k30']);
    expect(await stores.sendCommand(['SISMEMBER', `${prefix}{keys}:budgeted`, 'k40'])).toBe(0);
    // A budget taken away by an earlier version's put (the list not told) is not listed.
    await stores.sendCommand(['HSET', `${prefix}{keys}:key:k30`, 'record', JSON.stringify(record('k30'))]);
    expect((await stores.keys.listBudgeted!()).map((r) => r.id)).toEqual(['k00', 'k10', 'k20']);
  });
});
