// createRedisStores: options checked at construction, hash-tagged keys under the prefix, any way of reaching Redis.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { TollgateError } from '@tollgate/core';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeys, eventually, keysWithPrefix, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';

beforeAll(() => requireRedis());

describe('options', () => {
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(TollgateError);
      return (error as TollgateError).code;
    }
    throw new Error('did not throw');
  };

  it('rejects unknown option names with a hint', () => {
    expect(() => createRedisStores({ prefx: 'a:' } as never)).toThrow(/did you mean "prefix"/);
    expect(code(() => createRedisStores({ timeout: 5 } as never))).toBe('ERR_TG_REDIS_UNKNOWN_OPTION');
  });

  it('takes one way of reaching Redis', () => {
    expect(code(() => createRedisStores({ url: REDIS_URL, sendCommand: async () => 'OK' }))).toBe(
      'ERR_TG_REDIS_CONFLICTING_OPTIONS',
    );
  });

  it('rejects a prefix with braces, which would break the hash tags', () => {
    expect(code(() => createRedisStores({ prefix: 'app:{x}:', sendCommand: async () => 'OK' }))).toBe(
      'ERR_TG_REDIS_INVALID_PREFIX',
    );
  });

  it('rejects a bad timeout and a sendCommand that is not a function', () => {
    expect(code(() => createRedisStores({ timeoutMs: -1, sendCommand: async () => 'OK' }))).toBe(
      'ERR_TG_REDIS_INVALID_TIMEOUT',
    );
    expect(code(() => createRedisStores({ sendCommand: 'nope' as never }))).toBe('ERR_TG_REDIS_INVALID_SEND_COMMAND');
  });

  it('rejects a batch option that is not a boolean', () => {
    expect(code(() => createRedisStores({ batch: 'yes' as never, sendCommand: async () => 'OK' }))).toBe(
      'ERR_TG_REDIS_INVALID_BATCH',
    );
  });

  it('defaults the prefix to tollgate:', async () => {
    const stores = createRedisStores({ sendCommand: async () => 'PONG' });
    expect(stores.prefix).toBe('tollgate:');
    expect(stores.kind).toBe('redis');
    await stores.close();
  });
});

/** The hash tag Redis Cluster hashes: the part between the first "{" and the next "}". */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : undefined;
}

describe('key layout', () => {
  const prefix = uniquePrefix();
  let stores: RedisStores;
  beforeAll(() => {
    stores = createRedisStores({ url: REDIS_URL, prefix });
  });
  afterAll(async () => {
    await stores.close();
    await deleteKeys(prefix);
  });

  it('puts every key under the prefix, each with a hash tag; a reserve’s keys share one', async () => {
    const expiresAt = Date.now() + 60_000;
    await stores.counter.consume('key:k1', 1, { limit: 10, windowMs: 60_000 });
    await stores.ledger.reserve({
      id: 'req-1',
      amount: 5,
      ttlMs: 60_000,
      scopes: ['key:k1', 'tenant:acme', 'feature:bot', 'global'].map((key) => ({ key, limit: 100, expiresAt })),
    });
    await stores.keys.put({ id: 'k1', sha256: 'f'.repeat(64), scopes: [], createdAt: new Date().toISOString() });

    const keys = await keysWithPrefix(prefix);
    // window; 4 scope hashes; key hash, index, ids.
    expect(keys.length).toBeGreaterThanOrEqual(1 + 4 + 3);
    for (const key of keys) {
      expect(key.startsWith(prefix)).toBe(true);
      expect(hashTag(key)).toBeDefined();
    }
    const ledgerTags = new Set(keys.filter((k) => k.includes(':{ledger}:')).map(hashTag));
    expect(ledgerTags).toEqual(new Set(['ledger']));
    // 4 scope hashes and the ledger's reserve receipts.
    expect(keys.filter((k) => k.includes(':{ledger}:'))).toHaveLength(5);
    const keyStoreTags = new Set(keys.filter((k) => k.includes(':{keys}:')).map(hashTag));
    expect(keyStoreTags).toEqual(new Set(['keys']));
    expect(keys.find((k) => k.includes(':wc:'))).toBe(`${prefix}wc:{key:k1}:60000`);
  });

  it('lets every ledger and window key expire; only key records persist', async () => {
    const client = createClient({ url: REDIS_URL });
    client.on('error', () => undefined);
    await client.connect();
    for (const key of await keysWithPrefix(prefix)) {
      const ttl = await client.pTTL(key);
      if (key.includes(':{keys}:')) expect(ttl).toBe(-1);
      else expect(ttl).toBeGreaterThan(0);
    }
    await client.close();
  });
});

describe('ways of reaching Redis', () => {
  const prefix = uniquePrefix();
  afterAll(() => deleteKeys(prefix));

  it('uses a node-redis client the caller owns, and leaves it open on close', async () => {
    const client = createClient({ url: REDIS_URL });
    client.on('error', () => undefined);
    const stores = createRedisStores({ client, prefix });
    expect((await stores.counter.consume('k', 1, { limit: 2, windowMs: 60_000 })).allowed).toBe(true);
    expect(await stores.ping()).toBe(true);
    await stores.close();
    expect(client.isReady).toBe(true);
    await client.close();
  });

  it('shares its connection through sendCommand, with the same deadline', async () => {
    const stores = createRedisStores({ url: REDIS_URL, prefix });
    expect(await stores.sendCommand(['SET', `${prefix}plain`, 'v', 'PX', '60000'])).toBe('OK');
    expect(await stores.sendCommand(['GET', `${prefix}plain`])).toBe('v');
    await stores.close();
  });
});

describe('key store across processes', () => {
  const prefix = uniquePrefix();
  let a: RedisStores;
  let b: RedisStores;
  beforeAll(() => {
    a = createRedisStores({ url: REDIS_URL, prefix });
    b = createRedisStores({ url: REDIS_URL, prefix });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await deleteKeys(prefix);
  });

  it('sees a disable or delete made elsewhere within the pub/sub delivery time', async () => {
    const record = { id: 'shared', sha256: 'e'.repeat(64), scopes: ['chat'], createdAt: new Date().toISOString() };
    await a.keys.put(record);
    expect(await b.keys.findByHash(record.sha256)).toEqual(record);
    await a.keys.disable(record.id);
    await eventually(async () => expect((await b.keys.findByHash(record.sha256))?.disabled).toBe(true), 1000);
    await b.keys.delete(record.id);
    await eventually(async () => expect(await a.keys.findByHash(record.sha256)).toBeUndefined(), 1000);
  });
});
