// The layer invariants (test/conformance/layers.ts) over every backend and layer a deployment can choose: blocks over memory,
// Redis and a Redis Cluster; leases over Redis; blocks over leases over Redis. Two stores over one backend stand for two processes.
import { randomUUID } from 'node:crypto';
import { blockStores, createMemoryStores, leasedStores } from '@tollgate/core';
import type { BlockStores, LeasedStores, TollgateStores } from '@tollgate/core';
import { createClient } from 'redis';
import { createRedisStores } from '@tollgate/redis';
import { testCluster } from '../packages/redis/test/redis-cluster.js';
import { describeLayerInvariants, type LayerHarness } from './conformance/layers.js';
import { connectTestRedis, deleteKeysWithPrefix } from './conformance/redis.js';

/** A block is 5% of a limit: blocks open, run out and go back within each test. */
const BLOCKS = { share: 0.05, maxAgeMs: 300 };

async function quiesceAll(processes: TollgateStores[]): Promise<void> {
  for (const stores of processes) await (stores as Partial<BlockStores<TollgateStores>>).blocks?.retireAll();
  for (const stores of processes) await (stores as Partial<LeasedStores<TollgateStores>>).lease?.flush();
  // What the ledgers batch lands within their settle delay.
  await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Deletes one key on one master (what a failover to an empty replica does to every key of its slots). */
async function unlinkOn(url: string, key: string): Promise<void> {
  const client = createClient({ url });
  await client.connect();
  try {
    await client.unlink(key);
  } finally {
    await client.close();
  }
}

function harnessOf(processes: [TollgateStores, TollgateStores], extra: Partial<LayerHarness> & { close?: () => Promise<void> } = {}): LayerHarness {
  return {
    processes,
    quiesce: () => quiesceAll(processes),
    ...(extra.loseData ? { loseData: extra.loseData } : {}),
    ...(extra.loseShard ? { loseShard: extra.loseShard } : {}),
    cleanup: async () => {
      await Promise.all(processes.map((stores) => stores.close()));
      await extra.close?.();
    },
  };
}

describeLayerInvariants('blocks over memory', async () => {
  // One process's memory stores shared by two block layers: the two stand for two processes' blocks over one store.
  const memory = createMemoryStores({ sweepIntervalMs: 0 });
  const shared = { ...memory, close: async () => undefined } as TollgateStores;
  return harnessOf([blockStores(shared, BLOCKS), blockStores(shared, BLOCKS)], { close: () => memory.close() });
});

async function redisBackend(): Promise<{ open: () => ReturnType<typeof createRedisStores>; loseData: () => Promise<void>; close: () => Promise<void> }> {
  const url = await connectTestRedis();
  const prefix = `tg-test:layers:${randomUUID()}:`;
  return { open: () => createRedisStores({ url, prefix, timeoutMs: 5_000 }), loseData: () => deleteKeysWithPrefix(url, prefix), close: () => deleteKeysWithPrefix(url, prefix) };
}

describeLayerInvariants('blocks over Redis', async () => {
  const redis = await redisBackend();
  return harnessOf([blockStores(redis.open(), BLOCKS), blockStores(redis.open(), BLOCKS)], redis);
}, { fixedWindow: true, losesData: true });

describeLayerInvariants('leases over Redis (Redis up)', async () => {
  const redis = await redisBackend();
  return harnessOf([leasedStores(redis.open()), leasedStores(redis.open())], redis);
}, { fixedWindow: true, losesData: true });

describeLayerInvariants('blocks over leases over Redis', async () => {
  const redis = await redisBackend();
  return harnessOf([blockStores(leasedStores(redis.open()), BLOCKS), blockStores(leasedStores(redis.open()), BLOCKS)], redis);
}, { fixedWindow: true, losesData: true });

describeLayerInvariants('blocks over a Redis Cluster', async () => {
  const cluster = await testCluster();
  const prefix = `tg-test:layers:${randomUUID()}:`;
  const open = () => blockStores(createRedisStores({ cluster: cluster.urls, prefix, timeoutMs: 5_000, keyCache: false }), BLOCKS);
  return harnessOf([open(), open()], {
    loseData: () => cluster.deleteKeys(prefix),
    loseShard: async () => {
      const master = await cluster.masterOf('{global}');
      const keys = (await cluster.keysByMaster(prefix)).get(master) ?? [];
      await Promise.all(keys.map((key) => unlinkOn(master, key)));
    },
    close: async () => {
      await cluster.deleteKeys(prefix);
      await cluster.stop();
    },
  });
}, { fixedWindow: true, losesData: true, losesShard: true });
