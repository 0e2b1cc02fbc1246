// The Redis key store's in-process cache: served from memory, dropped on every change from any process, and wholly on reconnect.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { keyCacheClientName } from '../src/redis-stores.js';
import { deleteKeys, eventually, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

const prefix = uniquePrefix();
let storesA: RedisStores;
let storesB: RedisStores;
const raw = createClient({ url: REDIS_URL });

function keyRecord(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  const sha256 = createHash('sha256').update(randomUUID()).digest('hex');
  return {
    id: `k-${randomUUID().slice(0, 8)}`,
    sha256,
    tenantId: 'acme',
    scopes: ['chat'],
    createdAt: new Date().toISOString(),
    ...overrides,
  };
}

/** Finds `record` twice in `stores`: a record is kept once found again within maxAgeMs. */
async function foundTwice(stores: RedisStores, record: ApiKeyRecord): Promise<ApiKeyRecord | undefined> {
  await stores.keys.findByHash(record.sha256);
  return stores.keys.findByHash(record.sha256);
}

/** Rewrites a record behind the store's back (no PUBLISH): what a missed message looks like to a cache. */
async function rewriteSilently(record: ApiKeyRecord): Promise<void> {
  await raw.hSet(`${prefix}{keys}:key:${record.id}`, 'record', JSON.stringify(record));
}

beforeAll(async () => {
  await requireRedis();
  raw.on('error', () => undefined);
  await raw.connect();
  storesA = createRedisStores({ url: REDIS_URL, prefix });
  storesB = createRedisStores({ url: REDIS_URL, prefix });
  await eventually(async () => expect(storesA.keys.cache?.live && storesB.keys.cache?.live).toBe(true), 5000);
});

afterAll(async () => {
  await Promise.all([storesA.close(), storesB.close()]);
  await deleteKeys(prefix);
  await raw.close();
});

describe('RedisKeyStore cache', () => {
  it('serves a found key from memory (a silent rewrite is not seen)', async () => {
    const record = keyRecord();
    await storesA.keys.put(record);
    expect(await foundTwice(storesA, record)).toMatchObject({ id: record.id, tenantId: 'acme' });
    await rewriteSilently({ ...record, tenantId: 'other' });
    expect(await storesA.keys.findByHash(record.sha256)).toMatchObject({ tenantId: 'acme' });
  });

  it('drops a record when another process disables, rewrites or deletes it', async () => {
    const record = keyRecord();
    await storesB.keys.put(record);
    expect((await foundTwice(storesA, record))?.disabled).toBeUndefined();
    await storesB.keys.disable(record.id);
    await eventually(async () => expect((await storesA.keys.findByHash(record.sha256))?.disabled).toBe(true), 1000);

    await storesB.keys.put({ ...record, tier: 'pro' });
    await eventually(
      async () => expect(await storesA.keys.findByHash(record.sha256)).toMatchObject({ tier: 'pro' }),
      1000,
    );

    await storesB.keys.delete(record.id);
    await eventually(async () => expect(await storesA.keys.findByHash(record.sha256)).toBeUndefined(), 1000);
  });

  it('drops the old hash of a key re-put with a new one (rotation in place)', async () => {
    const record = keyRecord();
    await storesB.keys.put(record);
    expect(await foundTwice(storesA, record)).toBeDefined();
    await storesB.keys.put({ ...record, sha256: createHash('sha256').update(randomUUID()).digest('hex') });
    await eventually(async () => expect(await storesA.keys.findByHash(record.sha256)).toBeUndefined(), 1000);
  });

  it("sees its own process's writes at once, without waiting for the message", async () => {
    const record = keyRecord();
    await storesA.keys.put(record);
    await foundTwice(storesA, record);
    await storesA.keys.disable(record.id);
    expect((await storesA.keys.findByHash(record.sha256))?.disabled).toBe(true);
  });

  it('keeps a record found a second time within maxAgeMs, not one found once', async () => {
    const cache = storesA.keys.cache!;
    const [once, twice, apart] = [keyRecord(), keyRecord(), keyRecord()];
    const now = Date.now();
    cache.store(once.sha256, once, cache.begin(), now);
    expect(cache.get(once.sha256, now)).toBeUndefined();
    cache.store(twice.sha256, twice, cache.begin(), now);
    cache.store(twice.sha256, twice, cache.begin(), now + 30_000);
    expect(cache.get(twice.sha256, now + 30_000)).toBe(twice);
    // Found again two periods later: as good as found once.
    cache.store(apart.sha256, apart, cache.begin(), now);
    cache.store(keyRecord().sha256, keyRecord(), cache.begin(), now + 60_000);
    cache.store(keyRecord().sha256, keyRecord(), cache.begin(), now + 120_000);
    cache.store(apart.sha256, apart, cache.begin(), now + 120_001);
    expect(cache.get(apart.sha256, now + 120_001)).toBeUndefined();
  });

  it('hands out one frozen copy of each list of scopes, and tells lists that join alike apart', async () => {
    const [first, second, other] = [
      keyRecord({ scopes: ['chat', 'embed'] }),
      keyRecord({ scopes: ['chat', 'embed'] }),
      keyRecord({ scopes: ['chat,embed'] }),
    ];
    for (const record of [first, second, other]) await storesA.keys.put(record);
    const [a, b, c] = await Promise.all([first, second, other].map((record) => storesA.keys.findByHash(record.sha256)));
    expect(a!.scopes).toEqual(['chat', 'embed']);
    expect(b!.scopes).toBe(a!.scopes);
    expect(Object.isFrozen(a!.scopes)).toBe(true);
    expect(c!.scopes).toEqual(['chat,embed']);
  });

  it('caches no unknown hash: a flood of forged keys takes no memory', async () => {
    const before = storesA.keys.cache!.size;
    for (let i = 0; i < 200; i++)
      expect(await storesA.keys.findByHash(createHash('sha256').update(`forged-${i}`).digest('hex'))).toBeUndefined();
    expect(storesA.keys.cache!.size).toBe(before);
  });

  it('keeps at most maxEntries records', async () => {
    const small = createRedisStores({ url: REDIS_URL, prefix, keyCache: { maxEntries: 2 } });
    try {
      await eventually(async () => expect(small.keys.cache?.live).toBe(true), 5000);
      const records = [keyRecord(), keyRecord(), keyRecord()];
      for (const record of records) await storesB.keys.put(record);
      for (const record of records) await foundTwice(small, record);
      expect(small.keys.cache!.size).toBe(2);
    } finally {
      await small.close();
    }
  });

  it('drops the least recently used record first', async () => {
    const small = createRedisStores({ url: REDIS_URL, prefix, keyCache: { maxEntries: 2 } });
    try {
      await eventually(async () => expect(small.keys.cache?.live).toBe(true), 5000);
      const cache = small.keys.cache!;
      const [first, second, third] = [keyRecord(), keyRecord(), keyRecord()];
      const storeTwice = (record: ApiKeyRecord) => {
        cache.store(record.sha256, record, cache.begin());
        cache.store(record.sha256, record, cache.begin());
      };
      storeTwice(first);
      storeTwice(second);
      expect(cache.get(first.sha256)).toBe(first);
      storeTwice(third);
      expect(cache.get(second.sha256)).toBeUndefined();
      expect(cache.get(first.sha256)).toBe(first);
      expect(cache.get(third.sha256)).toBe(third);
    } finally {
      await small.close();
    }
  });

  it('serves a record while it is younger than maxAgeMs', () => {
    const cache = storesA.keys.cache!;
    const record = keyRecord();
    const storedAt = Date.now();
    cache.store(record.sha256, record, cache.begin(), storedAt - 1_000);
    cache.store(record.sha256, record, cache.begin(), storedAt);
    expect(cache.get(record.sha256, storedAt + 59_999)).toBe(record);
    expect(cache.get(record.sha256, storedAt + 60_000)).toBeUndefined();
    // Dropped, not only hidden: an earlier clock does not bring it back.
    expect(cache.get(record.sha256, storedAt)).toBeUndefined();
  });

  it('drops the whole cache when the subscriber reconnects (messages may have been missed)', async () => {
    const record = keyRecord();
    await storesA.keys.put(record);
    await foundTwice(storesA, record);
    await rewriteSilently({ ...record, tenantId: 'moved' });
    expect(await storesA.keys.findByHash(record.sha256)).toMatchObject({ tenantId: 'acme' });

    // Cut the subscribers' connections (this prefix's: A's and B's) from the server side.
    const clients = String(await raw.sendCommand(['CLIENT', 'LIST', 'TYPE', 'pubsub']));
    const ids = clients
      .split('\n')
      .filter((entry) => entry.includes(` name=${keyCacheClientName(prefix)} `))
      .map((entry) => /\bid=(\d+)/.exec(entry)?.[1]);
    expect(ids).toHaveLength(2);
    for (const id of ids) await raw.sendCommand(['CLIENT', 'KILL', 'ID', id!]);

    // Whether read while reconnecting (straight from Redis) or after (an emptied cache), the rewrite shows.
    await eventually(
      async () => expect(await storesA.keys.findByHash(record.sha256)).toMatchObject({ tenantId: 'moved' }),
      2000,
    );
    await eventually(async () => expect(storesA.keys.cache?.live).toBe(true), 5000);
    expect(await storesA.keys.findByHash(record.sha256)).toMatchObject({ tenantId: 'moved' });
  });

  it('has no cache with a bare sendCommand or keyCache: false', async () => {
    const bare = createRedisStores({ sendCommand: (args) => raw.sendCommand(args), prefix });
    const off = createRedisStores({ url: REDIS_URL, prefix, keyCache: false });
    expect(bare.keys.cache).toBeUndefined();
    expect(off.keys.cache).toBeUndefined();
    // Connected before closing: node-redis leaks a socket destroyed in the middle of its first connect.
    expect(await off.ping()).toBe(true);
    await Promise.all([bare.close(), off.close()]);
  });

  it('rejects a bad keyCache option', () => {
    expect(() => createRedisStores({ prefix, keyCache: { maxEntrys: 5 } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_TG_REDIS_UNKNOWN_OPTION' }),
    );
    expect(() => createRedisStores({ prefix, keyCache: { maxAgeMs: 0 } })).toThrow(
      expect.objectContaining({ code: 'ERR_TG_REDIS_INVALID_KEY_CACHE' }),
    );
  });
});
