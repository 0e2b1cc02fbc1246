// The ledger's Redis layout: what a reservation leaves behind, and how long each key lives.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeys, keysWithPrefix, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

describe('reservation ledger layout', () => {
  const prefix = uniquePrefix();
  const client = createClient({ url: REDIS_URL });
  let stores: RedisStores;
  const key = (name: string) => `${prefix}{ledger}:${name}`;
  const hour = 3_600_000;
  /** When a key expires, as epoch ms (PTTL, not Redis 7's PEXPIRETIME: Redis 6.2 is supported). */
  const expiryOf = async (name: string) => Date.now() + (await client.pTTL(key(name)));

  beforeAll(async () => {
    await requireRedis();
    client.on('error', () => undefined);
    await client.connect();
    stores = createRedisStores({ url: REDIS_URL, prefix });
  });

  afterAll(async () => {
    await stores.close();
    await client.close();
    await deleteKeys(prefix);
  });

  it('keeps spent, reserved and the expiry in a scope; a settle leaves no record and no hold', async () => {
    const expiresAt = Date.now() + hour;
    await stores.ledger.reserve({ id: 'r1', amount: 7, ttlMs: 60_000, scopes: [{ key: 'tenant:a', limit: 100, expiresAt }] });
    expect(await client.zScore(key('holds'), 'r1')).not.toBeNull();
    expect(await client.exists(key('res:r1'))).toBe(1);
    await stores.ledger.settle('r1', 5);
    expect(await client.hGetAll(key('scope:tenant:a'))).toEqual({ spent: '5', reserved: '0', x: String(expiresAt) });
    expect(await client.zScore(key('holds'), 'r1')).toBeNull();
    expect(await client.exists(key('res:r1'))).toBe(0);
    expect((await keysWithPrefix(prefix)).sort()).toEqual([key('scope:tenant:a')]);
  });

  it('lets a scope live to its period end, or to the end of a reservation that outlasts it', async () => {
    const periodEnd = Date.now() + 60_000;
    await stores.ledger.reserve({ id: 'r2', amount: 1, ttlMs: 10_000, scopes: [{ key: 'day', limit: 100, expiresAt: periodEnd }] });
    expect(Math.abs((await expiryOf('scope:day')) - periodEnd)).toBeLessThan(1_000);
    const late = await stores.ledger.reserve({ id: 'r3', amount: 1, ttlMs: 120_000, scopes: [{ key: 'day', limit: 100, expiresAt: periodEnd }] });
    expect(late).toMatchObject({ ok: true, scopes: [{ reserved: 2 }] });
    const kept = Number(await client.hGet(key('scope:day'), 'x'));
    expect(kept).toBeGreaterThan(periodEnd + 50_000);
    expect(Math.abs((await expiryOf('scope:day')) - kept)).toBeLessThan(1_000);
  });

  it('keeps a live reservation’s record past its scopes, and the holds past every record', async () => {
    const periodEnd = Date.now() + 2 * hour;
    await stores.ledger.reserve({ id: 'r4', amount: 3, ttlMs: 60_000, scopes: [{ key: 'month', limit: 100, expiresAt: periodEnd }] });
    const record = await expiryOf('res:r4');
    expect(record).toBeGreaterThan(periodEnd + 1_000);
    expect(await client.pTTL(key('holds'))).toBeGreaterThanOrEqual(await client.pTTL(key('res:r4')));
  });

  it('gives an expired hold back in every scope it held, whichever scope the next call touches', async () => {
    const expiresAt = Date.now() + hour;
    await stores.ledger.reserve({ id: 'r5', amount: 9, ttlMs: 100, scopes: ['p', 'q'].map((k) => ({ key: k, limit: 100, expiresAt })) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await stores.ledger.usage(['elsewhere']);
    expect(await client.hGet(key('scope:p'), 'reserved')).toBe('0');
    expect(await client.hGet(key('scope:q'), 'reserved')).toBe('0');
    expect(await client.exists(key('res:r5'))).toBe(0);
    expect(await client.zScore(key('holds'), 'r5')).toBeNull();
  });
});
