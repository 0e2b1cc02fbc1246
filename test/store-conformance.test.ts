// Runs the store conformance suite against the in-memory stores (fake clock), a real Redis and a real Redis Cluster,
// and against memory and Redis with each layer a deployment can put over them: blocks, leases, blocks over leases.
import { randomUUID } from 'node:crypto';
import { blockStores, createMemoryStores, leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import { createRedisStores } from '@tollgate/redis';
import { testCluster } from '../packages/redis/test/redis-cluster.js';
import { describeStoreConformance } from './conformance/stores.js';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

/** The layers over a store, each as a deployment composes them; `clock` is the store's. */
const LAYERS: [string, (stores: TollgateStores, clock?: () => number) => TollgateStores][] = [
  ['', (stores) => stores],
  ['blocks over ', (stores, clock) => blockStores(stores, clock ? { clock } : {})],
  ['leases over ', (stores, clock) => leasedStores(stores, clock ? { clock } : {})],
  [
    'blocks over leases over ',
    (stores, clock) => blockStores(leasedStores(stores, clock ? { clock } : {}), clock ? { clock } : {}),
  ],
];

for (const [layered, layer] of LAYERS) {
  describeStoreConformance(`${layered}memory`, async () => {
    let now = Date.UTC(2026, 10, 22, 8, 0, 0);
    const clock = () => now;
    return {
      stores: layer(createMemoryStores({ clock, sweepIntervalMs: 0 }), clock),
      now: async () => now,
      advance: async (ms) => {
        now += ms;
      },
    };
  });
}

for (const [layered, layer] of LAYERS) {
  describeStoreConformance(
    `${layered}redis`,
    async () => {
      const prefix = `tg-test:${randomUUID()}:`;
      const url = await connectTestRedis();
      const redis = createRedisStores({ url, prefix, timeoutMs: 5_000 });
      return {
        stores: layer(redis),
        now: async () => {
          const [seconds, micros] = (await redis.sendCommand(['TIME'])) as [string, string];
          return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
        },
        advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
        cleanup: () => deleteKeysWithPrefix(url, prefix),
        loseData: () => deleteKeysWithPrefix(url, prefix),
      };
    },
    { slidingWindowMs: 1000, ttlMs: 200, losesData: true, fixedWindow: true },
  );
}

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
