// createRedisStores on a real Redis Cluster: a client tollgate makes or one the caller owns, keys on the shard of their slot, key changes heard from every node.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createCluster } from 'redis';
import { TollgateError } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { keyCacheClientName } from '../src/redis-stores.js';
import { eventually, freePort, uniquePrefix } from './helpers.js';
import { testCluster, type TestCluster } from './redis-cluster.js';

let cluster: TestCluster;
const prefixes: string[] = [];
function prefixed(): string {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  return prefix;
}

beforeAll(async () => {
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  for (const prefix of prefixes) await cluster.deleteKeys(prefix);
  await cluster.stop();
});

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

  it('takes node URLs, and one way of reaching Redis', () => {
    expect(code(() => createRedisStores({ cluster: [] }))).toBe('ERR_TG_REDIS_INVALID_CLUSTER');
    expect(code(() => createRedisStores({ cluster: ['http://127.0.0.1:7000'] }))).toBe('ERR_TG_REDIS_INVALID_CLUSTER');
    expect(() => createRedisStores({ cluster: ['redis://127.0.0.1:7000', 'nope'] })).toThrow(/cluster\[1\]/);
    expect(code(() => createRedisStores({ cluster: cluster.urls, url: 'redis://127.0.0.1:6379' }))).toBe(
      'ERR_TG_REDIS_CONFLICTING_OPTIONS',
    );
  });
});

describe('stores on a cluster', () => {
  const prefix = prefixed();
  let stores: RedisStores;
  beforeAll(() => {
    stores = createRedisStores({ cluster: [cluster.urls[1]!], prefix });
  });
  afterAll(() => stores.close());

  it('is sharded, and names each slot’s hash tag for rate-limit keys', () => {
    expect(stores.sharded).toBe(true);
    expect(stores.slotTag('tenant:acme')).toBe('{tenant:acme}');
    expect(stores.slotTag('odd{slot}')).toBe('{odd%7Bslot%7D}');
  });

  it('keeps a window, a budget scope and its settle sequence on the master of their slot', async () => {
    const expiresAt = Date.now() + 60_000;
    await stores.counter.consume('tg:tokens:tenant:tenant:acme', 5, {
      limit: 10,
      windowMs: 60_000,
      slot: 'tenant:acme',
    });
    await stores.ledger.reserve({
      id: 'r1',
      amount: 5,
      ttlMs: 60_000,
      scopes: [
        { key: 'budget:tenant:acme', limit: 100, expiresAt, slot: 'tenant:acme' },
        { key: 'budget:global', limit: 100, expiresAt, slot: 'global' },
      ],
    });
    await stores.ledger.settle('r1', 3);
    const byMaster = await cluster.keysByMaster(prefix);
    const acme = await cluster.masterOf('{tenant:acme}');
    const global = await cluster.masterOf('{global}');
    expect(byMaster.get(acme)).toEqual(
      expect.arrayContaining([
        `${prefix}wc:{tenant:acme}tg:tokens:tenant:tenant:acme:60000`,
        `${prefix}{tenant:acme}:scope:budget:tenant:acme`,
      ]),
    );
    expect(byMaster.get(acme)!.some((key) => key.startsWith(`${prefix}{tenant:acme}:seq:`))).toBe(true);
    expect(byMaster.get(global)).toEqual(expect.arrayContaining([`${prefix}{global}:scope:budget:global`]));
    expect(byMaster.get(global)!.some((key) => key.startsWith(`${prefix}{global}:seq:`))).toBe(true);
  });

  it('keeps what names no slot where one server keeps it', async () => {
    await stores.counter.consume('plain', 1, { limit: 10, windowMs: 60_000 });
    await stores.ledger.reserve({
      id: 'r2',
      amount: 1,
      ttlMs: 60_000,
      scopes: [{ key: 'unslotted', limit: 10, expiresAt: Date.now() + 60_000 }],
    });
    const keys = [...(await cluster.keysByMaster(prefix)).values()].flat();
    expect(keys).toEqual(expect.arrayContaining([`${prefix}wc:{plain}:60000`, `${prefix}{ledger}:scope:unslotted`]));
  });

  it('routes other commands by their key, and sends SCRIPT LOAD to every master', async () => {
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'].map((name) => `${prefix}plain:${name}`);
    for (const key of keys) expect(await stores.sendCommand(['SET', key, key, 'PX', '60000'])).toBe('OK');
    for (const key of keys) expect(await stores.sendCommand(['GET', key])).toBe(key);
    const sha = (await stores.sendCommand(['SCRIPT', 'LOAD', 'return KEYS[1]'])) as string;
    for (const key of keys) expect(await stores.sendCommand(['EVALSHA', sha, '1', key])).toBe(key);
    expect(await stores.ping()).toBe(true);
  });
});

describe('rebuilt marks of slots first seen by several processes at once', () => {
  it('takes every reserve in a new slot, wherever several processes met it at the same moment', async () => {
    const prefix = prefixed();
    // Four processes' stores, each requiring the marks once the default slot is marked (a rebuild finished).
    const processes = Array.from({ length: 4 }, () => createRedisStores({ cluster: cluster.urls, prefix }));
    try {
      for (const stores of processes) stores.ledger.rebuildGate!.require();
      await processes[0]!.ledger.rebuildGate!.markRebuilt([]);
      const refusedSlots: (string | undefined)[] = [];
      for (const stores of processes) stores.ledger.rebuildGate!.onRefused((slot) => refusedSlots.push(slot));
      const results = [];
      // Twenty tenants first seen now, each by the four at once, twice each.
      for (let tenant = 0; tenant < 20; tenant++) {
        const slot = `tenant:new${tenant}`;
        const scope = { key: `${slot}:day`, slot, limit: 1_000, expiresAt: Date.now() + 3_600_000 };
        results.push(
          ...(await Promise.all(
            Array.from({ length: 8 }, (_, n) =>
              processes[n % 4]!.ledger.reserve({ id: `r${tenant}-${n}`, amount: 1, ttlMs: 60_000, scopes: [scope] }),
            ),
          )),
        );
      }
      expect(results.filter((result) => !result.ok)).toEqual([]);
      expect(refusedSlots).toEqual([]);
    } finally {
      await Promise.all(processes.map((stores) => stores.close()));
    }
  }, 60_000);
});

describe('a cluster client the caller owns', () => {
  it('is used as it is (sharded), and left open on close', async () => {
    const prefix = prefixed();
    const client = createCluster({ rootNodes: [{ url: cluster.urls[0]! }] });
    client.on('error', () => undefined);
    const stores = createRedisStores({ client, prefix });
    expect(stores.sharded).toBe(true);
    const expiresAt = Date.now() + 60_000;
    const scopes = [
      { key: 'k', limit: 10, expiresAt, slot: 'key:k' },
      { key: 'g', limit: 10, expiresAt, slot: 'global' },
    ];
    expect(await stores.ledger.reserve({ id: 'r', amount: 4, ttlMs: 60_000, scopes })).toMatchObject({
      ok: true,
      amount: 4,
    });
    expect(await stores.ledger.settle('r', 4)).toMatchObject({
      settled: true,
      scopes: [
        { key: 'k', spent: 4 },
        { key: 'g', spent: 4 },
      ],
    });
    await stores.close();
    expect(client.isOpen).toBe(true);
    expect(await client.sendCommand(undefined, true, ['PING'])).toBe('PONG');
    await client.close();
  });
});

describe('key changes on a cluster', () => {
  const prefix = prefixed();
  let a: RedisStores;
  let b: RedisStores;
  beforeAll(async () => {
    a = createRedisStores({ cluster: cluster.urls, prefix });
    b = createRedisStores({ cluster: [...cluster.urls].reverse(), prefix });
    await eventually(async () => expect(a.keys.cache?.live && b.keys.cache?.live).toBe(true), 5000);
  });
  afterAll(() => Promise.all([a.close(), b.close()]));

  const record = (): ApiKeyRecord => ({
    id: `k-${randomUUID().slice(0, 8)}`,
    sha256: createHash('sha256').update(randomUUID()).digest('hex'),
    tenantId: 'acme',
    scopes: [],
    createdAt: new Date().toISOString(),
  });

  it('subscribes one named connection on a master', async () => {
    let found = 0;
    for (const url of cluster.urls) {
      const node = createCluster({ rootNodes: [{ url }] });
      node.on('error', () => undefined);
      await node.connect();
      const list = String(
        await (
          await node.nodeClient(node.masters.find((m) => url.endsWith(`:${m.port}`))!)
        ).sendCommand(['CLIENT', 'LIST']),
      );
      found += list.split('\n').filter((line) => line.includes(`name=${keyCacheClientName(prefix)}`)).length;
      await node.close();
    }
    expect(found).toBe(2);
  });

  it('drops a cached record in every process when one disables, rewrites or deletes it, wherever the key lives', async () => {
    const key = record();
    await b.keys.put(key);
    expect((await a.keys.findByHash(key.sha256))?.disabled).toBeUndefined();
    await b.keys.disable(key.id);
    await eventually(async () => expect((await a.keys.findByHash(key.sha256))?.disabled).toBe(true), 1000);
    await b.keys.put({ ...key, tier: 'pro' });
    await eventually(async () => expect(await a.keys.findByHash(key.sha256)).toMatchObject({ tier: 'pro' }), 1000);
    await b.keys.delete(key.id);
    await eventually(async () => expect(await a.keys.findByHash(key.sha256)).toBeUndefined(), 1000);
  });
});

describe('a cluster that does not answer', () => {
  it('fails every call within its deadline, and never hangs a close', async () => {
    const stores = createRedisStores({
      cluster: [`redis://127.0.0.1:${await freePort()}`],
      prefix: uniquePrefix(),
      timeoutMs: 300,
    });
    const started = Date.now();
    expect(await stores.ping()).toBe(false);
    await expect(
      stores.ledger.reserve({
        id: 'r',
        amount: 1,
        ttlMs: 1000,
        scopes: [{ key: 'k', limit: 10, expiresAt: Date.now() + 60_000, slot: 'key:k' }],
      }),
    ).rejects.toThrow();
    await expect(stores.counter.consume('w', 1, { limit: 1, windowMs: 1000, slot: 'key:k' })).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(3_000);
    await stores.close();
  });
});
