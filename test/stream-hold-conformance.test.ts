// The hold that follows a stream (test/conformance/stream-hold.ts) on every store a deployment can choose: memory,
// Redis without blocks, Redis with the default blocks, leases over Redis, blocks over leases, and a Redis Cluster of
// the test's own (with blocks, its default).
import { randomUUID } from 'node:crypto';
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import type { RedisStoresOptions } from '../packages/redis/src/redis-stores.js';
import { testCluster } from '../packages/redis/test/redis-cluster.js';
import { describeStreamHold } from './conformance/stream-hold.js';
import type { StreamHoldBackend } from './conformance/stream-hold.js';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

/** Leases on every layer, at the default slice: what a process grants on its own while Redis is out. */
const LEASES = { requests: 'lease', tokens: 'lease', budget: 'lease', slice: 0.02 } as const;
/** Blocks at their defaults (share, size by demand, hot after two requests), held a second so budgets can be read. */
const BLOCKS = { maxAge: '1s' };

/** Stores opened on `options`, one set per process, closed and their keys deleted at the end. */
function redisBackend(
  options: RedisStoresOptions,
  layers: StreamHoldBackend['layers'],
  deleteKeys: () => Promise<void>,
): StreamHoldBackend {
  const opened: TollgateStores[] = [];
  return {
    open() {
      const stores = createRedisStores(options);
      opened.push(stores);
      return stores;
    },
    layers,
    async cleanup() {
      await Promise.all(opened.map((stores) => stores.close()));
      await deleteKeys();
    },
  };
}

async function singleRedis(layers: StreamHoldBackend['layers']): Promise<StreamHoldBackend> {
  const url = await connectTestRedis();
  const prefix = `tg-test:hold:${randomUUID()}:`;
  return redisBackend({ url, prefix, timeoutMs: 5_000 }, layers, () => deleteKeysWithPrefix(url, prefix));
}

describeStreamHold('memory', async () => {
  // One process's memory stores, shared by both gateways as they would be by two apps in it.
  const stores = createMemoryStores();
  return { open: () => stores, layers: {}, cleanup: () => stores.close() };
});

describeStreamHold('Redis without blocks', () => singleRedis({ redis: { blocks: false } }));

describeStreamHold('Redis with blocks', () => singleRedis({ redis: { blocks: BLOCKS } }));

describeStreamHold('leases over Redis', () => singleRedis({ redis: { blocks: false }, storeOutage: LEASES }));

describeStreamHold('blocks over leases over Redis', () =>
  singleRedis({ redis: { blocks: BLOCKS }, storeOutage: LEASES }),
);

describeStreamHold('a Redis Cluster with blocks', async () => {
  const cluster = await testCluster();
  const prefix = `tg-test:hold:${randomUUID()}:`;
  return redisBackend({ cluster: cluster.urls, prefix, timeoutMs: 5_000 }, { redis: { blocks: BLOCKS } }, async () => {
    await cluster.deleteKeys(prefix);
    await cluster.stop();
  });
});
