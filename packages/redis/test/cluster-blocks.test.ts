// Budgets in blocks (core's blockStores) on a real Redis Cluster: the global slot's shard sees a call per block, not per request, whatever
// the number of tenants; the budget is never overshot; the books balance once the blocks go back.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createClient } from 'redis';
import { blockStores } from '@tollgate/core';
import { GLOBAL_SLOT } from '@tollgate/core/store-contracts';
import type { BlockStores, LedgerScope } from '@tollgate/core/store-contracts';
import { createRedisStores, type RedisStores } from '@tollgate/redis';
import { uniquePrefix } from './helpers.js';
import { testCluster, type TestCluster } from './redis-cluster.js';

let cluster: TestCluster;
const prefixes: string[] = [];
const open: BlockStores<RedisStores>[] = [];

beforeAll(async () => {
  cluster = await testCluster();
}, 60_000);

afterAll(async () => {
  for (const stores of open) await stores.close();
  for (const prefix of prefixes) await cluster.deleteKeys(prefix);
  await cluster.stop();
});

function storesOn(prefix: string, maxAgeMs = 200): BlockStores<RedisStores> {
  // A deadline for a loaded CI machine: this test is about calls per block, not about how fast the cluster answers.
  const stores = blockStores(createRedisStores({ cluster: cluster.urls, prefix, keyCache: false, timeoutMs: 5000 }), {
    share: 0.01,
    maxAgeMs,
  });
  open.push(stores);
  return stores;
}

async function scriptCalls(url: string): Promise<number> {
  const client = createClient({ url });
  await client.connect();
  try {
    const stats = await client.info('commandstats');
    let calls = 0;
    for (const match of stats.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+)/gm)) calls += Number(match[2]);
    return calls;
  } finally {
    await client.quit();
  }
}

const settleAll = async (check: () => Promise<boolean>): Promise<void> => {
  for (let i = 0; i < 100 && !(await check()); i++) await new Promise((resolve) => setTimeout(resolve, 50));
};

describe('budgets in blocks on a cluster', () => {
  it('sends the global slot a call per block, not per request, and balances once the blocks go back', async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const stores = storesOn(prefix);
    const expiresAt = Date.now() + 3_600_000;
    const global: LedgerScope = { key: 'global', limit: 1_000_000, expiresAt, slot: GLOBAL_SLOT };
    const globalMaster = await cluster.masterOf('{global}');
    // Tenants on the other masters, so the global master's calls are the global slot's alone.
    const tenants: string[] = [];
    for (let t = 0; tenants.length < 40; t++)
      if ((await cluster.masterOf(`{tenant:t${t}}`)) !== globalMaster) tenants.push(`tenant:t${t}`);
    const before = await scriptCalls(globalMaster);
    let spent = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        for (let i = 0; i < 25; i++) {
          const tenant = tenants[(worker * 25 + i) % 40]!;
          const id = randomUUID();
          const result = await stores.ledger.reserve({
            id,
            amount: 100,
            ttlMs: 60_000,
            scopes: [{ key: tenant, limit: 1_000_000, expiresAt, slot: tenant }, global],
          });
          expect(result.ok).toBe(true);
          const actual = 37 + (i % 5);
          spent += actual;
          await stores.ledger.settle(id, actual);
        }
      }),
    );
    // 200 requests of 40 tenants; a global block is 1% of the limit (100 requests' worth): a handful of reserves and settles reach the global slot.
    const globalCalls = (await scriptCalls(globalMaster)) - before;
    expect(globalCalls).toBeLessThan(40);
    await settleAll(async () => (await stores.ledger.usage([{ key: 'global', slot: GLOBAL_SLOT }]))[0]!.reserved === 0);
    expect(await stores.ledger.usage([{ key: 'global', slot: GLOBAL_SLOT }])).toEqual([
      { key: 'global', spent, reserved: 0, credit: 0 },
    ]);
  });

  it('never overshoots the global budget from two processes, and hands out what still fits near the limit', async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const processes = [storesOn(prefix, 5_000), storesOn(prefix, 5_000)];
    const expiresAt = Date.now() + 3_600_000;
    // A block would be 10 (1% of 1,000), too small for requests of 30: they are reserved one by one across the slots, only what fits near the end.
    const global: LedgerScope = { key: 'global', limit: 1_000, expiresAt, slot: GLOBAL_SLOT };
    let granted = 0;
    let refused = 0;
    const spentBy = new Map<string, number>();
    await Promise.all(
      processes.flatMap((stores, p) =>
        Array.from({ length: 4 }, async (_, worker) => {
          const tenant = `tenant:p${p}w${worker}`;
          spentBy.set(tenant, 0);
          for (let i = 0; i < 15; i++) {
            const id = randomUUID();
            // The tenant's scope is hot (a block of it opens), the global one too thin for a block: each grant is part block, part store.
            const result = await stores.ledger.reserve({
              id,
              amount: 30,
              minAmount: 5,
              ttlMs: 60_000,
              scopes: [{ key: tenant, limit: 1_000_000, expiresAt, slot: tenant }, global],
            });
            if (!result.ok) {
              refused++;
              continue;
            }
            granted += result.amount;
            spentBy.set(tenant, spentBy.get(tenant)! + result.amount);
            await stores.ledger.settle(id, result.amount);
          }
        }),
      ),
    );
    expect(refused).toBeGreaterThan(0);
    expect(granted).toBeLessThanOrEqual(1_000);
    // Reserved per request with a least amount: the last grants take what is left.
    expect(granted).toBeGreaterThan(1_000 - 2 * 30);
    await Promise.all(processes.map((stores) => stores.close()));
    const reader = storesOn(prefix);
    expect(await reader.ledger.usage([{ key: 'global', slot: GLOBAL_SLOT }])).toEqual([
      { key: 'global', spent: granted, reserved: 0, credit: 0 },
    ]);
    // All or nothing: a refusal by the global budget left nothing of the tenant's held, a clamped grant held the same in both.
    for (const [tenant, spent] of spentBy)
      expect(await reader.ledger.usage([{ key: tenant, slot: tenant }])).toEqual([
        { key: tenant, spent, reserved: 0, credit: 0 },
      ]);
  }, 30_000);
});
