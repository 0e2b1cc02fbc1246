// Runs the store conformance suite against the in-memory stores (fake clock), a real Redis and a real Redis Cluster.
import { randomUUID } from 'node:crypto';
import { createMemoryStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import { testCluster } from '../packages/redis/test/redis-cluster.js';
import { describeStoreConformance } from './conformance/stores.js';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

describeStoreConformance('memory', async () => {
  let now = Date.UTC(2026, 10, 22, 8, 0, 0);
  return {
    stores: createMemoryStores({ clock: () => now, sweepIntervalMs: 0 }),
    now: async () => now,
    advance: async (ms) => {
      now += ms;
    },
  };
});

describeStoreConformance(
  'redis',
  async () => {
    const prefix = `tg-test:${randomUUID()}:`;
    const url = await connectTestRedis();
    const stores = createRedisStores({ url, prefix, timeoutMs: 5_000 });
    return {
      stores,
      now: async () => {
        const [seconds, micros] = (await stores.sendCommand(['TIME'])) as [string, string];
        return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      },
      advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      cleanup: () => deleteKeysWithPrefix(url, prefix),
      loseData: () => deleteKeysWithPrefix(url, prefix),
    };
  },
  { slidingWindowMs: 1000, ttlMs: 200, losesData: true, fixedWindow: true },
);

describeStoreConformance(
  'redis cluster',
  async () => {
    const prefix = `tg-test:${randomUUID()}:`;
    const cluster = await testCluster();
    const stores = createRedisStores({ cluster: cluster.urls, prefix, timeoutMs: 5_000 });
    return {
      stores,
      now: async () => {
        const [seconds, micros] = (await stores.sendCommand(['TIME'])) as [string, string];
        return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      },
      advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      cleanup: async () => {
        await cluster.deleteKeys(prefix);
        await cluster.stop();
      },
      loseData: () => cluster.deleteKeys(prefix),
    };
  },
  { slidingWindowMs: 1000, ttlMs: 200, losesData: true, fixedWindow: true },
);
