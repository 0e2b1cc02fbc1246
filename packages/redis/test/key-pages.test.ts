// KeyStore.page and KeyStore.expiring on memory, Redis and a Redis Cluster: id order, tenant and prefix, a cursor that
// holds while keys are written, the keys expiring in a span soonest first, and the indexes built once for a store
// written before they existed.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createMemoryStores } from '@tollgate/core';
import type { ApiKeyRecord, KeyPage, KeyPageQuery, KeyStore } from '@tollgate/core/store-contracts';
import { changeKey } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { deleteKeys, REDIS_URL, requireRedis, uniquePrefix } from './helpers.js';
import { testCluster, type TestCluster } from './redis-cluster.js';

const record = (id: string, tenantId?: string): ApiKeyRecord => ({
  id,
  sha256: Buffer.from(id).toString('hex').padEnd(64, '0').slice(0, 64),
  scopes: [],
  createdAt: '2026-11-27T08:00:00.000Z',
  ...(tenantId === undefined ? {} : { tenantId }),
});

/** Every page of `query`, followed by its cursor. */
async function allPages(store: KeyStore, query: Omit<KeyPageQuery, 'after'>): Promise<KeyPage[]> {
  const pages: KeyPage[] = [];
  let after: string | undefined;
  do {
    const page = await store.page!({ ...query, ...(after === undefined ? {} : { after }) });
    pages.push(page);
    after = page.next;
  } while (after !== undefined);
  return pages;
}

const ids = (pages: KeyPage[]) => pages.flatMap((page) => page.keys.map((key) => key.id));

/** 60 keys: tenants acme (k00, k03, ...), acme-eu (k01, ...) and none. */
async function seed(store: KeyStore): Promise<string[]> {
  const all: string[] = [];
  for (let i = 0; i < 60; i++) {
    const id = `k${String(i).padStart(2, '0')}`;
    all.push(id);
    await store.put(record(id, ['acme', 'acme-eu', undefined][i % 3]));
  }
  return all;
}

function pageBehaviour(name: string, open: () => Promise<{ keys: KeyStore; close(): Promise<void> }>) {
  describe(`KeyStore.page on ${name}`, () => {
    it('pages every key once in id order, and a tenant or a prefix alone', async () => {
      const { keys, close } = await open();
      try {
        const all = await seed(keys);
        const pages = await allPages(keys, { limit: 7 });
        expect(ids(pages)).toEqual(all);
        expect(pages.map((page) => page.keys.length)).toEqual([7, 7, 7, 7, 7, 7, 7, 7, 4]);
        expect(pages.at(-1)!.next).toBeUndefined();
        // A page that ends on the last key says no more.
        expect((await keys.page!({ limit: 60 })).next).toBeUndefined();
        expect((await keys.page!({ limit: 59 })).next).toBe('k58');

        const acme = await allPages(keys, { tenantId: 'acme', limit: 6 });
        expect(ids(acme)).toEqual(all.filter((_, i) => i % 3 === 0));
        expect(acme.flatMap((page) => page.keys).every((key) => key.tenantId === 'acme')).toBe(true);
        const eu = await allPages(keys, { tenantId: 'acme-eu', limit: 1000 });
        expect(ids(eu)).toEqual(all.filter((_, i) => i % 3 === 1));
        expect((await keys.page!({ tenantId: 'acm', limit: 10 })).keys).toEqual([]);

        expect(ids(await allPages(keys, { prefix: 'k1', limit: 3 }))).toEqual(all.slice(10, 20));
        expect(ids(await allPages(keys, { prefix: 'k1', tenantId: 'acme', limit: 3 }))).toEqual(['k12', 'k15', 'k18']);
        // A cursor before the prefix starts at it; one past it ends the list.
        expect(ids([await keys.page!({ prefix: 'k2', after: 'k05', limit: 2 })])).toEqual(['k20', 'k21']);
        expect(await keys.page!({ prefix: 'k2', after: 'k30', limit: 2 })).toEqual({ keys: [] });
        expect(ids([await keys.page!({ prefix: 'k2', after: 'k25', limit: 2 })])).toEqual(['k26', 'k27']);
        expect((await keys.page!({ prefix: 'x', limit: 5 })).keys).toEqual([]);
      } finally {
        await close();
      }
    });

    it('reads the keys expiring in a span, soonest first, from every writing of ISO 8601, as writes change them', async () => {
      const { keys, close } = await open();
      try {
        await seed(keys);
        const at = Date.UTC(2026, 11, 1, 12, 0, 0);
        const expiring: [string, string][] = [
          ['e-z', '2026-12-01T12:00:00.000Z'], // at: the span's first instant
          ['e-offset', '2026-12-01T14:30:00+02:00'], // 12:30Z
          ['e-compact', '2026-12-01T08:15-0530'], // 13:45Z
          ['e-minute', '2026-12-01T13:00Z'],
          ['e-fraction', '2026-12-01T12:00:00.5Z'],
          ['e-date', '2026-12-02'], // midnight UTC, as Date.parse reads a date
          ['e-later', '2026-12-09T12:00:00.000Z'], // past the span
          ['e-before', '2026-12-01T11:59:59.999Z'], // before it
          ['e-leap', '2028-02-29T00:00:00Z'],
        ];
        for (const [id, expiresAt] of expiring) await keys.put({ ...record(id, 'acme'), expiresAt });
        const span = async (from: number, until: number, limit = 100) =>
          (await keys.expiring!(from, until, limit)).map((key) => key.id);
        expect(await span(at, at + 7 * 86_400_000)).toEqual([
          'e-z',
          'e-fraction',
          'e-offset',
          'e-minute',
          'e-compact',
          'e-date',
        ]);
        expect(await span(at, at + 7 * 86_400_000, 2)).toEqual(['e-z', 'e-fraction']);
        expect(await span(Date.UTC(2028, 1, 28), Date.UTC(2028, 2, 1))).toEqual(['e-leap']);
        // A key no longer expiring, one deleted, one made by a rotation: the index follows every write.
        await keys.put({ ...record('e-z', 'acme') });
        await keys.delete('e-offset');
        await changeKey(keys, 'e-minute', (current) => ({
          record: { ...current, expiresAt: '2026-12-01T12:10:00.000Z' },
          add: { ...record('e-next', 'acme'), expiresAt: '2026-12-01T12:05:00.000Z' },
        }));
        expect(await span(at, at + 7 * 86_400_000)).toEqual([
          'e-fraction',
          'e-next',
          'e-minute',
          'e-compact',
          'e-date',
        ]);
        // A revoked key is listed (callers judge); none of the 60 seeded keys, which never expire.
        await keys.disable('e-date');
        expect((await keys.expiring!(at, at + 7 * 86_400_000, 100)).find((key) => key.id === 'e-date')?.disabled).toBe(
          true,
        );
      } finally {
        await close();
      }
    });

    it('lists every key that lived through the paging once, while keys are made, deleted, rotated and moved', async () => {
      const { keys, close } = await open();
      try {
        const all = await seed(keys);
        const deleted = new Set(['k05', 'k30', 'k59']);
        const seen: string[] = [];
        let after: string | undefined;
        let step = 0;
        do {
          const page = await keys.page!({ limit: 8, ...(after === undefined ? {} : { after }) });
          seen.push(...page.keys.map((key) => key.id));
          after = page.next;
          step++;
          if (step === 2) {
            for (const id of deleted) await keys.delete(id);
            await keys.put(record('k00a', 'acme'));
            await keys.put(record('k45a'));
            // A rotation: the successor is added beside its predecessor, which stays.
            await changeKey(keys, 'k31', (current) => ({
              record: { ...current, expiresAt: '2026-11-28T08:00:00.000Z' },
              add: record('k31-next', 'acme'),
            }));
            await keys.put({ ...record('k40', 'acme-eu') });
            await keys.disable('k07');
          }
        } while (after !== undefined);
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of all) if (!deleted.has(id)) expect(seen).toContain(id);
        expect(seen).toContain('k31-next');
        expect(seen).toContain('k45a');
        expect(seen).not.toContain('k59');
        // The moved key left its old tenant's page for its new one's.
        expect(ids(await allPages(keys, { tenantId: 'acme-eu', limit: 100 }))).toContain('k40');
        expect(ids(await allPages(keys, { tenantId: 'acme-eu', limit: 100 }))).not.toContain('k05');
        expect(ids(await allPages(keys, { tenantId: 'acme', limit: 100 }))).not.toContain('k30');
      } finally {
        await close();
      }
    });
  });
}

pageBehaviour('memory', async () => createMemoryStores({ sweepIntervalMs: 0 }));

describe('on Redis', () => {
  const prefixes: string[] = [];
  beforeAll(() => requireRedis());
  afterAll(async () => {
    for (const prefix of prefixes) await deleteKeys(prefix);
  });
  const openRedis = async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    return createRedisStores({ url: REDIS_URL, prefix });
  };

  pageBehaviour('Redis', openRedis);

  describe('the id indexes of a store written before them', () => {
    let stores: RedisStores;
    let prefix: string;
    beforeAll(async () => {
      stores = await openRedis();
      prefix = prefixes.at(-1)!;
    });
    afterAll(() => stores.close());
    /** A put and a delete as an earlier version wrote them: the record and the set of ids, no index. */
    const earlierPut = async (id: string) => {
      await stores.sendCommand(['HSET', `${prefix}{keys}:key:${id}`, 'record', JSON.stringify(record(id))]);
      await stores.sendCommand(['SADD', `${prefix}{keys}:ids`, id]);
    };
    const earlierDelete = async (id: string) => {
      await stores.sendCommand(['DEL', `${prefix}{keys}:key:${id}`]);
      await stores.sendCommand(['SREM', `${prefix}{keys}:ids`, id]);
    };
    const indexKeys = () => [`${prefix}{keys}:by-id`, `${prefix}{keys}:by-tenant`, `${prefix}{keys}:indexes:state`];

    it('are built once, in steps, at the first page; then each page reads only its own', async () => {
      const all: string[] = [];
      for (let i = 0; i < 2500; i++) {
        const id = `key-${String(i).padStart(4, '0')}`;
        all.push(id);
        await stores.keys.put(record(id, i % 2 === 0 ? 'even' : 'odd'));
      }
      // As an earlier version left the store: no indexes, no state.
      await stores.sendCommand(['DEL', ...indexKeys()]);
      const first = await stores.keys.page!({ limit: 100 });
      expect(first.keys.map((key) => key.id)).toEqual(all.slice(0, 100));
      expect(await stores.sendCommand(['ZCARD', `${prefix}{keys}:by-id`])).toBe(2500);
      expect(await stores.sendCommand(['ZCARD', `${prefix}{keys}:by-tenant`])).toBe(2500);
      expect(await stores.sendCommand(['HGET', `${prefix}{keys}:indexes:state`, 'built'])).toBe('1');
      // Built: building again changes nothing.
      await stores.keys.buildIndexes();
      expect(await stores.sendCommand(['ZCARD', `${prefix}{keys}:by-id`])).toBe(2500);
      const odd = await stores.keys.page!({ tenantId: 'odd', after: 'key-2400', limit: 100 });
      expect(odd.keys.map((key) => key.id)).toEqual(all.slice(2401).filter((_, i) => i % 2 === 0));
      expect(odd.next).toBeUndefined();
    });

    it('are built again when a writer of an earlier version added or removed a key, or when asked', async () => {
      await earlierPut('key-0000a');
      const first = (await stores.keys.page!({ limit: 3 })).keys.map((key) => key.id);
      expect(first).toEqual(['key-0000', 'key-0000a', 'key-0001']);
      await earlierDelete('key-0001');
      const second = (await stores.keys.page!({ limit: 3 })).keys.map((key) => key.id);
      expect(second).toEqual(['key-0000', 'key-0000a', 'key-0002']);
      expect(await stores.sendCommand(['ZCARD', `${prefix}{keys}:by-id`])).toBe(2500);
      // An add and a delete between two pages leave the count as it was: only a build asked for sees them.
      await earlierPut('key-0000b');
      await earlierDelete('key-0002');
      await stores.keys.buildIndexes({ again: true });
      const third = (await stores.keys.page!({ limit: 4 })).keys.map((key) => key.id);
      expect(third).toEqual(['key-0000', 'key-0000a', 'key-0000b', 'key-0003']);
    });

    it('give the keys expiring soon on a store indexed by an earlier version, and an expiry they cannot read', async () => {
      const soon = new Date(Date.now() + 3_600_000).toISOString();
      await stores.keys.put({ ...record('key-0005', 'odd'), expiresAt: soon });
      // As the version before the index by expiry left it: the id indexes built, under their old state's name.
      await stores.sendCommand(['DEL', `${prefix}{keys}:by-expiry`, `${prefix}{keys}:indexes:state`]);
      await stores.sendCommand(['HSET', `${prefix}{keys}:by-id:state`, 'built', '1']);
      await earlierPut('key-0006');
      await stores.sendCommand([
        'HSET',
        `${prefix}{keys}:key:key-0006`,
        'record',
        JSON.stringify({ ...record('key-0006'), expiresAt: 'Fri, 01 Jan 2027 12:00:00 GMT' }),
      ]);
      const found = await stores.keys.expiring!(Date.now(), Date.now() + 7 * 86_400_000, 10);
      expect(found.map((key) => key.id)).toEqual(['key-0005']);
      // key-0006's writing is one the index cannot read: kept at -1, judged by Date.parse at each read.
      expect(await stores.sendCommand(['ZSCORE', `${prefix}{keys}:by-expiry`, 'key-0006'])).toBe('-1');
      const newYear = await stores.keys.expiring!(Date.UTC(2027, 0, 1), Date.UTC(2027, 0, 2), 10);
      expect(newYear.map((key) => key.id)).toEqual(['key-0006']);
    });

    it('drop a key an earlier version moved to another tenant from the old tenant page', async () => {
      await stores.sendCommand([
        'HSET',
        `${prefix}{keys}:key:key-0004`,
        'record',
        JSON.stringify(record('key-0004', 'odd')),
      ]);
      const even = await stores.keys.page!({ tenantId: 'even', limit: 2 });
      expect(even.keys.map((key) => key.id)).toEqual(['key-0000']);
      expect(even.next).toBe('key-0004');
    });
  });
});

describe('on a Redis Cluster', () => {
  let cluster: TestCluster | undefined;
  afterAll(() => cluster?.stop());

  // Started by the first test that needs it; each store's keys deleted when it closes.
  pageBehaviour('a Redis Cluster', async () => {
    cluster ??= await testCluster();
    const on = cluster;
    const prefix = uniquePrefix();
    const stores = createRedisStores({ cluster: on.urls, prefix });
    return { keys: stores.keys, close: () => stores.close().then(() => on.deleteKeys(prefix)) };
  });
});
