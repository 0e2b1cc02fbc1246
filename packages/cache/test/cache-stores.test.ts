// Both cache stores keep an answer for its lifetime and drop what they cannot hold; the memory one stays within its bytes.
import { afterAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { TollgateError } from '@tollgate/core';
import { MemoryCacheStore, RedisCacheStore, type CacheStore } from '@tollgate/cache';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `tg-test:cache-store:${randomUUID()}:`;
const client = createClient({ url: REDIS_URL });
client.on('error', () => undefined);
const connected = client.connect();

afterAll(async () => {
  await connected;
  const keys = await client.keys(`${prefix}*`);
  if (keys.length > 0) await client.del(keys);
  await client.close();
});

const stores: [string, () => Promise<CacheStore>][] = [
  ['memory', async () => new MemoryCacheStore()],
  [
    'redis',
    async () => {
      await connected;
      return new RedisCacheStore({ sendCommand: (args) => client.sendCommand(args), prefix });
    },
  ],
];

describe.each(stores)('%s store', (_name, open) => {
  it('returns what it keeps, and nothing for an unknown key', async () => {
    const store = await open();
    await store.set('k1', 'j\n{"a":1}', 60_000);
    expect(await store.get('k1')).toBe('j\n{"a":1}');
    expect(await store.get('missing')).toBeUndefined();
  });

  it('forgets an entry once its lifetime passed', async () => {
    const store = await open();
    // Long enough for the read that follows on a busy machine (40 ms was not), short enough to wait out.
    await store.set('short', 'value', 500);
    expect(await store.get('short')).toBe('value');
    await sleep(700);
    expect(await store.get('short')).toBeUndefined();
  });
});

describe('RedisCacheStore', () => {
  it('writes under the prefix it was given, with the TTL in ms', async () => {
    const store = await stores[1]![1]();
    await store.set('abc', 'v', 30_000);
    const ttl = await client.pTTL(`${prefix}cache:abc`);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
  });

  it('needs a sendCommand', () => {
    expect(() => new RedisCacheStore({} as never)).toThrow(TollgateError);
  });
});

describe('MemoryCacheStore', () => {
  it('stays within its bytes, dropping the least recently used entries, and skips an entry larger than all of it', () => {
    const store = new MemoryCacheStore({ maxBytes: 500 });
    const value = 'x'.repeat(200);
    store.set('a', value, 60_000);
    store.set('b', value, 60_000);
    expect(store.get('a')).toBe(value);
    store.set('c', value, 60_000);
    expect(store.get('b')).toBeUndefined();
    expect(store.get('a')).toBe(value);
    expect(store.get('c')).toBe(value);
    store.set('huge', 'y'.repeat(600), 60_000);
    expect(store.get('huge')).toBeUndefined();
    expect(store.get('a')).toBe(value);
  });

  it('keeps bytes given as bytes, within the same bound, and reads them back as bytes or text', () => {
    const store = new MemoryCacheStore({ maxBytes: 500 });
    const bytes = Buffer.from('j\n{"a":"é"}');
    store.setBytes('k', bytes, 60_000);
    expect(store.getBytes('k')).toBe(bytes);
    expect(store.get('k')).toBe('j\n{"a":"é"}');
    store.setBytes('too-big', Buffer.alloc(600), 60_000);
    expect(store.getBytes('too-big')).toBeUndefined();
    expect(store.size).toBe(1);
  });

  it('refuses a bound that is not a positive integer', () => {
    expect(() => new MemoryCacheStore({ maxBytes: 0 })).toThrow(/maxBytes/);
  });
});
