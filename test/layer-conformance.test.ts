// The layer invariants (test/conformance/layers.ts) over every backend and layer a deployment can choose: blocks over
// memory, Redis and a Redis Cluster; leases over memory and Redis; blocks over leases over memory and Redis; each over a
// Redis that freezes (SIGSTOP), and with a process killed while it holds a block. Two stores over one backend stand for two processes.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { blockStores, createMemoryStores, leasedStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { BlockStores, LeasedStores, LedgerScope } from '@tollgate/core/store-contracts';
import { createClient } from 'redis';
import { createRedisStores } from '@tollgate/redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
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

/**
 * Another process (node, the packages' sources through tsx) with the same layers over the same Redis: it opens a budget block of
 * `scope` (hotAfter 1; three requests of 10, settled into it; blocks held at most 2 s past a request's 1 s ttl), then
 * says so and is killed with SIGKILL while it holds the block.
 */
async function killHolder(redis: Record<string, unknown>, leases: boolean, scope: LedgerScope): Promise<void> {
  const code = `
    import { blockStores, leasedStores } from '@tollgate/core';
    import { createRedisStores } from '@tollgate/redis';
    const { redis, leases, scope } = JSON.parse(process.env.TG_HOLDER);
    const inner = createRedisStores(redis);
    const stores = blockStores(leases ? leasedStores(inner) : inner, { hotAfter: 1, maxAgeMs: 2000 });
    for (let i = 0; i < 3; i++) {
      const id = 'holder-' + i;
      const result = await stores.ledger.reserve({ id, amount: 10, scopes: [scope], ttlMs: 1000 });
      if (!result.ok) throw new Error('the holder was refused');
      await stores.ledger.settle(id, 10);
    }
    // A block retired on the way settles in the ledger's next batch.
    await new Promise((resolve) => setTimeout(resolve, 200));
    process.stdout.write('holding');
    setInterval(() => {}, 1000);
  `;
  // The packages' sources through tsx, as the other multi-process tests run them (CI tests before any build).
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=source', '--input-type=module', '-e', code], {
    cwd: process.cwd(),
    env: { ...process.env, TG_HOLDER: JSON.stringify({ redis, leases, scope }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('holding')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before holding: ${stderr}`)));
  });
  child.kill('SIGKILL');
  await exited;
}

function harnessOf(
  processes: [TollgateStores, TollgateStores],
  extra: Partial<LayerHarness> & { close?: () => Promise<void> } = {},
): LayerHarness {
  return {
    processes,
    quiesce: () => quiesceAll(processes),
    ...(extra.loseData ? { loseData: extra.loseData } : {}),
    ...(extra.loseShard ? { loseShard: extra.loseShard } : {}),
    ...(extra.freeze ? { freeze: extra.freeze } : {}),
    ...(extra.killHolder ? { killHolder: extra.killHolder } : {}),
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

describeLayerInvariants('leases over memory', async () => {
  const memory = createMemoryStores({ sweepIntervalMs: 0 });
  const shared = { ...memory, close: async () => undefined } as TollgateStores;
  return harnessOf([leasedStores(shared), leasedStores(shared)], { close: () => memory.close() });
});

describeLayerInvariants('blocks over leases over memory', async () => {
  const memory = createMemoryStores({ sweepIntervalMs: 0 });
  const shared = { ...memory, close: async () => undefined } as TollgateStores;
  return harnessOf([blockStores(leasedStores(shared), BLOCKS), blockStores(leasedStores(shared), BLOCKS)], {
    close: () => memory.close(),
  });
});

async function redisBackend(): Promise<{
  open: () => ReturnType<typeof createRedisStores>;
  options: Record<string, unknown>;
  loseData: () => Promise<void>;
  close: () => Promise<void>;
}> {
  const url = await connectTestRedis();
  const prefix = `tg-test:layers:${randomUUID()}:`;
  const options = { url, prefix, timeoutMs: 5_000 };
  return {
    open: () => createRedisStores(options),
    options,
    loseData: () => deleteKeysWithPrefix(url, prefix),
    close: () => deleteKeysWithPrefix(url, prefix),
  };
}

describeLayerInvariants(
  'blocks over Redis',
  async () => {
    const redis = await redisBackend();
    return harnessOf([blockStores(redis.open(), BLOCKS), blockStores(redis.open(), BLOCKS)], {
      ...redis,
      killHolder: (scope) => killHolder(redis.options, false, scope),
    });
  },
  { fixedWindow: true, losesData: true, killsHolder: true },
);

describeLayerInvariants(
  'leases over Redis (Redis up)',
  async () => {
    const redis = await redisBackend();
    return harnessOf([leasedStores(redis.open()), leasedStores(redis.open())], redis);
  },
  { fixedWindow: true, losesData: true },
);

describeLayerInvariants(
  'blocks over leases over Redis',
  async () => {
    const redis = await redisBackend();
    return harnessOf(
      [blockStores(leasedStores(redis.open()), BLOCKS), blockStores(leasedStores(redis.open()), BLOCKS)],
      { ...redis, killHolder: (scope) => killHolder(redis.options, true, scope) },
    );
  },
  { fixedWindow: true, losesData: true, killsHolder: true },
);

/** A redis-server of the test's own (never the shared one), which it freezes with SIGSTOP; stores with a short deadline. */
async function freezingBackend(layer: (stores: TollgateStores) => TollgateStores): Promise<LayerHarness> {
  const server = new PrivateRedis(await freePort());
  await server.start();
  const open = () => layer(createRedisStores({ url: server.url, prefix: 'tg-test:layers:frozen:', timeoutMs: 300 }));
  return harnessOf([open(), open()], {
    freeze: async () => {
      server.signal('SIGSTOP');
      return async () => server.signal('SIGCONT');
    },
    close: async () => {
      server.signal('SIGCONT');
      await server.stop();
    },
  });
}

describeLayerInvariants(
  'blocks over a Redis that freezes',
  () => freezingBackend((stores) => blockStores(stores, BLOCKS)),
  { freezes: true },
);

describeLayerInvariants(
  'blocks over leases over a Redis that freezes',
  () => freezingBackend((stores) => blockStores(leasedStores(stores), BLOCKS)),
  { freezes: true },
);

describeLayerInvariants('leases over a Redis that freezes', () => freezingBackend((stores) => leasedStores(stores)), {
  freezes: true,
});

describeLayerInvariants(
  'blocks over a Redis Cluster',
  async () => {
    const cluster = await testCluster();
    const prefix = `tg-test:layers:${randomUUID()}:`;
    const options = { cluster: cluster.urls, prefix, timeoutMs: 5_000, keyCache: false as const };
    const open = () => blockStores(createRedisStores(options), BLOCKS);
    return harnessOf([open(), open()], {
      killHolder: (scope) => killHolder(options, false, scope),
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
  },
  { fixedWindow: true, losesData: true, losesShard: true, killsHolder: true },
);
