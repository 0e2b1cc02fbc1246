// Benchmark 10: a capacity model of the stores. Redis CPU, round trips and bytes per request of the chain's store traffic, turned
// into requests per second per shard and shards needed for a load, on one Redis and on a tenant-slotted Redis Cluster.
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { blockStores } from '@tollgate/core';
import { GLOBAL_SLOT } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { startRedisCluster, type TestCluster } from '../packages/redis/test/redis-cluster.js';
import { PrivateRedis } from './lib/private-redis.js';
import type { BenchContext, SectionResult } from './lib/section.js';
import { fmtNumber, median, table } from './lib/stats.js';

/** The share of one core a shard is planned to run at: Redis runs commands on one thread, and headroom absorbs bursts. */
const UTILISATION = 0.7;
const LOADS = [1_000, 10_000, 50_000, 100_000];
const TENANTS = 200;
const KEYS_PER_TENANT = 5;
const CONCURRENCY = 32;
const HOUR = 3_600_000;

interface NodeReading {
  cpuUs: number;
  scriptCalls: number;
  bytes: number;
}

async function readNode(url: string): Promise<NodeReading> {
  const client = createClient({ url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const [cpu, stats, commandstats] = [
      await client.info('cpu'),
      await client.info('stats'),
      await client.info('commandstats'),
    ];
    const number = (text: string, name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
    let scriptCalls = 0;
    for (const match of commandstats.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+)/gm)) scriptCalls += Number(match[2]);
    return {
      cpuUs: (number(cpu, 'used_cpu_user') + number(cpu, 'used_cpu_sys')) * 1e6,
      scriptCalls,
      bytes: number(stats, 'total_net_input_bytes') + number(stats, 'total_net_output_bytes'),
    };
  } finally {
    await client.quit().catch(() => undefined);
  }
}

/**
 * One request's store traffic, as the proxy's chain sends it: the request window, the token window
 * and the budget (key, tenant and, when `global`, the global scope) in one turn before the answer;
 * the token window's adjust and the budget's settle after it.
 */
async function request(stores: RedisStores, index: number, global: boolean): Promise<void> {
  const tenant = `tenant:t${index % TENANTS}`;
  const key = `key:t${index % TENANTS}k${Math.floor(index / TENANTS) % KEYS_PER_TENANT}`;
  const expiresAt = Date.now() + HOUR;
  const scopes = [
    { key, limit: 1e15, expiresAt, slot: tenant },
    { key: tenant, limit: 1e15, expiresAt, slot: tenant },
    ...(global ? [{ key: 'global', limit: 1e15, expiresAt, slot: GLOBAL_SLOT }] : []),
  ];
  const id = randomUUID();
  const window = { limit: 1e12, windowMs: 60_000, slot: tenant };
  const [, tokens] = await Promise.all([
    stores.fixedWindow.hit(`${stores.slotTag(tenant)}rl:${tenant}`, 60_000),
    stores.counter.consume(`tokens:${tenant}`, 1_000, window),
    stores.ledger.reserve({ id, amount: 1_000_000, scopes, ttlMs: 60_000 }),
  ]);
  await Promise.all([
    stores.counter.adjust(`tokens:${tenant}`, -600, {
      windowMs: window.windowMs,
      windowStart: tokens.windowStart,
      slot: tenant,
    }),
    stores.ledger.settle(id, 400_000),
  ]);
}

interface LayoutCost {
  /** Summed over every node, per request. */
  cpuUs: number;
  calls: number;
  bytes: number;
  /** The busiest node's share of the CPU. */
  busiestShare: number;
}

async function measure(
  stores: RedisStores,
  urls: readonly string[],
  requests: number,
  global: boolean,
): Promise<LayoutCost> {
  const before = await Promise.all(urls.map(readNode));
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < requests) await request(stores, next++, global);
    }),
  );
  // Settles leave a few ms after their callers resolved.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const after = await Promise.all(urls.map(readNode));
  const cpu = after.map((reading, index) => reading.cpuUs - before[index]!.cpuUs);
  const total = cpu.reduce((sum, value) => sum + value, 0);
  return {
    cpuUs: total / requests,
    calls: after.reduce((sum, reading, index) => sum + reading.scriptCalls - before[index]!.scriptCalls, 0) / requests,
    bytes: after.reduce((sum, reading, index) => sum + reading.bytes - before[index]!.bytes, 0) / requests,
    busiestShare: Math.max(...cpu) / total,
  };
}

const mid = (samples: LayoutCost[]): LayoutCost => ({
  cpuUs: median(samples.map((s) => s.cpuUs)),
  calls: median(samples.map((s) => s.calls)),
  bytes: median(samples.map((s) => s.bytes)),
  busiestShare: median(samples.map((s) => s.busiestShare)),
});

/** Shards a load needs when per-request work `spread` divides evenly over the shards and `pinned` lands on one of them (the global slot's). */
function shardsFor(load: number, spread: number, pinned: number): number | undefined {
  const capacity = UTILISATION * 1e6;
  if (load * pinned >= capacity) return undefined;
  for (let shards = 1; shards <= 1024; shards++) if (load * (pinned + spread / shards) <= capacity) return shards;
  return undefined;
}

export async function runCapacityBenchmark(context: BenchContext): Promise<SectionResult> {
  const title = '10. Capacity model: Redis CPU, round trips and bytes per request, shards per load';
  const rounds = context.quick ? 2 : 5;
  const requests = context.quick ? 1_000 : 5_000;
  const single = new PrivateRedis();
  let cluster: TestCluster | undefined;
  const cases = {
    single: [] as LayoutCost[],
    singleNoGlobal: [] as LayoutCost[],
    cluster: [] as LayoutCost[],
    clusterNoGlobal: [] as LayoutCost[],
    clusterBlocks: [] as LayoutCost[],
  };
  try {
    await single.start();
    cluster = await startRedisCluster(3);
  } catch (error) {
    await single.stop();
    await cluster?.stop();
    return { title, body: `Could not start a redis-server or a cluster of its own: ${String(error)}`, targets: [] };
  }
  const onOne = createRedisStores({ url: single.url, prefix: `capacity:${context.runId}:`, keyCache: false });
  const onCluster = createRedisStores({ cluster: cluster.urls, prefix: `capacity:${context.runId}:`, keyCache: false });
  // The proxy's cluster setting: the global budget handed out in blocks (1% of a 1e15 limit here: every request of a round fits one block per process).
  const withBlocks = blockStores(
    createRedisStores({ cluster: cluster.urls, prefix: `capacity-blocks:${context.runId}:`, keyCache: false }),
  );
  try {
    // Warm-up: scripts loaded on every node, windows and scopes created.
    for (const global of [true, false]) {
      await measure(onOne, [single.url], 500, global);
      await measure(onCluster, cluster.urls, 500, global);
    }
    await measure(withBlocks, cluster.urls, 500, true);
    for (let round = 0; round < rounds; round++) {
      cases.single.push(await measure(onOne, [single.url], requests, true));
      cases.singleNoGlobal.push(await measure(onOne, [single.url], requests, false));
      cases.cluster.push(await measure(onCluster, cluster.urls, requests, true));
      cases.clusterNoGlobal.push(await measure(onCluster, cluster.urls, requests, false));
      cases.clusterBlocks.push(await measure(withBlocks, cluster.urls, requests, true));
      context.log(`capacity round ${round + 1}/${rounds}`);
    }
  } finally {
    await onOne.close();
    await onCluster.close();
    await withBlocks.close();
    await single.stop();
    await cluster.stop();
  }
  const one = mid(cases.single);
  const oneNoGlobal = mid(cases.singleNoGlobal);
  const spread = mid(cases.clusterNoGlobal);
  const withGlobal = mid(cases.cluster);
  // The global scope's own work: what a global budget adds per request, all of it on the global slot's shard.
  const pinned = Math.max(0, withGlobal.cpuUs - spread.cpuUs);
  const blocks = mid(cases.clusterBlocks);
  const pinnedInBlocks = Math.max(0, blocks.cpuUs - spread.cpuUs);
  const perShard = (cpuUs: number) => (UTILISATION * 1e6) / cpuUs;
  const row = (name: string, cost: LayoutCost, perShardText: string) => [
    name,
    fmtNumber(cost.cpuUs, 1),
    fmtNumber(cost.calls, 2),
    fmtNumber(cost.bytes),
    perShardText,
  ];
  const busiest = (cost: LayoutCost, cpuUs: number) =>
    `${fmtNumber(perShard(cpuUs))} (busiest node ${fmtNumber(cost.busiestShare * 100)}% of the CPU)`;
  const rows = [
    row('one Redis, key + tenant + global budget', one, fmtNumber(perShard(one.cpuUs))),
    row('one Redis, key + tenant budget', oneNoGlobal, fmtNumber(perShard(oneNoGlobal.cpuUs))),
    row('3-master cluster, tenant slots + global slot', withGlobal, busiest(withGlobal, pinned + spread.cpuUs / 3)),
    row(
      "3-master cluster, tenant slots + global budget in blocks (the proxy's setting)",
      blocks,
      busiest(blocks, pinnedInBlocks + spread.cpuUs / 3),
    ),
    row('3-master cluster, tenant slots only', spread, busiest(spread, spread.cpuUs / 3)),
  ];
  const shardRows = LOADS.map((load) => {
    const oneServer = load * one.cpuUs <= UTILISATION * 1e6 ? '1' : 'does not fit';
    const slotted = shardsFor(load, spread.cpuUs, 0);
    const slottedGlobal = shardsFor(load, spread.cpuUs, pinned);
    const slottedBlocks = shardsFor(load, spread.cpuUs, pinnedInBlocks);
    return [
      fmtNumber(load),
      oneServer,
      slotted === undefined ? 'over 1,024' : String(slotted),
      slottedGlobal === undefined
        ? `never: the global slot's shard tops out at ${fmtNumber((UTILISATION * 1e6) / pinned)} req/s`
        : String(slottedGlobal),
      slottedBlocks === undefined
        ? `never: the global slot's shard tops out at ${fmtNumber((UTILISATION * 1e6) / pinnedInBlocks)} req/s`
        : String(slottedBlocks),
    ];
  });
  const body = [
    `The store traffic of one proxy request (request window, token window, and a budget over the key, its tenant and optionally the global scope: ` +
      `one bundled call before the answer; the token adjust and the budget settle after it, summed per turn), ${fmtNumber(requests)} requests at ` +
      `${CONCURRENCY} in flight over ${TENANTS} tenants of ${KEYS_PER_TENANT} keys, ${rounds} rounds, medians. On a redis-server of its own and on a ` +
      `3-master cluster of its own (same binary, no persistence, no replicas). CPU is the server processes' used_cpu_user + used_cpu_sys ` +
      `(commands, parsing and networking) summed over the nodes; calls are EVALSHA/EVAL; bytes are network bytes in and out.`,
    '',
    table(
      [
        'layout',
        'Redis CPU per request (µs)',
        'calls per request',
        'bytes per request',
        `req/s per shard at ${UTILISATION * 100}% of a core`,
      ],
      rows,
    ),
    '',
    `The model: a shard is planned at ${UTILISATION * 100}% of one core. One Redis serves ${fmtNumber(perShard(one.cpuUs))} req/s. On a cluster, ` +
      `tenant slots spread a request's work (${fmtNumber(spread.cpuUs, 1)} µs) evenly over the shards; a global budget adds ` +
      `${fmtNumber(pinned, 1)} µs per request on the one shard that holds the global slot, which no number of shards relieves. ` +
      `In blocks (\`blockStores\`, the proxy's default on Redis) the global slot sees a reserve and a settle per block, and its share falls to ` +
      `${fmtNumber(pinnedInBlocks, 1)} µs per request. Cluster calls cost more than one server's because a request's bundle splits by slot (its tenant's, and the global one).`,
    '',
    table(
      [
        'load (req/s)',
        'one Redis',
        'tenant slots (shards)',
        'tenant slots + a global budget per request (shards)',
        'tenant slots + a global budget in blocks (shards)',
      ],
      shardRows,
    ),
  ].join('\n');
  return {
    title,
    body,
    targets: [],
    findings: [
      `Capacity: one Redis plans ${fmtNumber(perShard(one.cpuUs))} req/s of the chain with a global budget; tenant slots on a cluster scale with shards; a global budget reserved per request pins ${fmtNumber(pinned, 1)} µs per request on one shard (a ceiling of ${fmtNumber((UTILISATION * 1e6) / Math.max(pinned, 1e-9))} req/s), in blocks ${fmtNumber(pinnedInBlocks, 1)} µs (§10).`,
    ],
  };
}
